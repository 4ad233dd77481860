"""The `JobStore` contract (app/jobs/store.py), run against every implementation.

A new implementation joins by adding a factory to `STORE_FACTORIES` (or a param to `make_store`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from app.jobs.memory import MemoryJobStore
from app.jobs.redis import RedisJobStore
from app.jobs.store import (
    BadCursor,
    JobLimitReached,
    JobNotFound,
    JobRecord,
    JobStatus,
    JobStore,
    page_cursor,
)

StoreFactory = Callable[..., Any]


@asynccontextmanager
async def _memory(ttl_s: float) -> AsyncIterator[JobStore]:
    store = MemoryJobStore(ttl_s=ttl_s)
    yield store
    await store.close()


@asynccontextmanager
async def _redis(ttl_s: float, *, url: str, prefix: str) -> AsyncIterator[JobStore]:
    store = RedisJobStore(url, ttl_s=ttl_s, prefix=prefix)
    try:
        yield store
    finally:
        await store.close()


STORE_FACTORIES: dict[str, StoreFactory] = {"memory": _memory, "redis": _redis}


@pytest.fixture(params=sorted(STORE_FACTORIES))
def make_store(request: pytest.FixtureRequest) -> StoreFactory:
    factory = STORE_FACTORIES[request.param]
    if request.param == "redis":  # a real Redis (tests/app/redis_server.py), a prefix per test
        url, prefix = (request.getfixturevalue(name) for name in ("redis_url", "redis_prefix"))
        return functools.partial(factory, url=url, prefix=prefix)
    return factory


def _record(job_id: str = "j1", pipeline: str = "quickstart") -> JobRecord:
    return JobRecord(job_id=job_id, pipeline=pipeline, mode="ordered", items=3)


def _result(seq: int, value: Any) -> dict[str, Any]:
    return {"type": "result", "seq": seq, "value": value, "sources": [seq]}


def _end(seq: int, status: str = "succeeded") -> dict[str, Any]:
    stats = {"inputs": 3, "results": seq, "skipped": 0, "dropped": 0, "elapsed_s": 0.1}
    return {"type": "end", "seq": seq, "status": status, "stats": stats}


async def _collect(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event async for event in events]


async def _eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll `check` (an expiry cannot be awaited) for up to five seconds."""
    for _ in range(250):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met within 5 s")


async def test_create_and_get(make_store: StoreFactory) -> None:
    async with make_store(ttl_s=60) as store:
        await store.create(_record(), max_running=10)
        record = await store.get("j1")
        assert record is not None
        assert (record.job_id, record.pipeline, record.status) == ("j1", "quickstart", "running")
        assert record.stats is None and record.finished_at is None and record.created_at > 0
        assert await store.get("nope") is None
        assert await store.running_count() == 1


async def test_running_limit_counts_running_jobs_only(make_store: StoreFactory) -> None:
    async with make_store(ttl_s=60) as store:
        await store.create(_record("a"), max_running=2)
        await store.create(_record("b"), max_running=2)
        with pytest.raises(JobLimitReached) as caught:
            await store.create(_record("c"), max_running=2)
        assert caught.value.limit == 2
        assert await store.get("c") is None
        await store.append("a", _end(0))
        assert await store.running_count() == 1
        await store.create(_record("c"), max_running=2)
        assert await store.running_count() == 2


async def test_append_checks_seq_and_end_finishes(make_store: StoreFactory) -> None:
    async with make_store(ttl_s=60) as store:
        await store.create(_record(), max_running=10)
        await store.append("j1", _result(0, 22))
        with pytest.raises(ValueError):
            await store.append("j1", _result(2, 40))  # a gap
        with pytest.raises(ValueError):
            await store.append("j1", _result(0, 40))  # a repeat
        await store.append("j1", _end(1))
        record = await store.get("j1")
        assert record is not None
        assert record.status is JobStatus.SUCCEEDED and record.finished
        assert record.stats == _end(1)["stats"] and record.finished_at is not None
        with pytest.raises(ValueError):
            await store.append("j1", _result(2, 1))  # after the end
        with pytest.raises(JobNotFound):
            await store.append("nope", _result(0, 1))


