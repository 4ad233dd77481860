"""Bounded work: lazy input, a cap on items in flight, backpressure from a slow consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor_core import DEFAULT_MAX_IN_FLIGHT, batch_task, single_task


@pytest.mark.looptime
async def test_items_in_flight_never_exceed_the_bound(looptime: Any) -> None:
    running = 0
    peak = 0

    @single_task
    async def slow(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        return x

    out = await slow(range(200), max_in_flight=7).collect()
    assert out == list(range(200)) and peak == 7
    assert looptime == 0.029  # 29 rounds of 7 calls (the last of 4): never fewer at once


async def test_a_slow_consumer_slows_the_source() -> None:
    pulled = 0

    def source() -> Iterator[int]:
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield i

    @single_task
    def same(x: int) -> int:
        return x

    consumed = 0
    async for _ in same(source(), max_in_flight=16):
        consumed += 1
        await asyncio.sleep(0)
        assert pulled <= consumed + 16 + 1
        if consumed == 100:
            break


async def test_partial_batches_go_early_when_the_bound_holds_everything() -> None:
    pulled = 0

    def source() -> Iterator[int]:
        nonlocal pulled
        for i in range(100_000):
            pulled += 1
            yield i

    @batch_task(max_size=100)
    def group(xs: list[int]) -> int:
        return len(xs)

    @batch_task(max_size=100)
    def group_again(xs: list[int]) -> int:
        return sum(xs)

    # 100 x 100 items could never fill the second batch under the default bound of 4096
    counted = 0
    async for value in (group | group_again)(source()):
        assert value <= DEFAULT_MAX_IN_FLIGHT
        counted += value
        assert pulled <= counted + DEFAULT_MAX_IN_FLIGHT
    assert counted == 100_000


async def test_a_stream_task_feeding_a_large_batch_does_not_deadlock() -> None:
    from collections.abc import AsyncIterator

    from conveyor_core import StreamTask

    class Triples(StreamTask):
        """Each output stands for three inputs."""

        async def process_stream(
            self, items: AsyncIterator[Any], mode: str
        ) -> AsyncIterator[tuple[Any, list[int]]]:
            held: list[int] = []
            position = 0
            async for _item in items:
                held.append(position)
                position += 1
                if len(held) == 3:
                    yield 1, held
                    held = []

    @batch_task(max_size=2000)
    def count(xs: list[int]) -> int:
        return len(xs)

    total = sum(await (Triples("triples") | count)(range(30_000)).collect())
    assert total == 10_000


async def test_an_input_far_larger_than_the_bound_streams_through() -> None:
    @single_task
    async def inc(x: int) -> int:
        return x + 1

    @batch_task(max_size=16)
    async def total(xs: list[int]) -> int:
        return sum(xs)

    count = 0
    async for _ in (inc | total | inc)(range(50_000), max_in_flight=64):
        count += 1
    assert count == -(-50_000 // 16)
