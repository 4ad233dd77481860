"""/jobs: status, events (replay, resume, live), results, cancellation, limits, retention."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.app.conftest import ClientFactory
from tests.app.redis_server import with_prefix
from tests.app.wire import assert_run_shape, ndjson_events, sse_events


@pytest.fixture(params=["memory", "redis"])
def store_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings for each job store: in memory, and Redis under this session's key prefix."""
    if request.param == "memory":
        return {}
    url, prefix = (request.getfixturevalue(name) for name in ("redis_url", "redis_prefix"))
    return {"redis_url": with_prefix(url, prefix)}


TIMELINE = {"items": [0.01, 0.02, 0.03, 0.04, 0.05]}


async def _submit(client: httpx.AsyncClient, pipeline: str, body: dict[str, Any]) -> str:
    response = await client.post(f"/pipelines/{pipeline}/jobs", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


async def _finished(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """Follow the job's events to its end (the stream ends there), then its status."""
    await client.get(f"/jobs/{job_id}/events")
    return dict((await client.get(f"/jobs/{job_id}")).json())


async def test_status_events_results(client: httpx.AsyncClient) -> None:
    job_id = await _submit(client, "timeline", TIMELINE)
    status = (await client.get(f"/jobs/{job_id}")).json()
    assert status["job_id"] == job_id and status["pipeline"] == "timeline"
    assert status["status"] in ("running", "succeeded")
    assert status["created_at"].endswith("Z") and status["items"] == 5
    status = await _finished(client, job_id)
    assert status["status"] == "succeeded"
    assert status["stats"]["results"] == 5 and status["finished_at"] is not None
    events = ndjson_events((await client.get(f"/jobs/{job_id}/events")).text)
    assert_run_shape(events)
    results = (await client.get(f"/jobs/{job_id}/results")).json()
    assert results == {"status": "succeeded", "results": TIMELINE["items"]}
    assert [e["value"] for e in events if e["type"] == "result"] == TIMELINE["items"]


async def test_resume_after_a_seq(client: httpx.AsyncClient) -> None:
    job_id = await _submit(client, "timeline", TIMELINE)
    await _finished(client, job_id)
    url = f"/jobs/{job_id}/events"
    full = ndjson_events((await client.get(url)).text)
    by_query = ndjson_events((await client.get(url, params={"after": 2})).text)
    by_header = ndjson_events((await client.get(url, headers={"Last-Event-ID": "2"})).text)
    assert by_query == by_header == full[3:]
    both = ndjson_events(
        (await client.get(url, params={"after": 1}, headers={"Last-Event-ID": "3"})).text
    )
    assert both == full[4:]  # the later of the two: EventSource reconnects keep the URL
    assert ndjson_events((await client.get(url, params={"after": 99})).text) == []
    assert ndjson_events((await client.get(url, params={"after": -1})).text) == full
    sse = sse_events(
        (await client.get(url, headers={"Accept": "text/event-stream", "Last-Event-ID": "3"})).text
    )
    assert sse == full[4:]


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({"after": "x"}, {}),
        ({"after": "-2"}, {}),
        ({}, {"Last-Event-ID": "abc"}),
        ({}, {"Last-Event-ID": "-5"}),
    ],
)
async def test_bad_resume_position_is_422(
    client: httpx.AsyncClient, params: dict[str, str], headers: dict[str, str]
) -> None:
    job_id = await _submit(client, "echo", {"items": [1]})
    response = await client.get(f"/jobs/{job_id}/events", params=params, headers=headers)
    assert response.status_code == 422


async def test_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/jobs/nope"),
        ("GET", "/jobs/nope/events"),
        ("GET", "/jobs/nope/results"),
        ("DELETE", "/jobs/nope"),
    ]:
        response = await client.request(method, path)
        assert response.status_code == 404, path
        assert "nope" in response.json()["detail"]


async def test_cancel_a_running_job(client: httpx.AsyncClient) -> None:
    job_id = await _submit(client, "timeline", {"items": [0.01, 30, 30]})
    follower = asyncio.create_task(client.get(f"/jobs/{job_id}/events"))
    for _ in range(200):  # until the first result is stored
        if (await client.get(f"/jobs/{job_id}/results")).json()["results"]:
            break
        await asyncio.sleep(0.01)
    response = await client.delete(f"/jobs/{job_id}")
    assert response.status_code == 202
    assert response.json() == {"job_id": job_id, "status": "running", "cancel_requested": True}
    events = ndjson_events((await asyncio.wait_for(follower, 10)).text)
    assert_run_shape(events)
    assert events[0]["value"] == 0.01
    assert events[-1]["status"] == "cancelled" and events[-1]["stats"]["results"] == 1
    status = (await client.get(f"/jobs/{job_id}")).json()
    assert status["status"] == "cancelled" and status["cancel_requested"]
    assert (await client.get(f"/jobs/{job_id}/results")).json() == {
        "status": "cancelled",
        "results": [0.01],
    }


