"""The Redis job store beyond the shared contract: several replicas (store instances) on one
Redis, leases and the reaper, cancellation across replicas, retention, outages, the layout.

Timing assertions use generous bounds: the machine running the tests is shared and noisy.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis

from app.jobs.keys import Keys, entry_id, entry_seq
from app.jobs.redis import WORKER_LOST, RedisJobStore, _split_prefix, _without_password
from app.jobs.store import JobLimitReached, JobRecord, JobStatus, StoreUnavailable
from tests.app.redis_server import RedisServer

pytestmark = pytest.mark.redis

Replicas = Callable[..., AbstractAsyncContextManager[list[RedisJobStore]]]


@pytest.fixture
def replicas(redis_url: str, redis_prefix: str) -> Replicas:
    """`async with replicas(2, lease_s=0.2) as (a, b):` stores sharing one Redis and prefix."""

    @asynccontextmanager
    async def factory(n: int, *, start: bool = False, **options: Any) -> AsyncIterator[Any]:
        async with AsyncExitStack() as stack:
            stores = []
            for _ in range(n):
                store = RedisJobStore(redis_url, prefix=redis_prefix, **options)
                stack.push_async_callback(store.close)
                if start:
                    await store.start()
                stores.append(store)
            yield stores

    return factory


def _record(job_id: str = "j1", items: int = 3) -> JobRecord:
    return JobRecord(job_id=job_id, pipeline="timeline", mode="ordered", items=items)


def _result(seq: int, value: Any = None) -> dict[str, Any]:
    return {
        "type": "result",
        "seq": seq,
        "value": seq if value is None else value,
        "sources": [seq],
    }


def _end(seq: int, status: str = "succeeded") -> dict[str, Any]:
    stats = {"inputs": 3, "results": seq, "skipped": 0, "dropped": 0, "elapsed_s": 0.1}
    return {"type": "end", "seq": seq, "status": status, "stats": stats}


async def _collect(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event async for event in events]


async def test_replicas_share_jobs_and_followers(replicas: Replicas) -> None:
    async with replicas(2) as (a, b):
        await a.create(_record(), max_running=10)
        assert (await b.get("j1")).status is JobStatus.RUNNING  # type: ignore[union-attr]
        follower = asyncio.create_task(_collect(b.events("j1")))
        for seq in range(3):
            await a.append("j1", _result(seq))
            await asyncio.sleep(0.02)
        await a.append("j1", _end(3))
        events = await asyncio.wait_for(follower, 10)
        assert [e["seq"] for e in events] == [0, 1, 2, 3] and events[-1]["type"] == "end"
        assert events[0] == _result(0)  # stored and read back as the same JSON object
        assert await b.results("j1") == [0, 1, 2]
        resumed = await _collect(b.events("j1", after=1))
        assert [e["seq"] for e in resumed] == [2, 3]


async def test_running_limit_counts_every_replica(replicas: Replicas) -> None:
    async with replicas(2) as (a, b):
        await a.create(_record("a1"), max_running=2)
        await b.create(_record("b1"), max_running=2)
        with pytest.raises(JobLimitReached):
            await a.create(_record("a2"), max_running=2)
        assert await a.running_count() == await b.running_count() == 2


async def test_concurrent_creates_never_exceed_the_limit(replicas: Replicas) -> None:
    async with replicas(4) as stores:
        attempts = [
            store.create(_record(f"{n}-{i}"), max_running=5)
            for n, store in enumerate(stores)
            for i in range(5)
        ]
        outcomes = await asyncio.gather(*attempts, return_exceptions=True)
        assert sum(o is None for o in outcomes) == 5
        assert all(isinstance(o, JobLimitReached) for o in outcomes if o is not None)
        assert await stores[0].running_count() == 5


async def test_cancel_on_one_replica_wakes_the_owner(replicas: Replicas) -> None:
    async with replicas(2) as (owner, other):
        await owner.create(_record(), max_running=10)
        waiter = asyncio.create_task(owner.wait_cancel("j1"))
        await asyncio.sleep(0.2)
        assert not waiter.done()
        record = await other.request_cancel("j1")
        assert record is not None and record.cancel_requested
        await asyncio.wait_for(waiter, 10)


async def test_a_missed_cancel_message_is_seen_at_the_next_renewal(
    replicas: Replicas, redis_url: str, redis_prefix: str
) -> None:
    async with replicas(1) as (owner,):
        await owner.create(_record(), max_running=10)
        waiter = asyncio.create_task(owner.wait_cancel("j1"))
        await asyncio.sleep(0.1)
        raw = aioredis.Redis.from_url(redis_url)  # the flag without the message
        await raw.hset(Keys(redis_prefix).job("j1"), "cancel_requested", "1")
        await raw.aclose()
        await asyncio.sleep(0.1)
        assert not waiter.done()
        await owner.renew_lease("j1")
        await asyncio.wait_for(waiter, 5)


async def test_a_lost_job_fails_once_with_worker_lost(replicas: Replicas) -> None:
    async with replicas(1, lease_s=0.2) as (owner,), replicas(2, lease_s=0.2, start=True) as rest:
        await owner.create(_record(), max_running=10)
        await owner.append("j1", _result(0))
        followers = [asyncio.create_task(_collect(s.events("j1"))) for s in rest]
        started = time.monotonic()
        # the owner "dies": it never renews; the reapers of the other two see the lease expire
        first, second = await asyncio.wait_for(asyncio.gather(*followers), 10)
        elapsed = time.monotonic() - started
        assert first == second
        assert [e["type"] for e in first] == ["result", "error", "end"]
        assert [e["seq"] for e in first] == [0, 1, 2]
        error, end = first[1], first[2]
        assert error["error"].startswith("WorkerLost") and error["error"] == WORKER_LOST
        assert error["stage"] is None
        assert end["status"] == "failed" and end["stats"]["results"] == 1
        assert end["stats"]["inputs"] == 3 and end["stats"]["elapsed_s"] >= 0
        record = await rest[0].get("j1")
        assert record is not None and record.status is JobStatus.FAILED
        assert record.stats == end["stats"] and record.finished_at is not None
        assert await rest[0].running_count() == 0
        assert elapsed < 4 * 0.2 + 3  # within four lease periods, plus a noisy machine's margin
        # the owner, back to life, can write nothing more (its appends are queued: the error
        # comes with the first one that waits for Redis, the end at the latest)
        with pytest.raises(ValueError):
            await owner.append("j1", _result(1))
            await owner.append("j1", _end(2))
        assert await _collect(rest[1].events("j1")) == first
        # and it is told to stop
        waiter = asyncio.create_task(owner.wait_cancel("j1"))
        await owner.renew_lease("j1")
        await asyncio.wait_for(waiter, 5)


async def test_reaping_is_exactly_once(replicas: Replicas) -> None:
    async with replicas(6, lease_s=0.1) as stores:
        for n in range(5):
            await stores[0].create(_record(f"j{n}"), max_running=10)
        await asyncio.sleep(0.5)  # three lease periods without renewal
        claims = await asyncio.gather(*(store.reap() for store in stores[1:]))
        claimed = sorted(job for jobs in claims for job in jobs)
        assert claimed == [f"j{n}" for n in range(5)]
        for n in range(5):
            events = await _collect(stores[0].events(f"j{n}"))
            assert [e["type"] for e in events] == ["error", "end"]


async def test_renewed_leases_are_not_lost(replicas: Replicas) -> None:
    async with replicas(1, lease_s=0.2) as (owner,), replicas(1, lease_s=0.2, start=True):
        await owner.create(_record(), max_running=10)
        for _ in range(10):  # 2 s: ten lease periods
            await asyncio.sleep(0.2)
            await owner.renew_lease("j1")
        record = await owner.get("j1")
        assert record is not None and record.status is JobStatus.RUNNING
        assert await owner.reap() == []


async def test_retention_is_set_by_end_only(
    replicas: Replicas, redis_url: str, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        async with replicas(1, ttl_s=60) as (store,):
            await store.create(_record(), max_running=10)
            await store.append("j1", _result(0))
            assert await raw.pttl(keys.job("j1")) == -1 and await raw.pttl(keys.events("j1")) == -1
            assert await raw.zscore(keys.running, "j1") is not None
            await store.append("j1", _end(1))
            for key in (keys.job("j1"), keys.events("j1")):
                assert 55_000 < await raw.pttl(key) <= 60_000
            assert await raw.zscore(keys.running, "j1") is None
            ids = [entry for entry, _ in await raw.xrange(keys.events("j1"))]
            assert ids == [entry_id(0).encode(), entry_id(1).encode()]
            assert [entry_seq(i) for i in ids] == [0, 1]
    finally:
        await raw.aclose()


async def test_an_idle_follower_blocks_instead_of_polling(
    replicas: Replicas, redis_url: str
) -> None:
    raw = aioredis.Redis.from_url(redis_url)

    async def xread_calls() -> int:
        stats = await raw.info("commandstats")
        return int(stats.get("cmdstat_xread", {}).get("calls", 0))

    try:
        async with replicas(1) as (store,):
            await store.create(_record(), max_running=10)
            follower = asyncio.create_task(_collect(store.events("j1")))
            await asyncio.sleep(0.2)
            before = await xread_calls()
            await asyncio.sleep(2.5)
            idle = await xread_calls() - before
            await store.append("j1", _end(0))
            assert [e["type"] for e in await asyncio.wait_for(follower, 10)] == ["end"]
    finally:
        await raw.aclose()
    # one blocking read per 2 s block (other sessions on a shared Redis may add a few)
    assert idle <= 20, f"{idle} XREAD calls in 2.5 s of an idle follower"


async def test_followers_in_one_process_share_one_blocking_read(
    replicas: Replicas, redis_url: str
) -> None:
    raw = aioredis.Redis.from_url(redis_url)

    async def xread_calls() -> int:
        stats = await raw.info("commandstats")
        return int(stats.get("cmdstat_xread", {}).get("calls", 0))

    try:
        async with replicas(2) as (owner, other):
            await owner.create(_record(), max_running=10)
            followers = [asyncio.create_task(_collect(other.events("j1"))) for _ in range(50)]
            await asyncio.sleep(0.3)
            before = await xread_calls()
            await asyncio.sleep(2.5)
            idle = await xread_calls() - before
            for seq in range(100):
                await owner.append("j1", _result(seq))
            await owner.append("j1", _end(100))
            results = await asyncio.wait_for(asyncio.gather(*followers), 20)
    finally:
        await raw.aclose()
    assert all([e["seq"] for e in events] == list(range(101)) for events in results)
    assert idle <= 20, f"{idle} XREAD calls in 2.5 s for 50 idle followers"


async def test_a_follower_ahead_of_the_job_does_not_make_others_poll(
    replicas: Replicas, redis_url: str
) -> None:
    """A follower whose `after` is past the last event waits on the job's tail like the others:
    the tail starts at the job's last event, not at that follower's position."""
    raw = aioredis.Redis.from_url(redis_url)

    async def fetches() -> int:
        stats = await raw.info("commandstats")
        return sum(
            int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
            for name in ("evalsha", "eval", "xrange", "hget")
        )

    try:
        async with replicas(2) as (owner, other):
            await owner.create(_record(), max_running=10)
            await owner.append("j1", _result(0))
            ahead = asyncio.create_task(_collect(other.events("j1", after=10)))
            await asyncio.sleep(0.2)
            behind = asyncio.create_task(_collect(other.events("j1")))
            await asyncio.sleep(0.3)
            before = await fetches()
            await asyncio.sleep(1.0)
            idle = await fetches() - before
            for seq in range(1, 15):
                await owner.append("j1", _result(seq))
            await owner.append("j1", _end(15))
            ahead_events, behind_events = await asyncio.wait_for(asyncio.gather(ahead, behind), 20)
    finally:
        await raw.aclose()
    assert [e["seq"] for e in behind_events] == list(range(16))
    assert [e["seq"] for e in ahead_events] == [11, 12, 13, 14, 15]
    assert idle <= 20, f"{idle} reads in 1 s of two idle followers"


async def test_integers_of_any_length_read_back(replicas: Replicas) -> None:
    """Integers over Python's 4300-digit string limit are written, and read back too."""
    huge = 10**5000 + 7
    async with replicas(2) as (owner, other):
        await owner.create(_record(), max_running=10)
        await owner.append("j1", _result(0, huge))
        live = asyncio.create_task(_collect(other.events("j1")))
        await asyncio.sleep(0.2)  # caught up: the next events come through the tail
        await owner.append("j1", _result(1, -huge))
        await owner.append("j1", _end(2))
        for events in (await asyncio.wait_for(live, 10), await _collect(other.events("j1"))):
            assert [e["value"] for e in events[:2]] == [huge, -huge]
        assert await other.results("j1") == [huge, -huge]


