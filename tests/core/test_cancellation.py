"""Leaving a run early cancels and awaits every call of it; nothing outlives its run."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from conveyor_core import single_task

from .conftest import settle

pytestmark = pytest.mark.looptime  # the virtual clock: sleeps take no real time


def tracked(all_started: asyncio.Event | None = None) -> tuple[list[int], list[int], object]:
    started: list[int] = []
    cancelled: list[int] = []

    @single_task
    async def slow(x: int) -> int:
        started.append(x)
        if all_started is not None and len(started) == 6:
            all_started.set()
        if x == 0:
            return x
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return x

    return started, cancelled, slow


async def test_break_cancels_in_flight_calls() -> None:
    started, cancelled, slow = tracked()
    async for value in slow(range(20)):  # type: ignore[operator]
        assert value == 0
        break
    assert not await settle()
    assert len(started) > 1 and sorted(cancelled) == sorted(started)[1:]


async def test_break_out_of_a_kept_stream_cancels_too() -> None:
    started, cancelled, slow = tracked()
    stream = slow(range(5))  # type: ignore[operator]
    async for _ in stream:
        break
    assert not await settle()
    assert len(started) > 1 and sorted(cancelled) == sorted(started)[1:]
    del stream


async def test_aclose_cancels_in_flight_calls() -> None:
    started, cancelled, slow = tracked()
    stream = slow(range(5))  # type: ignore[operator]
    iterator = aiter(stream)
    assert await anext(iterator) == 0
    await stream.aclose()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert len(started) > 1 and sorted(cancelled) == sorted(started)[1:]


async def test_async_with_closes_the_run() -> None:
    started, cancelled, slow = tracked()
    async with slow(range(3)) as stream:  # type: ignore[operator]
        async for _ in stream:
            break
    assert sorted(cancelled) == sorted(started)[1:]


async def test_cancelling_the_consumer_cancels_the_run() -> None:
    all_started = asyncio.Event()
    started, cancelled, slow = tracked(all_started)

    async def consume() -> list[int]:
        return await slow(range(6)).collect()  # type: ignore[operator]

    consumer = asyncio.create_task(consume())
    await asyncio.wait_for(all_started.wait(), timeout=10)
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert sorted(cancelled) == [1, 2, 3, 4, 5]


async def test_closing_the_event_stream_cancels_the_run() -> None:
    started, cancelled, slow = tracked()
    events = slow.events(range(4))  # type: ignore[attr-defined]
    first = await anext(events)
    assert first.type == "result"
    await events.aclose()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert len(started) > 1 and sorted(cancelled) == sorted(started)[1:]


async def test_a_pending_max_wait_timer_does_not_outlive_a_cancelled_run() -> None:
    from conveyor_core import batch_task

    @batch_task(max_size=10, max_wait=0.02)
    def group(xs: list[int]) -> list[int]:
        return xs

    async def trickle() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(30)

    stream = group(trickle())
    consumer = asyncio.create_task(stream.collect())
    await asyncio.sleep(0.005)  # the first item is in a partial batch, its timer pending
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer
    errors: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
    await asyncio.sleep(0.05)  # past max_wait
    assert errors == []