async def test_cancel_a_finished_job_changes_nothing(client: httpx.AsyncClient) -> None:
    job_id = await _submit(client, "echo", {"items": [1]})
    await _finished(client, job_id)
    response = await client.delete(f"/jobs/{job_id}")
    assert response.status_code == 202
    assert response.json()["status"] == "succeeded"
    assert not response.json()["cancel_requested"]


async def test_failed_job(client: httpx.AsyncClient) -> None:
    job_id = await _submit(client, "fragile", {"items": [1, 2, 3, 4]})
    status = await _finished(client, job_id)
    assert status["status"] == "failed"
    events = ndjson_events((await client.get(f"/jobs/{job_id}/events")).text)
    assert events[-2]["type"] == "error" and events[-2]["stage"] == "fragile"


async def test_running_job_limit_is_429(make_client: ClientFactory) -> None:
    async with make_client(max_running_jobs=1) as client:
        job_id = await _submit(client, "timeline", {"items": [30]})
        response = await client.post("/pipelines/echo/jobs", json={"items": [1]})
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) > 0
        assert "limit is 1" in response.json()["detail"]
        await client.delete(f"/jobs/{job_id}")
        await _finished(client, job_id)
        assert (await client.post("/pipelines/echo/jobs", json={"items": [1]})).status_code == 202


async def test_job_runs_without_any_client(client: httpx.AsyncClient) -> None:
    job_id = await _submit(client, "timeline", {"items": [0.05]})
    for _ in range(500):
        if (await client.get(f"/jobs/{job_id}")).json()["status"] == "succeeded":
            break
        await asyncio.sleep(0.01)
    assert (await client.get(f"/jobs/{job_id}/results")).json()["results"] == [0.05]


async def test_finished_jobs_expire(make_client: ClientFactory) -> None:
    async with make_client(job_ttl_s=0.2) as client:
        job_id = await _submit(client, "echo", {"items": [1]})
        await _finished(client, job_id)
        assert (await client.get(f"/jobs/{job_id}")).status_code == 200
        await asyncio.sleep(0.4)
        assert (await client.get(f"/jobs/{job_id}")).status_code == 404
        assert (await client.get(f"/jobs/{job_id}/events")).status_code == 404


async def test_shutdown_cancels_running_jobs(make_client: ClientFactory) -> None:
    async with make_client() as client:
        job_id = await _submit(client, "timeline", {"items": [30]})
        store = client._transport.app.state.services.store  # type: ignore[attr-defined]
    record = await store.get(job_id)
    assert record.status == "cancelled"
    assert [e["type"] for e in [e async for e in store.events(job_id)]] == ["end"]


async def test_jobs_send_bytes_as_base64_and_fail_on_unencodable_results(
    make_client: ClientFactory, store_settings: dict[str, Any]
) -> None:
    async with make_client(**store_settings) as client:
        await _weird_and_surrogate_jobs(client)


async def _weird_and_surrogate_jobs(client: httpx.AsyncClient) -> None:
    job_id = await _submit(client, "weird", {"items": [1]})
    assert (await _finished(client, job_id))["status"] == "succeeded"
    results = await client.get(f"/jobs/{job_id}/results")
    assert results.json() == {"status": "succeeded", "results": ["_wA="]}
    job_id = await _submit(client, "surrogate", {"items": [1, 2, 3]})
    assert (await _finished(client, job_id))["status"] == "failed"
    for accept in ("text/event-stream", "application/x-ndjson"):
        response = await client.get(f"/jobs/{job_id}/events", headers={"Accept": accept})
        parse = sse_events if accept == "text/event-stream" else ndjson_events
        events = parse(response.text)
        assert_run_shape(events)
        assert [e["type"] for e in events] == ["result", "error", "end"]
        assert events[1]["stage"] is None
        assert events[1]["error"].startswith("UnencodableResult: str: ")
    results = await client.get(f"/jobs/{job_id}/results")
    assert results.status_code == 200
    assert results.json() == {"status": "failed", "results": ["1"]}