@pytest.mark.parametrize("bound", ["KEEP", "KEEP_BYTES"])
async def test_a_slow_follower_reads_again_from_redis(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch, bound: str
) -> None:
    # memory holds very few events, by count or by size
    monkeypatch.setattr(f"app.jobs.redis_tail.{bound}", 4 if bound == "KEEP" else 400)
    held: list[int] = []

    async def slow(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        async for event in events:
            out.append(event)
            await asyncio.sleep(0.005)
        return out

    async with replicas(2) as (owner, other):
        await owner.create(_record(), max_running=10)
        await owner.append("j1", _result(0))
        fast = asyncio.create_task(_collect(other.events("j1")))
        slower = asyncio.create_task(slow(other.events("j1")))
        await asyncio.sleep(0.2)
        for seq in range(1, 300):
            await owner.append("j1", _result(seq))
            if seq % 50 == 0:
                await asyncio.sleep(0.02)
                held += [t._bytes for t in other._tails.values()]
        await owner.append("j1", _end(300))
        for events in await asyncio.wait_for(asyncio.gather(fast, slower), 30):
            assert [e["seq"] for e in events] == list(range(301))
    if bound == "KEEP_BYTES":  # about 60 bytes an event: never the 300 events' ~18 kB
        assert held and max(held) < 5_000, held


async def test_unreachable_redis_raises_store_unavailable() -> None:
    store = RedisJobStore("redis://:secret@127.0.0.1:1/0", retry_s=0.3)
    try:
        with pytest.raises(StoreUnavailable, match="127.0.0.1:1") as caught:
            await store.ping()
        assert "secret" not in str(caught.value)
        with pytest.raises(StoreUnavailable):
            await store.get("j1")
        with pytest.raises(StoreUnavailable):
            await store.create(_record(), max_running=1)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):  # after its bounded retry
            await store.append("j1", _result(0))
        assert 0.2 < time.monotonic() - started < 10
        with pytest.raises(StoreUnavailable):
            await _collect(store.events("j1"))
    finally:
        await store.close()