async def test_replay_after(make_store: StoreFactory) -> None:
    async with make_store(ttl_s=60) as store:
        await store.create(_record(), max_running=10)
        for seq in range(4):
            await store.append("j1", _result(seq, seq * 10))
        await store.append("j1", _end(4, "failed"))
        assert [e["seq"] for e in await _collect(store.events("j1"))] == [0, 1, 2, 3, 4]
        assert [e["seq"] for e in await _collect(store.events("j1", after=2))] == [3, 4]
        assert await _collect(store.events("j1", after=4)) == []
        assert await store.results("j1") == [0, 10, 20, 30]
        assert (await store.get("j1")).status is JobStatus.FAILED  # type: ignore[union-attr]


@pytest.mark.parametrize("after", [10, 2**53, 2**64 - 2, 10**20])
async def test_after_beyond_every_seq_is_after_the_last_event(
    make_store: StoreFactory, after: int
) -> None:
    async with make_store(ttl_s=60) as store:
        await store.create(_record(), max_running=10)
        await store.append("j1", _result(0, "a"))
        assert await _collect(store.events("j1", after=after, follow=False)) == []
        follower = asyncio.create_task(_collect(store.events("j1", after=after)))
        await asyncio.sleep(0.05)
        assert not follower.done()  # it waits for more, like a follower at the head
        await store.append("j1", _result(1, "b"))
        await store.append("j1", _end(2))
        assert await asyncio.wait_for(follower, 10) == []  # and ends with the job
        assert await _collect(store.events("j1", after=after)) == []


async def test_followers_get_live_events_until_end(make_store: StoreFactory) -> None:
    async with make_store(ttl_s=60) as store:
        await store.create(_record(), max_running=10)
        await store.append("j1", _result(0, "a"))
        followers = [asyncio.create_task(_collect(store.events("j1", after=a))) for a in (-1, 0)]
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in followers)  # they wait for more
        await store.append("j1", _result(1, "b"))
        await asyncio.sleep(0.05)
        await store.append("j1", _end(2))
        first, second = await asyncio.wait_for(asyncio.gather(*followers), 5)
        assert [e["seq"] for e in first] == [0, 1, 2]
        assert [e["seq"] for e in second] == [1, 2]
        assert first[-1]["type"] == "end"


async def test_snapshot_without_follow(make_store: StoreFactory) -> None:
    async with make_store(ttl_s=60) as store:
        await store.create(_record(), max_running=10)
        await store.append("j1", _result(0, 1))
        events = await asyncio.wait_for(_collect(store.events("j1", follow=False)), 5)
        assert events == [_result(0, 1)]
        assert await store.results("j1") == [1]
        assert await _collect(store.events("nope")) == []


async def test_cancel_request_wakes_the_runner(make_store: StoreFactory) -> None:
    async with make_store(ttl_s=60) as store:
        await store.create(_record(), max_running=10)
        waiter = asyncio.create_task(store.wait_cancel("j1"))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        record = await store.request_cancel("j1")
        assert record is not None and record.cancel_requested
        await asyncio.wait_for(waiter, 5)
        await asyncio.wait_for(store.wait_cancel("j1"), 5)  # already requested: at once
        assert await store.request_cancel("nope") is None


async def test_cancel_of_a_finished_job_changes_nothing(make_store: StoreFactory) -> None:
    async with make_store(ttl_s=60) as store:
        await store.create(_record(), max_running=10)
        await store.append("j1", _end(0))
        record = await store.request_cancel("j1")
        assert record is not None
        assert record.status is JobStatus.SUCCEEDED and not record.cancel_requested


async def test_finished_jobs_expire_running_jobs_do_not(make_store: StoreFactory) -> None:
    async with make_store(ttl_s=0.3) as store:
        await store.create(_record("done"), max_running=10)
        await store.create(_record("running"), max_running=10)
        await store.append("done", _result(0, 1))
        await store.append("done", _end(1))
        assert await store.get("done") is not None

        async def gone() -> bool:
            return await store.get("done") is None

        await _eventually(gone)
        assert await _collect(store.events("done")) == []
        assert await store.results("done") == []
        await asyncio.sleep(0.4)
        assert await store.get("running") is not None