async def test_resume_positions_beyond_every_seq(
    make_client: ClientFactory, store_settings: dict[str, Any]
) -> None:
    """Any `after` or `Last-Event-ID` past the last event means "after the last event"."""
    async with make_client(**store_settings) as client:
        job_id = await _submit(client, "timeline", TIMELINE)
        await _finished(client, job_id)
        url = f"/jobs/{job_id}/events"
        for query, headers in (
            ({"after": "18446744073709551614"}, {}),
            ({"after": str(10**30)}, {"Accept": "text/event-stream"}),
            ({}, {"Last-Event-ID": "99999999999999999999"}),
            ({"after": "9" * 5000}, {}),  # past Python's int parsing limit
            ({}, {"Last-Event-ID": "1" * 5000}),
        ):
            response = await client.get(url, params=query, headers=headers)
            assert response.status_code == 200 and response.text == ""
        running = await _submit(client, "timeline", {"items": [0.3]})
        response = await client.get(f"/jobs/{running}/events", params={"after": str(2**64)})
        assert response.status_code == 200 and response.text == ""  # waited for the end
        assert (await client.get(f"/jobs/{running}")).json()["status"] == "succeeded"


async def test_results_of_any_size_read_back(
    make_client: ClientFactory, store_settings: dict[str, Any]
) -> None:
    async with make_client(**store_settings) as client:
        job_id = await _submit(client, "power", {"items": [3, 5000]})
        assert (await _finished(client, job_id))["status"] == "succeeded"
        results = await client.get(f"/jobs/{job_id}/results")
        assert results.status_code == 200
        assert results.text == '{"status":"succeeded","results":[1000,1%s]}' % ("0" * 5000)
        events = (await client.get(f"/jobs/{job_id}/events")).text.splitlines()
        assert len(events) == 3 and events[1].startswith('{"type":"result","seq":1,"value":1000')
        assert '"type":"end"' in events[2]


async def test_list_jobs(make_client: ClientFactory) -> None:
    async with make_client(jobs_page_max=50) as client:
        ids = []
        for pipeline, items in (("quickstart", [1]), ("timeline", [0]), ("quickstart", [2])):
            response = await client.post(f"/pipelines/{pipeline}/jobs", json={"items": items})
            ids.append(response.json()["job_id"])
            await client.get(f"/jobs/{ids[-1]}/events")  # to its end
        long = await client.post("/pipelines/timeline/jobs", json={"items": [30]})
        ids.append(long.json()["job_id"])
        body = (await client.get("/jobs")).json()
        assert [job["job_id"] for job in body["jobs"]] == ids[::-1]
        assert body["next_cursor"] is None
        newest = body["jobs"][0]
        assert newest == (await client.get(f"/jobs/{ids[-1]}")).json()  # as GET /jobs/{id}
        assert newest["status"] == "running" and body["jobs"][1]["status"] == "succeeded"

        page = (await client.get("/jobs", params={"limit": 2})).json()
        assert [job["job_id"] for job in page["jobs"]] == ids[:1:-1]
        rest = (
            await client.get("/jobs", params={"limit": 2, "cursor": page["next_cursor"]})
        ).json()
        assert [job["job_id"] for job in rest["jobs"]] == ids[1::-1] and rest["next_cursor"] is None

        quick = (await client.get("/jobs", params={"pipeline": "quickstart"})).json()
        assert [job["job_id"] for job in quick["jobs"]] == [ids[2], ids[0]]
        running = (await client.get("/jobs", params={"status": "running"})).json()
        assert [job["job_id"] for job in running["jobs"]] == [ids[3]]
        # An empty parameter is no filter, as the README's `?pipeline=&status=&cursor=` reads.
        empty = await client.get("/jobs?pipeline=&status=&limit=50&cursor=")
        assert empty.status_code == 200, empty.text
        assert [job["job_id"] for job in empty.json()["jobs"]] == ids[::-1]
        await client.delete(f"/jobs/{ids[3]}")

        for params, needle in (
            ({"limit": 51}, "CONVEYOR_JOBS_PAGE_MAX"),
            ({"limit": 0}, "limit"),
            ({"status": "lost"}, "status"),
            ({"cursor": "not-ours"}, "cursor"),
        ):
            response = await client.get("/jobs", params=params)
            assert response.status_code == 422, params
            assert needle in response.text
