"""app.cli: `conveyor serve` as a real process: its logs from the start, and a SIGTERM while
clients are connected."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.app.conftest import ROOT, metric, server_process
from tests.app.wire import assert_run_shape, iter_sse

SSE = {"Accept": "text/event-stream"}
ITEMS = {"items": [0.01, 60]}  # a first result at once, then a call that would take a minute


async def _ndjson(http: httpx.AsyncClient, method: str, path: str, **kw: Any) -> list[Any]:
    async with http.stream(method, path, **kw) as response:
        return [json.loads(line) async for line in response.aiter_lines() if line]


async def _sse(http: httpx.AsyncClient, method: str, path: str, **kw: Any) -> list[Any]:
    async with http.stream(method, path, headers=SSE, **kw) as response:
        return [{"type": m.event, **m.json()} async for m in iter_sse(response.aiter_lines())]


async def test_sigterm_ends_jobs_followers_and_streams_then_exits(tmp_path: Path) -> None:
    """At SIGTERM, a running job is cancelled and its followers get `end` (cancelled); an open
    /stream (SSE, NDJSON, an NDJSON upload) ends with `end` (cancelled), an /invoke answers
    `"status": "cancelled"`; the process exits at once instead of after uvicorn's 10 s."""
    with server_process(tmp_path, CONVEYOR_SSE_PING_S="0.2") as (url, process, log):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            job = (await http.post("/pipelines/sleepy/jobs", json=ITEMS)).json()
            upload = b"0.01\n60\n"
            clients = {
                "follower ndjson": _ndjson(http, "GET", job["events_url"]),
                "follower sse": _sse(http, "GET", job["events_url"]),
                "stream ndjson": _ndjson(http, "POST", "/pipelines/sleepy/stream", json=ITEMS),
                "stream sse": _sse(http, "POST", "/pipelines/sleepy/stream", json=ITEMS),
                "upload": _ndjson(
                    http,
                    "POST",
                    "/pipelines/sleepy/stream",
                    content=upload,
                    headers={"Content-Type": "application/x-ndjson"},
                ),
                "invoke": http.post("/pipelines/sleepy/invoke", json=ITEMS),
            }
            tasks = {name: asyncio.create_task(work) for name, work in clients.items()}
            deadline = time.monotonic() + 20
            while metric((await http.get("/metrics")).text, "svc_fixture_calls_in_flight") < 5:
                assert time.monotonic() < deadline, "the runs never got to their long call"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # the followers have caught up
            stopped_at = time.monotonic()
            process.send_signal(signal.SIGTERM)
            done = await asyncio.wait_for(asyncio.gather(*tasks.values()), 9)
            answers = dict(zip(tasks, done, strict=True))
        await asyncio.to_thread(process.wait, 9)
        exited_after = time.monotonic() - stopped_at
    text = log.read_text()
    for name in ("follower ndjson", "follower sse", "stream ndjson", "stream sse", "upload"):
        events = answers[name]
        assert_run_shape(events)
        assert events[0] == {"type": "result", "seq": 0, "value": 0.01, "sources": [0]}, name
        assert events[-1]["status"] == "cancelled", (name, events)
    invoked = answers["invoke"]
    assert invoked.status_code == 200
    assert invoked.json()["status"] == "cancelled" and invoked.json()["results"] == [0.01]
    assert exited_after < 5, f"the process took {exited_after:.1f} s to exit:\n{text[-3000:]}"
    assert "timeout graceful shutdown exceeded" not in text


OPAQUE = """
from conveyor_core import single_task


class Opaque:
    pass


@single_task
async def take(x: Opaque) -> Opaque:
    return x


PIPELINES = {"opaque": take}
"""


def test_startup_warnings_are_json_lines(tmp_path: Path) -> None:
    """Logging is configured before the registry loads: its warnings are JSON lines too."""
    (tmp_path / "opaque_pipelines.py").write_text(OPAQUE)
    path = f"{ROOT}{os.pathsep}{tmp_path}"
    with server_process(tmp_path, CONVEYOR_PIPELINES="opaque_pipelines", PYTHONPATH=path) as (
        _,
        _,
        log,
    ):
        pass
    lines = [line for line in log.read_text().splitlines() if "no JSON schema" in line]
    assert lines, log.read_text()
    for line in lines:
        entry = json.loads(line)
        assert entry["level"] == "warning" and entry["logger"] == "conveyor.service.registry"