async def test_append_waits_out_a_redis_restart(tmp_path: Any) -> None:
    server = RedisServer().start()
    store = RedisJobStore(server.url, retry_s=30)
    try:
        await store.create(_record(), max_running=10)
        await store.append("j1", _result(0))
        server.stop()
        with pytest.raises(StoreUnavailable):
            await store.ping()
        await store.append("j1", _result(1))  # queued
        pending = asyncio.create_task(store.append("j1", _end(2)))  # waits until written
        await asyncio.sleep(1.0)
        assert not pending.done()
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(pending, 30)
        assert [e["seq"] for e in await _collect(store.events("j1"))] == [0, 1, 2]
        assert (await store.get("j1")).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]
    finally:
        await store.close()
        server.close()


async def test_an_append_that_waits_too_long_keeps_an_event_it_sent() -> None:
    server = RedisServer().start()
    store = RedisJobStore(server.url, retry_s=0.5)
    try:
        await store.create(_record(), max_running=10)
        await store.append("j1", _result(0))
        server.stop()
        await store.append("j1", _result(1))  # queued: stays queued
        with pytest.raises(StoreUnavailable) as given_up:
            await store.append("j1", _end(2))  # given up after retry_s
        assert given_up.value.kept  # sent (Redis may have it, the reply lost): it keeps seq 2
        flusher = store._writers["j1"]._flusher
        assert flusher is not None and not flusher.done()  # it goes on in the background
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(asyncio.shield(flusher), 30)
        assert "j1" not in store._writers  # written: the store forgot the writer
        events = await _collect(store.events("j1"))
        assert [(e["seq"], e["type"]) for e in events] == [(0, "result"), (1, "result"), (2, "end")]
    finally:
        await store.close()
        server.close()


