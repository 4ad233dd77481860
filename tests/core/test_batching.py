"""Batches: size, min_size remainders, max_wait flushing, concurrency, order per mode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from conveyor_core import EndEvent, batch_task, single_task

pytestmark = pytest.mark.looptime  # the virtual clock: times below are exact, and take no time


def now() -> float:
    return round(asyncio.get_running_loop().time(), 6)


@pytest.mark.parametrize(
    ("min_size", "expected", "dropped"),
    [(1, [[0, 1, 2], [3, 4, 5], [6]], 0), (2, [[0, 1, 2], [3, 4, 5]], 1)],
)
async def test_min_size_rules_the_remainder(
    min_size: int, expected: list[list[int]], dropped: int, caplog: pytest.LogCaptureFixture
) -> None:
    @batch_task(max_size=3, min_size=min_size)
    def group(xs: list[int]) -> tuple[int, ...]:
        return tuple(xs)

    events = [e async for e in group.events(range(7))]
    assert [list(e.value) for e in events if e.type == "result"] == expected
    end = events[-1]
    assert isinstance(end, EndEvent) and end.stats.dropped == dropped
    if dropped:
        assert "dropped 1 remainder item(s) below min_size: sources [6]" in caplog.text


async def test_max_wait_flushes_a_partial_batch_while_the_source_trickles(looptime: Any) -> None:
    flushed = asyncio.Event()
    batches: list[tuple[float, list[int]]] = []

    @batch_task(max_size=10, max_wait=0.02)
    def group(xs: list[int]) -> list[int]:
        batches.append((now(), xs))
        flushed.set()
        return xs

    async def trickle() -> AsyncIterator[int]:
        yield 1
        yield 2
        await asyncio.wait_for(flushed.wait(), timeout=10)  # stalls until the flush happened
        yield 3

    assert await group(trickle()).collect() == [1, 2, 3]
    assert batches == [(0.02, [1, 2]), (0.02, [3])]  # max_wait, then the end of the input
    assert looptime == 0.02


async def test_max_wait_respects_min_size(looptime: Any) -> None:
    batches: list[tuple[float, list[int]]] = []

    @batch_task(max_size=10, min_size=2, max_wait=0.01)
    def group(xs: list[int]) -> list[int]:
        batches.append((now(), xs))
        return xs

    async def trickle() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(0.05)  # max_wait passes with only one item
        yield 2  # reaching min_size flushes at once
        await asyncio.sleep(0.05)
        yield 3

    assert await group(trickle()).collect() == [1, 2]  # 3 alone is below min_size
    assert batches == [(0.05, [1, 2])]
    assert looptime == 0.1


async def test_batches_run_concurrently(looptime: Any) -> None:
    running = 0
    peak = 0

    @batch_task(max_size=2)
    async def slow(xs: list[int]) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        return sum(xs)

    assert await slow(range(10)).collect() == [1, 5, 9, 13, 17]
    assert peak == 5 and looptime == 0.05  # all five at once


async def test_concurrency_limit_bounds_calls(looptime: Any) -> None:
    running = 0
    peak = 0

    @single_task(concurrency_limit=3)
    async def limited(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.005)
        running -= 1
        return x

    @batch_task(max_size=2, concurrency_limit=1)
    async def one_batch_at_a_time(xs: list[int]) -> list[int]:
        return await limited(xs).collect()

    assert await limited(range(30)).collect() == list(range(30))
    assert peak == 3 and looptime == 0.05  # 10 rounds of 3
    peak = 0
    assert await one_batch_at_a_time(range(8)).collect() == list(range(8))
    assert peak == 2 and looptime == 0.07  # 4 batches one after the other, 0.005 s each


async def test_ordered_batches_hold_consecutive_items_and_keep_order() -> None:
    @single_task
    async def jitter(x: int) -> int:
        await asyncio.sleep(0.001 * ((x * 7) % 5))
        return x

    @batch_task(max_size=3)
    async def group(xs: list[int]) -> tuple[int, ...]:
        await asyncio.sleep(0.001 * (5 - len(xs)))
        return tuple(xs)

    out = await (jitter | group)(range(10)).collect()
    assert out == [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9,)]


async def test_as_completed_batches_take_items_in_arrival_order(looptime: Any) -> None:
    @single_task
    async def wait(delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    @batch_task(max_size=2)
    def group(xs: list[float]) -> tuple[float, ...]:
        return tuple(xs)

    out = await (wait | group).as_completed([0.06, 0.0, 0.04, 0.02]).collect()
    assert out == [(0.0, 0.02), (0.04, 0.06)]
    assert looptime == 0.06


async def test_batch_sources_unite_members() -> None:
    @batch_task(max_size=2)
    def pair(xs: list[int]) -> list[int]:
        return [sum(xs), max(xs)]

    events = [e async for e in pair.events([5, 6, 7])]
    assert [(e.value, e.sources) for e in events if e.type == "result"] == [
        (11, [0, 1]),
        (6, [0, 1]),
        (7, [2]),
        (7, [2]),
    ]