async def _listed(store: JobStore, **filters: Any) -> list[list[str]]:
    """Every page of `list_jobs(**filters)`, as lists of ids, following the cursors."""
    pages, cursor = [], None
    while True:
        page = await store.list_jobs(cursor=cursor, **filters)
        pages.append([record.job_id for record in page.jobs])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor
        assert len(pages) < 50, pages


async def test_list_newest_first_paginated_and_filtered(make_store: StoreFactory) -> None:
    async with make_store(ttl_s=60) as store:
        for n in range(7):  # created one second apart; "j5" and "j5b" at the same time
            pipeline = "quickstart" if n % 2 == 0 else "timeline"
            record = JobRecord(f"j{n}", pipeline, "ordered", 1, created_at=1_000.0 + n)
            await store.create(record, max_running=100)
        await store.create(
            JobRecord("j5b", "timeline", "ordered", 1, created_at=1_005.0), max_running=100
        )
        await store.append("j2", _end(0))
        await store.append("j3", _end(0, "failed"))
        everything = ["j6", "j5b", "j5", "j4", "j3", "j2", "j1", "j0"]
        page = await store.list_jobs()
        assert [r.job_id for r in page.jobs] == everything and page.next_cursor is None
        assert page.jobs[5].status is JobStatus.SUCCEEDED and page.jobs[5].pipeline == "quickstart"
        assert await _listed(store, limit=3) == [everything[:3], everything[3:6], everything[6:]]
        assert await _listed(store, limit=4) == [everything[:4], everything[4:]]  # no empty page
        assert await _listed(store, pipeline="timeline", limit=2) == [["j5b", "j5"], ["j3", "j1"]]
        assert await _listed(store, status=JobStatus.RUNNING, limit=10) == [
            ["j6", "j5b", "j5", "j4", "j1", "j0"]
        ]
        assert await _listed(store, pipeline="timeline", status=JobStatus.FAILED) == [["j3"]]
        assert await _listed(store, pipeline="nope") == [[]]
        # a cursor is a position in time: a job created meanwhile comes on the first page only
        first = await store.list_jobs(limit=2)
        await store.create(
            JobRecord("j7", "timeline", "ordered", 1, created_at=1_007.0), max_running=100
        )
        rest = await store.list_jobs(limit=10, cursor=first.next_cursor)
        assert [r.job_id for r in rest.jobs] == everything[2:]


@pytest.mark.parametrize("cursor", ["", "nope", "MTIz", page_cursor((1, "a")) + "%", "a" * 300])
async def test_list_refuses_a_foreign_cursor(make_store: StoreFactory, cursor: str) -> None:
    async with make_store(ttl_s=60) as store:
        with pytest.raises(BadCursor):
            await store.list_jobs(cursor=cursor)


async def test_expired_jobs_are_not_listed(make_store: StoreFactory) -> None:
    async with make_store(ttl_s=0.3) as store:
        await store.create(_record("done"), max_running=10)
        await store.create(_record("running"), max_running=10)
        await store.append("done", _end(0))
        assert [r.job_id for r in (await store.list_jobs()).jobs] == ["running", "done"]

        async def gone() -> bool:
            return [r.job_id for r in (await store.list_jobs()).jobs] == ["running"]

        await _eventually(gone)


async def test_ping(make_store: StoreFactory) -> None:
    async with make_store(ttl_s=60) as store:
        await store.ping()


def test_record_wire_form() -> None:
    record = JobRecord(job_id="x", pipeline="p", mode="ordered", items=2, created_at=0.5)
    wire = record.to_wire()
    assert wire["created_at"] == "1970-01-01T00:00:00.500000Z"
    assert wire["status"] == "running" and wire["stats"] is None
    assert JobRecord.from_dict(record.to_dict()) == record
