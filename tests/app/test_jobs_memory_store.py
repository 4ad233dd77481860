"""app.jobs.memory: what the in-memory store keeps is bounded in bytes and in jobs; finished jobs
make room (oldest first), running ones never; expired jobs are purged on a timer too."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.jobs.codec import dumps
from app.jobs.memory import EVENT_OVERHEAD, MemoryJobStore
from app.jobs.store import JobLimitReached, JobRecord, StoreFull
from tests.app.conftest import ClientFactory
from tests.app.wire import assert_run_shape, ndjson_events


def _record(job_id: str) -> JobRecord:
    return JobRecord(job_id=job_id, pipeline="p", mode="ordered", items=1)


def _result(seq: int, value: Any = "x") -> dict[str, Any]:
    return {"type": "result", "seq": seq, "value": value, "sources": [seq]}


def _end(seq: int) -> dict[str, Any]:
    return {"type": "end", "seq": seq, "status": "succeeded", "stats": None}


def _size(event: dict[str, Any]) -> int:
    return len(dumps(event)) + EVENT_OVERHEAD


async def _finished_job(store: MemoryJobStore, job_id: str, results: int = 1) -> None:
    await store.create(_record(job_id), max_running=100)
    for seq in range(results):
        await store.append(job_id, _result(seq))
    await store.append(job_id, _end(results))


async def test_the_oldest_finished_jobs_make_room_for_new_ones() -> None:
    store = MemoryJobStore(max_jobs=3)
    await _finished_job(store, "a")
    await store.create(_record("running"), max_running=100)
    await _finished_job(store, "b")
    await _finished_job(store, "c")  # a (finished first) is evicted, not the running job
    assert await store.get("a") is None and [e async for e in store.events("a")] == []
    assert all([await store.get(j) for j in ("running", "b", "c")])
    assert store.retained_jobs == 3


async def test_when_every_kept_job_runs_a_new_one_is_refused() -> None:
    store = MemoryJobStore(max_jobs=2)
    await store.create(_record("a"), max_running=100)
    await store.create(_record("b"), max_running=100)
    with pytest.raises(JobLimitReached):
        await store.create(_record("c"), max_running=100)
    await store.append("a", _end(0))
    await store.create(_record("c"), max_running=100)  # now a, finished, makes room
    assert await store.get("a") is None


async def test_bytes_are_counted_and_finished_jobs_evicted_to_stay_under_the_bound() -> None:
    per_job = _size(_result(0)) + _size(_end(1))
    store = MemoryJobStore(max_bytes=3 * per_job)
    for name in ("a", "b", "c"):
        await _finished_job(store, name)
    assert store.retained_bytes == 3 * per_job
    await _finished_job(store, "d")
    assert await store.get("a") is None and await store.get("b") is not None
    assert store.retained_bytes == 3 * per_job


async def test_running_jobs_alone_over_the_bound_fail_with_store_full() -> None:
    """The event that does not fit is refused; `error` and `end` are always taken."""
    store = MemoryJobStore(max_bytes=_size(_result(0)) * 3)
    await store.create(_record("big"), max_running=100)
    for seq in range(3):
        await store.append("big", _result(seq))
    with pytest.raises(StoreFull, match="CONVEYOR_JOB_STORE_MAX_BYTES"):
        await store.append("big", _result(3))
    await store.append("big", {"type": "error", "seq": 3, "stage": None, "error": "StoreFull"})
    await store.append("big", _end(4))
    assert [e["seq"] async for e in store.events("big")] == [0, 1, 2, 3, 4]


async def test_expired_jobs_are_purged_without_being_looked_up() -> None:
    store = MemoryJobStore(ttl_s=0.05, purge_every_s=0.02)
    await store.start()
    try:
        await _finished_job(store, "a", results=100)
        assert store.retained_jobs == 1 and store.retained_bytes > 0
        for _ in range(100):
            if not store.retained_jobs:
                break
            await asyncio.sleep(0.02)
        assert store.retained_jobs == 0 and store.retained_bytes == 0
    finally:
        await store.close()
    assert store._purger is None


async def test_an_evicted_job_answers_404_and_a_job_over_the_bound_fails(
    make_client: ClientFactory,
) -> None:
    async with make_client(job_store_max_jobs=1, job_store_max_bytes=4000) as client:
        first = (await client.post("/pipelines/echo/jobs", json={"items": [1]})).json()
        await client.get(first["events_url"])  # followed to its end
        second = (await client.post("/pipelines/echo/jobs", json={"items": [2]})).json()
        assert (await client.get(first["status_url"])).status_code == 404
        assert (await client.get(first["events_url"])).status_code == 404
        await client.get(second["events_url"])
        big = (await client.post("/pipelines/blob/jobs", json={"items": [1000] * 10})).json()
        events = ndjson_events((await client.get(big["events_url"])).text)
    assert_run_shape(events)
    assert events[-2]["type"] == "error" and events[-2]["error"].startswith("StoreFull: ")
    assert events[-1]["status"] == "failed"
    assert 1 <= sum(e["type"] == "result" for e in events) < 10


def test_the_bounds_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.config import Settings
    from app.jobs import create_store

    settings = Settings()
    assert (settings.job_store_max_bytes, settings.job_store_max_jobs) == (256 << 20, 10_000)
    monkeypatch.setenv("CONVEYOR_JOB_STORE_MAX_BYTES", "1000")
    monkeypatch.setenv("CONVEYOR_JOB_STORE_MAX_JOBS", "5")
    store = create_store(Settings())
    assert isinstance(store, MemoryJobStore)
    assert (store._max_bytes, store._max_jobs) == (1000, 5)