async def test_appends_are_written_in_batches(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with replicas(2) as (owner, other):
        calls: list[int] = []
        write = owner._write

        async def counted(job_id: str, batch: list[Any], token: str) -> None:
            calls.append(len(batch))
            await write(job_id, batch, token)

        monkeypatch.setattr(owner, "_write", counted)
        await owner.create(_record(), max_running=10)
        follower = asyncio.create_task(_collect(other.events("j1")))
        for seq in range(3000):
            await owner.append("j1", _result(seq))
        await owner.append("j1", _end(3000))
        events = await asyncio.wait_for(follower, 30)
    assert [e["seq"] for e in events] == list(range(3001))
    assert sum(calls) == 3001 and len(calls) < 300, calls  # group commit


async def test_a_lost_reply_writes_nothing_twice(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with replicas(1) as (owner,):
        write = owner._write
        lost: list[int] = []

        async def flaky(job_id: str, batch: list[Any], token: str) -> None:
            if len(batch) > 2 and not lost:  # half of it reaches Redis, then the reply is lost
                lost.append(len(batch))
                await write(job_id, batch[: len(batch) // 2], token)
                raise ConnectionError("reply lost")
            if len(batch) > 2 and len(lost) == 1:  # the whole batch reaches Redis, reply lost
                lost.append(len(batch))
                await write(job_id, batch, token)
                raise ConnectionError("reply lost")
            await write(job_id, batch, token)

        monkeypatch.setattr(owner, "_write", flaky)
        await owner.create(_record(), max_running=10)
        await owner.append("j1", _result(0))
        for seq in range(1, 200):
            await owner.append("j1", _result(seq))
        await owner.append("j1", _end(200))
        events = await _collect(owner.events("j1"))
    assert len(lost) == 2
    assert [e["seq"] for e in events] == list(range(201))


async def test_a_cancelled_append_still_writes_its_event(tmp_path: Any) -> None:
    server = RedisServer().start()
    store = RedisJobStore(server.url, retry_s=30)
    try:
        await store.create(_record(), max_running=10)
        await store.append("j1", _result(0))
        server.stop()
        waiting = asyncio.create_task(store.append("j1", _end(1)))
        await asyncio.sleep(0.3)
        waiting.cancel()  # as the runner's consumer is cancelled
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.to_thread(server.start)
        events = await asyncio.wait_for(_collect(store.events("j1")), 30)
        assert [e["type"] for e in events] == ["result", "end"]
    finally:
        await store.close()
        server.close()


def test_url_options() -> None:
    assert _split_prefix("redis://h:6379/0") == ("redis://h:6379/0", None)
    assert _split_prefix("redis://h:6379/0?prefix=a:b:&db=2") == ("redis://h:6379/0?db=2", "a:b:")
    assert _without_password("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
    assert _without_password("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert _without_password("redis://h:1/0") == "redis://h:1/0"


async def _swallowing(*_: Any) -> Any:
    """A Redis call whose cancellation is swallowed, as redis-py's can be on Python 3.11 (CPython
    gh-86296: `asyncio.wait_for` returns normally when the cancel lands during the send)."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(3600)
    return [], 0


async def test_close_stops_background_tasks_that_swallow_their_cancellation(
    redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisJobStore(redis_url, prefix=redis_prefix, lease_s=0.05)
    try:
        await store.create(_record(), max_running=10)
        await store.append("j1", _result(0))
        monkeypatch.setattr(store, "_check_waiters", _swallowing)  # the listener
        monkeypatch.setattr(store, "reap", _swallowing)  # the reaper
        monkeypatch.setattr(store, "_read_live", _swallowing)  # the tail
        await store.start()
        follower = asyncio.create_task(_collect(store.events("j1")))
        await asyncio.sleep(0.2)  # each background task is in its swallowing call
        assert {"conveyor-cancel-listener", "conveyor-reaper"} <= {
            t.get_name() for t in asyncio.all_tasks()
        }
        tasks = [store._listener, store._reaper, *(t.task for t in store._tails.values())]
        assert len(tasks) == 3
        await asyncio.wait_for(store.close(), 20)
        assert all(task is not None and task.done() for task in tasks)
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    finally:
        monkeypatch.undo()
        await store.close()


async def test_an_abandoned_job_leaves_no_writer_behind() -> None:
    server = RedisServer().start()
    store = RedisJobStore(server.url, retry_s=0.3)
    try:
        await store.create(_record(), max_running=10)
        await store.append("j1", _result(0))
        server.stop()
        await store.append("j1", _result(1))
        with pytest.raises(StoreUnavailable):
            await store.append("j1", _end(2))  # the runner gives up on the job
        writer = store._writers["j1"]
        store.abandon("j1")
        assert "j1" not in store._writers and not writer._pending
        assert writer._flusher is not None
        await asyncio.wait_for(asyncio.shield(writer._flusher), 10)  # stopped, not retrying
    finally:
        await store.close()
        server.close()


async def test_the_index_of_get_jobs_expires_with_the_jobs(
    replicas: Replicas, redis_url: str, redis_prefix: str
) -> None:
    """A finished job leaves the indexes once its retention is over (`prune_index`, which the
    reaper runs), a job lost by its replica too; running jobs stay."""
    keys = Keys(redis_prefix)
    raw = aioredis.Redis.from_url(redis_url)

    async def sizes() -> tuple[int, int, int]:
        index, mine = await raw.zcard(keys.index), await raw.zcard(keys.pipeline_index("timeline"))
        return index, mine, await raw.zcard(keys.expiring)

    try:
        async with replicas(1, ttl_s=0.2, lease_s=0.1) as (store,):
            for job_id in ("done", "running", "lost"):
                await store.create(_record(job_id), max_running=10)
            await store.append("done", _end(0))
            assert await sizes() == (3, 3, 1)
            assert await store.prune_index() == 0  # not yet expired
            for _ in range(10):  # "lost" is not renewed: three periods are over
                await store.renew_lease("running")
                await asyncio.sleep(0.05)
            assert await store.reap() == ["lost"]
            assert await sizes() == (3, 3, 2)
            await asyncio.sleep(0.3)
            assert await store.prune_index() == 2
            assert await sizes() == (1, 1, 0)
            page = await store.list_jobs()
            assert [r.job_id for r in page.jobs] == ["running"]
    finally:
        await raw.aclose()
