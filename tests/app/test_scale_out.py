"""Scale-out end to end: real `conveyor serve` processes on loopback ports sharing one Redis.

A job started on one replica is followed, resumed and cancelled on another; a replica killed with
SIGKILL leaves no follower hanging (WorkerLost); Redis stopped and started again mid-run crashes
nothing. Timing bounds are generous (a shared, noisy machine); measured times are printed
(`pytest -s` shows them).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.redis_server import RedisServer, with_prefix
from tests.app.replicas import Replica, replicas
from tests.app.wire import assert_run_shape, iter_sse

pytestmark = pytest.mark.redis

SSE = {"Accept": "text/event-stream"}
LEASE_S = 0.5


@pytest.fixture
def shared_env(redis_url: str, redis_prefix: str) -> dict[str, str]:
    return {
        "CONVEYOR_REDIS_URL": with_prefix(redis_url, redis_prefix),
        "CONVEYOR_JOB_LEASE_S": str(LEASE_S),
    }


@pytest.fixture
def two(tmp_path: Path, shared_env: dict[str, str]) -> Iterator[list[Replica]]:
    with replicas(tmp_path, 2, **shared_env) as started:
        yield started


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def _submit(http: httpx.AsyncClient, url: str, items: list[Any], **body: Any) -> str:
    response = await http.post(f"{url}/pipelines/timeline/jobs", json={"items": items, **body})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def _ndjson(
    http: httpx.AsyncClient, url: str, job_id: str, after: int = -1
) -> AsyncIterator[dict[str, Any]]:
    async with http.stream("GET", f"{url}/jobs/{job_id}/events?after={after}") as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line.strip():
                yield json.loads(line)


async def test_follow_on_b_then_resume_on_a_with_last_event_id(
    two: list[Replica], http: httpx.AsyncClient
) -> None:
    a, b = two
    items = [round(0.1 * n, 1) for n in range(1, 13)]  # a result every 0.1 s
    job_id = await _submit(http, a.url, items)
    first: list[dict[str, Any]] = []
    url = f"{b.url}/jobs/{job_id}/events"
    async with http.stream("GET", url, headers=SSE) as response:
        assert response.status_code == 200
        async for message in iter_sse(response.aiter_lines()):
            first.append({"type": message.event, **message.json()})
            assert message.last_event_id == str(first[-1]["seq"])
            if len(first) == 4:
                break  # disconnect from B mid-run
    last_id = first[-1]["seq"]
    status = (await http.get(f"{a.url}/jobs/{job_id}")).json()["status"]
    rest: list[dict[str, Any]] = []
    headers = {**SSE, "Last-Event-ID": str(last_id)}
    async with http.stream("GET", f"{a.url}/jobs/{job_id}/events", headers=headers) as response:
        async for message in iter_sse(response.aiter_lines()):
            rest.append({"type": message.event, **message.json()})
    events = first + rest
    assert_run_shape(events)  # every event exactly once, in order
    assert [e["value"] for e in events if e["type"] == "result"] == items
    assert events[-1]["status"] == "succeeded"
    print(f"\nresumed on A after seq {last_id}; the job was {status} then")
    for replica in (a, b):  # every replica answers the same
        info = (await http.get(f"{replica.url}/jobs/{job_id}")).json()
        assert info["status"] == "succeeded" and info["stats"] == events[-1]["stats"]
        results = (await http.get(f"{replica.url}/jobs/{job_id}/results")).json()
        assert results == {"status": "succeeded", "results": items}
        assert [e async for e in _ndjson(http, replica.url, job_id, after=9)] == events[10:]


async def test_sigkill_of_the_owner_fails_the_job_with_worker_lost(
    two: list[Replica], http: httpx.AsyncClient
) -> None:
    a, b = two
    job_id = await _submit(http, a.url, [0.05, 60, 60])
    events: list[dict[str, Any]] = []
    killed_at = 0.0
    async with asyncio.timeout(60):
        async for event in _ndjson(http, b.url, job_id):
            events.append(event)
            if event["type"] == "result" and not killed_at:
                a.process.kill()  # SIGKILL: no shutdown, no `end`, no more lease renewals
                killed_at = time.monotonic()
    elapsed = time.monotonic() - killed_at
    assert a.process.wait(10) == -9
    assert [e["type"] for e in events] == ["result", "error", "end"]
    assert_run_shape(events)
    assert events[1]["error"].startswith("WorkerLost")
    assert events[2]["status"] == "failed"
    print(f"\nWorkerLost reached a follower {elapsed:.2f} s after SIGKILL (lease {LEASE_S} s)")
    assert elapsed < 4 * LEASE_S + 8  # four lease periods, plus a generous margin
    info = (await http.get(f"{b.url}/jobs/{job_id}")).json()
    assert info["status"] == "failed"


async def test_sigterm_ends_followers_on_every_replica(
    two: list[Replica], http: httpx.AsyncClient
) -> None:
    """SIGTERM of a replica following a job that runs elsewhere closes its stream without
    `end` (the job goes on; the client resumes on another replica); SIGTERM of the job's
    replica cancels the job, and its followers get `end` (cancelled). Both exit at once."""
    a, b = two
    job_id = await _submit(http, a.url, [0.05, 60])

    async def follow(url: str) -> list[dict[str, Any]]:
        return [event async for event in _ndjson(http, url, job_id)]

    on_a, on_b = asyncio.create_task(follow(a.url)), asyncio.create_task(follow(b.url))
    await asyncio.sleep(1.0)  # both have the first result and wait for the next
    exits = []
    for replica, follower in ((b, on_b), (a, on_a)):
        stopped_at = time.monotonic()
        replica.process.terminate()
        events = await asyncio.wait_for(follower, 10)
        await asyncio.to_thread(replica.process.wait, 10)
        exits.append(time.monotonic() - stopped_at)
        if replica is b:
            assert [e["type"] for e in events] == ["result"]  # cut, without an end
            assert (await http.get(f"{a.url}/jobs/{job_id}")).json()["status"] == "running"
        else:
            assert_run_shape(events)
            assert [e["type"] for e in events] == ["result", "end"]
            assert events[-1]["status"] == "cancelled"
    print(
        f"\nexits after SIGTERM: a follower's replica {exits[0]:.2f} s, the owner {exits[1]:.2f} s"
    )
    assert max(exits) < 5


async def test_cancel_on_b_a_job_running_on_a(two: list[Replica], http: httpx.AsyncClient) -> None:
    a, b = two
    job_id = await _submit(http, a.url, [0.05, 60])

    async def follow() -> list[dict[str, Any]]:
        return [e async for e in _ndjson(http, a.url, job_id)]

    follower = asyncio.create_task(follow())
    for _ in range(600):  # until the first result is there (30 s at most)
        if (await http.get(f"{b.url}/jobs/{job_id}/results")).json()["results"]:
            break
        await asyncio.sleep(0.05)
    started = time.monotonic()
    response = await http.delete(f"{b.url}/jobs/{job_id}")
    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True
    events = await asyncio.wait_for(follower, 30)
    elapsed = time.monotonic() - started
    assert_run_shape(events)
    assert events[-1]["status"] == "cancelled"
    print(f"\ncancelled on A {elapsed:.2f} s after DELETE on B")
    assert elapsed < 10
    for replica in (a, b):
        assert (await http.get(f"{replica.url}/jobs/{job_id}")).json()["status"] == "cancelled"


async def test_the_running_job_limit_counts_every_replica(
    tmp_path: Path, shared_env: dict[str, str], http: httpx.AsyncClient
) -> None:
    with replicas(tmp_path, 2, CONVEYOR_MAX_RUNNING_JOBS="1", **shared_env) as (a, b):
        job_id = await _submit(http, a.url, [60])
        refused = await http.post(f"{b.url}/pipelines/timeline/jobs", json={"items": [1]})
        assert refused.status_code == 429 and "retry-after" in refused.headers
        assert (await http.delete(f"{b.url}/jobs/{job_id}")).status_code == 202
        for _ in range(200):  # the slot is free once the job has ended
            if (await http.get(f"{b.url}/jobs/{job_id}")).json()["status"] == "cancelled":
                break
            await asyncio.sleep(0.05)
        await _submit(http, b.url, [0.01])


async def test_redis_unreachable_answers_503_in_process(make_client: Any) -> None:
    async with make_client(redis_url="redis://127.0.0.1:1/0") as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["store"] == "RedisJobStore"
        assert ready.json()["detail"] == "job store unavailable"  # why: in the log only
        for response in (
            await client.post("/pipelines/echo/jobs", json={"items": [1]}),
            await client.get("/jobs/abc"),
            await client.get("/jobs/abc/events"),
            await client.get("/jobs/abc/results"),
            await client.delete("/jobs/abc"),
        ):
            assert response.status_code == 503, response.text
            assert response.json()["detail"].startswith("job store unavailable: Redis at")
        invoked = await client.post("/pipelines/echo/invoke", json={"items": [1]})
        assert invoked.status_code == 200  # runs without the job store go on


async def test_redis_stopped_and_started_mid_run(tmp_path: Path, http: httpx.AsyncClient) -> None:
    server = RedisServer().start()  # our own: the shared Redis is never stopped
    env = {"CONVEYOR_REDIS_URL": server.url, "CONVEYOR_JOB_LEASE_S": str(LEASE_S)}
    try:
        with replicas(tmp_path, 2, **env) as (a, b):
            items = [round(0.2 * n, 1) for n in range(1, 16)]  # a result every 0.2 s, for 3 s
            job_id = await _submit(http, a.url, items)

            async def follow() -> list[dict[str, Any]]:
                return [e async for e in _ndjson(http, b.url, job_id)]

            follower = asyncio.create_task(follow())  # live across the outage
            await asyncio.sleep(0.5)
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(0.3)
            ready = await http.get(f"{a.url}/readyz")
            assert ready.status_code == 503 and "unavailable" in ready.json()["detail"]
            assert (await http.get(f"{a.url}/healthz")).status_code == 200
            status = await http.get(f"{b.url}/jobs/{job_id}")
            assert status.status_code == 503 and "job store" in status.json()["detail"]
            refused = await http.post(f"{a.url}/pipelines/timeline/jobs", json={"items": [1]})
            assert refused.status_code == 503
            await asyncio.sleep(1.5)  # about two seconds without Redis: four lease periods
            await asyncio.to_thread(server.start)
            live = await asyncio.wait_for(follower, 60)
            replay = [e async for e in _ndjson(http, a.url, job_id)]
            assert (await http.get(f"{a.url}/readyz")).status_code == 200
            assert a.process.poll() is None and b.process.poll() is None  # nothing crashed
    finally:
        server.close()
    assert live == replay
    assert_run_shape(replay)
    end = replay[-1]
    if end["status"] == "succeeded":  # the run waited out the outage
        assert [e["value"] for e in replay if e["type"] == "result"] == items
    else:  # or it failed cleanly, with an error event
        assert end["status"] == "failed" and replay[-2]["type"] == "error"
    print(f"\nafter a Redis restart mid-run the job {end['status']}")
