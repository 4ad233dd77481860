"""End to end against a real `conveyor serve` process on a loopback port: streaming as it
happens, uploads read while they arrive, resume, disconnects, cancellation, backpressure.

Timing assertions compare events with each other or use generous bounds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.conftest import metric, server_process
from tests.app.wire import DuplexUpload, SSEParser, assert_run_shape, iter_sse

SSE = {"Accept": "text/event-stream"}
NDJSON = {"Content-Type": "application/x-ndjson"}


@pytest.fixture
async def http(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        yield client


async def _metrics(http: httpx.AsyncClient) -> str:
    return (await http.get("/metrics")).text


async def _until(http: httpx.AsyncClient, name: str, value: float, **labels: str) -> float:
    """Seconds until the metric has `value` (fails after 10 s)."""
    started = time.monotonic()
    while metric(await _metrics(http), name, **labels) != value:
        assert time.monotonic() - started < 10, f"{name}{labels} never became {value}"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_sse_as_a_browser_reads_it(http: httpx.AsyncClient) -> None:
    parser = SSEParser()
    body = {"items": [0.1, 0.5, 0.1]}
    async with http.stream("POST", "/pipelines/sleepy/stream", json=body, headers=SSE) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        messages = [m async for m in iter_sse(response.aiter_lines(), parser)]
    events = [{"type": m.event, **m.json()} for m in messages]
    assert [m.last_event_id for m in messages] == [str(e["seq"]) for e in events]
    assert_run_shape(events)
    assert [e["value"] for e in events if e["type"] == "result"] == [0.1, 0.5, 0.1]
    assert any(c.startswith("ping") for c in parser.comments)  # keep-alive every 0.2 s


async def test_results_stream_before_the_run_ends(http: httpx.AsyncClient) -> None:
    arrivals: list[tuple[float, dict[str, Any]]] = []
    started = time.monotonic()
    body = {"items": [0.05, 1.5]}
    async with http.stream("POST", "/pipelines/timeline/stream", json=body) as response:
        async for line in response.aiter_lines():
            if line:
                arrivals.append((time.monotonic() - started, json.loads(line)))
    assert [event["type"] for _, event in arrivals] == ["result", "result", "end"]
    first, second = arrivals[0][0], arrivals[1][0]
    assert second - first > 0.7  # the first result did not wait for the slow one
    assert second >= 1.4


async def test_upload_results_come_back_while_uploading(server: str) -> None:
    """Each result arrives before the next line is even sent (`curl -N -T -` style)."""
    headers = {"Content-Type": "application/x-ndjson"}
    async with DuplexUpload(server, "/pipelines/echo/stream", headers) as upload:
        await upload.send(b'{"n": 1}\n')
        await upload.read_head()
        assert upload.status == 200
        assert upload.response_headers["content-type"] == "application/x-ndjson"
        first = json.loads(await asyncio.wait_for(upload.read_line(), 10))
        assert first == {"type": "result", "seq": 0, "value": {"n": 1}, "sources": [0]}
        await upload.send(b'"two"\n3')  # a line split over two chunks
        second = json.loads(await asyncio.wait_for(upload.read_line(), 10))
        assert second["value"] == "two" and second["sources"] == [1]
        await upload.send(b"\n")
        third = json.loads(await asyncio.wait_for(upload.read_line(), 10))
        assert third["value"] == 3
        await upload.end()
        end = json.loads(await asyncio.wait_for(upload.read_line(), 10))
        assert end["type"] == "end" and end["seq"] == 3 and end["stats"]["inputs"] == 3


async def test_resume_a_live_job_without_gap_or_repeat(http: httpx.AsyncClient) -> None:
    items = [round(0.15 * i, 2) for i in range(1, 11)]  # a result every 0.15 s
    job = (await http.post("/pipelines/timeline/jobs", json={"items": items})).json()
    seen: list[dict[str, Any]] = []
    async with http.stream("GET", job["events_url"], headers=SSE) as response:
        async for message in iter_sse(response.aiter_lines()):
            seen.append({"type": message.event, **message.json()})
            if seen[-1]["seq"] == 3:
                break  # the connection drops here
    assert (await http.get(job["status_url"])).json()["status"] == "running"
    headers = {**SSE, "Last-Event-ID": "3"}
    async with http.stream("GET", job["events_url"], headers=headers) as response:
        async for message in iter_sse(response.aiter_lines()):
            seen.append({"type": message.event, **message.json()})
    assert_run_shape(seen)  # every seq exactly once, in order, ending with end
    assert [e["value"] for e in seen if e["type"] == "result"] == items


@pytest.mark.parametrize("accept", [SSE, {}], ids=["sse", "ndjson"])
async def test_disconnect_cancels_the_run(http: httpx.AsyncClient, accept: dict[str, str]) -> None:
    assert metric(await _metrics(http), "svc_fixture_calls_in_flight") == 0
    body = {"items": [60, 60, 60, 60, 60]}
    async with http.stream("POST", "/pipelines/sleepy/stream", json=body, headers=accept):
        await _until(http, "svc_fixture_calls_in_flight", 5)
    # the client is gone: every call of its run is cancelled, and the run ends
    elapsed = await _until(http, "svc_fixture_calls_in_flight", 0)
    assert elapsed < 3  # within a second, measured with a margin
    await _until(http, "conveyor_runs_in_progress", 0, pipeline="sleepy", kind="stream")
    text = await _metrics(http)
    assert (
        metric(text, "conveyor_runs_total", pipeline="sleepy", kind="stream", status="cancelled")
        >= 1
    )


async def test_cancel_a_job_while_it_is_followed(http: httpx.AsyncClient) -> None:
    job = (await http.post("/pipelines/sleepy/jobs", json={"items": [60, 60]})).json()
    await _until(http, "svc_fixture_calls_in_flight", 2)

    async def follow() -> list[dict[str, Any]]:
        async with http.stream("GET", job["events_url"], headers=SSE) as response:
            return [{"type": m.event, **m.json()} async for m in iter_sse(response.aiter_lines())]

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.2)
    assert (await http.delete(job["status_url"])).status_code == 202
    events = await asyncio.wait_for(follower, 10)
    assert events == [{"type": "end", "seq": 0, "status": "cancelled", "stats": events[0]["stats"]}]
    await _until(http, "svc_fixture_calls_in_flight", 0)
    assert (await http.get(job["status_url"])).json()["status"] == "cancelled"


async def test_a_slow_reader_slows_the_run(http: httpx.AsyncClient) -> None:
    """10 000 results of 20 kB: a reader that stops makes the run stop, far from the end."""
    calls, results = "svc_fixture_blob_calls_total", "conveyor_results_total"
    text = await _metrics(http)
    calls_before, results_before = metric(text, calls), metric(text, results, pipeline="blob")
    body = {"items": [20_000] * 10_000}
    async with http.stream("POST", "/pipelines/blob/stream", json=body) as response:
        assert response.status_code == 200
        chunks = response.aiter_raw()
        await chunks.__anext__()
        await asyncio.sleep(1.0)  # not reading
        text = await _metrics(http)
        stalled = metric(text, calls) - calls_before
        sent = metric(text, results, pipeline="blob") - results_before
        await asyncio.sleep(0.5)
        text = await _metrics(http)
        assert metric(text, calls) - calls_before == stalled
        assert metric(text, results, pipeline="blob") - results_before == sent
        assert stalled < 7_000  # the engine's in-flight bound (4096) and socket buffers
        assert sent < 1_000  # what the socket buffers hold: a few MB
        await chunks.aclose()
    await _until(http, "conveyor_runs_in_progress", 0, pipeline="blob", kind="stream")


@pytest.mark.parametrize("upload", [False, True])
@pytest.mark.parametrize("accept", ["application/x-ndjson", "text/event-stream"])
async def test_a_frozen_client_times_out(tmp_path: Path, accept: str, upload: bool) -> None:
    """The stream ends and its run is cancelled; the connection is dropped, so that uvicorn
    does not log the response as left unfinished (an error, for every stream a timeout ended)."""
    with server_process(tmp_path, CONVEYOR_SEND_TIMEOUT_S="1") as (url, _, log):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            body = {"items": [50_000] * 5_000}
            request: dict[str, Any] = {"json": body, "headers": {"Accept": accept}}
            if upload:
                lines = b"50000\n" * 5_000
                request = {"content": lines, "headers": {"Accept": accept, **NDJSON}}
            async with http.stream("POST", "/pipelines/blob/stream", **request) as response:
                assert response.status_code == 200
                # never read: after a second the send times out and the run is cancelled,
                # while this connection is still open
                await _until(
                    http,
                    "conveyor_runs_total",
                    1,
                    pipeline="blob",
                    kind="stream",
                    status="cancelled",
                )
        text = log.read_text()
    assert "a client stopped reading for 1.0s: stream ended" in text
    assert "without completing response" not in text and "Exception in ASGI" not in text


async def test_disconnect_from_invoke_cancels_the_run(http: httpx.AsyncClient, server: str) -> None:
    async def invoke() -> None:
        async with httpx.AsyncClient(base_url=server, timeout=60) as client:
            await client.post("/pipelines/sleepy/invoke", json={"items": [60, 60, 60]})

    request = asyncio.create_task(invoke())
    await _until(http, "svc_fixture_calls_in_flight", 3)
    request.cancel()  # the client goes away without an answer
    await _until(http, "svc_fixture_calls_in_flight", 0)
    await _until(http, "conveyor_runs_in_progress", 0, pipeline="sleepy", kind="invoke")
