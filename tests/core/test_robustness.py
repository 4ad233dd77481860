"""Hard cases: stray cancellations, shared side inputs, isolation of context, backpressure of
fan-outs and skips, closing of sources, and closing a stream from anywhere."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from conveyor_core import RunErrorEvent, batch_task, single_task

pytestmark = pytest.mark.looptime  # the virtual clock: times below are exact, and take no time

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


@pytest.mark.parametrize("mode", ["ordered", "as_completed"])
async def test_a_task_raising_cancelled_error_fails_the_run_instead_of_losing_items(
    mode: str,
) -> None:
    @single_task
    async def stray(x: int) -> int:
        await asyncio.sleep(0)
        if x == 2:
            raise asyncio.CancelledError()  # e.g. awaiting a future someone else cancelled
        return x

    events = [e async for e in stray.events(range(6), mode=mode)]
    error = events[-2]
    assert isinstance(error, RunErrorEvent)
    assert "CancelledError without being cancelled" in error.error
    assert events[-1].type == "end" and events[-1].status == "failed"
    with pytest.raises(RuntimeError, match="without being cancelled"):
        await stray(range(6), mode=mode).collect()


async def test_a_coroutine_side_input_is_shared_by_overlapping_runs(looptime: Any) -> None:
    calls = 0

    async def config() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return 100

    @single_task
    async def add(x: int, offset: int) -> int:
        return x + offset

    task = add.with_inputs(config())
    first, second = await asyncio.gather(task([1]).collect(), task([2]).collect())
    assert (first, second, calls) == ([101], [102], 1)
    assert looptime == 0.01

    # a run cancelled while the side input is still being awaited does not spoil it
    slow = add.with_inputs(asyncio.sleep(0.02, result=5))
    waiting = asyncio.create_task(slow([1]).collect())
    await asyncio.sleep(0.005)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await slow([1]).collect() == [6]
    assert looptime == 0.03  # the side input went on from 0.01, not started again at 0.015


async def test_each_call_starts_from_the_runs_context() -> None:
    seen: dict[int, str] = {}

    @single_task
    async def tag(x: int) -> int:
        seen[x] = request_id.get()
        request_id.set(f"item-{x}")  # must not leak into the next call
        if x % 3 == 0:
            await asyncio.sleep(0)
        return x

    request_id.set("outer")
    await tag(range(10)).collect()
    assert seen == {x: "outer" for x in range(10)}
    assert request_id.get() == "outer"


async def test_async_with_and_break_close_the_run_cleanly() -> None:
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))

    @single_task
    async def slow(x: int) -> int:
        await asyncio.sleep(0 if x == 0 else 10)
        return x

    async with slow(range(5)) as stream:
        async for _ in stream:
            break
    for _ in range(5):
        await asyncio.sleep(0)
    assert errors == []


async def test_aclose_from_another_task_stops_the_run(looptime: Any) -> None:
    started = asyncio.Event()

    @single_task
    async def slow(x: int) -> int:
        started.set()
        await asyncio.sleep(10)
        return x

    stream = slow(range(3))
    consumer = asyncio.create_task(stream.collect())
    await started.wait()
    await stream.aclose()
    assert await asyncio.wait_for(consumer, timeout=5) == []
    assert looptime == 0  # closed at once: no call slept its 10 s


async def test_probing_a_failed_batch_respects_the_concurrency_limit(looptime: Any) -> None:
    running = peak = 0

    @batch_task(max_size=8, on_error="skip_item", concurrency_limit=1)
    async def picky(xs: list[int]) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        if 3 in xs:
            raise ValueError("no threes")
        return sum(xs)

    assert await picky(range(8)).collect() == [sum(range(8)) - 3]
    assert peak == 1
    assert looptime == 0.01  # one after the other: the batch, its 8 members, the survivors


async def test_generator_fan_out_waits_for_a_slow_consumer() -> None:
    produced = 0

    @single_task
    async def explode(x: int) -> AsyncIterator[int]:
        nonlocal produced
        for i in range(100_000):
            produced += 1
            yield i

    consumed = 0
    async for _ in explode([0], max_in_flight=8):
        consumed += 1
        await asyncio.sleep(0)
        assert produced <= consumed + 2 * 8 + 2
        if consumed == 200:
            break


async def test_an_endless_sync_generator_streams_instead_of_filling_memory() -> None:
    @single_task
    def forever(x: int) -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    got = []
    async for value in forever([0], max_in_flight=64):
        got.append(value)
        if len(got) == 1000:
            break
    assert got == list(range(1000))


async def test_skipped_items_stay_in_flight_until_reported() -> None:
    pulled = 0

    def source() -> Iterator[int]:
        nonlocal pulled
        for i in range(50_000):
            pulled += 1
            yield i

    @single_task(on_error="skip_item")
    def reject(x: int) -> int:
        raise ValueError("never")

    taken = 0
    async for _event in reject.events(source(), max_in_flight=16):
        taken += 1
        assert pulled <= taken + 16 + 1
        await asyncio.sleep(0)
        if taken == 300:
            break


async def test_a_generator_source_is_closed_when_the_run_stops_early() -> None:
    closed: list[str] = []

    async def agen() -> AsyncIterator[int]:
        try:
            for i in range(1000):
                yield i
                await asyncio.sleep(0)
        finally:
            closed.append("async")

    def gen() -> Iterator[int]:
        try:
            yield from range(1000)
        finally:
            closed.append("sync")

    @single_task
    def same(x: int) -> int:
        return x

    for source in (agen(), gen()):
        stream = same(source, max_in_flight=4)
        async for _ in stream:
            break
        await stream.aclose()
    assert closed == ["async", "sync"]


async def test_a_list_subclass_fans_out() -> None:
    class Docs(list[int]):
        pass

    @single_task
    def split(x: int) -> Docs:
        return Docs([x, x])

    assert await split([1, 2]).collect() == [1, 1, 2, 2]
