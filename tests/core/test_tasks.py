"""Task kinds, methods, threads, side inputs and the run's context."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from conveyor_core import (
    BatchTask,
    PipelineContext,
    SingleTask,
    batch_task,
    get_current_context,
    single_task,
)


async def test_decorators_with_and_without_arguments_on_every_function_kind() -> None:
    def plain(x: int) -> int:
        return x + 1

    async def coro(x: int) -> int:
        return x + 1

    def gen(x: int) -> Iterator[int]:
        yield x + 1

    async def agen(x: int) -> AsyncIterator[int]:
        yield x + 1

    for func in (plain, coro, gen, agen):
        for task in (single_task(func), single_task(task_name="t")(func)):
            assert isinstance(task, SingleTask)
            assert await task([1, 2]).collect() == [2, 3]

    def plain_batch(xs: list[int]) -> int:
        return sum(xs)

    async def agen_batch(xs: list[int]) -> AsyncIterator[int]:
        for x in xs:
            yield -x

    assert isinstance(batch_task(plain_batch), BatchTask)
    assert await batch_task(plain_batch)(range(4)).collect() == [0, 1, 2, 3]  # max_size = min_size
    assert await batch_task(max_size=10)(plain_batch)(range(12)).collect() == [45, 21]
    assert await batch_task(max_size=2)(agen_batch)([1, 2, 3]).collect() == [-1, -2, -3]


async def test_tasks_on_methods_bind_per_instance() -> None:
    class Scaler:
        def __init__(self, factor: int) -> None:
            self.factor = factor

        @single_task
        async def scale(self, x: int) -> int:
            return x * self.factor

        @batch_task(max_size=2)
        def total(self, xs: list[int]) -> int:
            return sum(xs) * self.factor

    two, ten = Scaler(2), Scaler(10)
    assert await two.scale([1, 2]).collect() == [2, 4]
    assert await (ten.scale | two.total)([1, 2, 3]).collect() == [60, 60]
    assert isinstance(Scaler.scale, SingleTask)
    assert two.scale.input_type is int


async def test_run_in_thread_keeps_the_loop_free() -> None:
    threads: set[str] = set()

    @single_task(run_in_thread=True)
    def blocking(x: int) -> int:
        threads.add(threading.current_thread().name)
        time.sleep(0.05)
        return x

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    assert await blocking(range(4)).collect() == [0, 1, 2, 3]
    tick_task.cancel()
    assert threading.main_thread().name not in threads
    assert ticks >= 3  # the loop kept running while the calls blocked their threads


@pytest.mark.looptime
async def test_side_inputs_values_coroutines_streams_and_iterators() -> None:
    async def fetch_offset() -> int:
        await asyncio.sleep(0)
        return 100

    async def numbers() -> AsyncIterator[int]:
        for i in (1, 2, 3):
            await asyncio.sleep(0.001)
            yield i

    @single_task
    async def combine(x: int, offset: int, scale: int, stream_first: int, live: Any) -> int:
        return (x + offset) * scale + stream_first + 1000 * await anext(live)

    @single_task
    def one(x: int) -> int:
        return x

    task = combine.with_inputs(fetch_offset(), 2, one([7, 8]), numbers())
    assert await task([1, 2, 3]).collect() == [1209, 2211, 3213]
    # resolved once: a second run reuses the awaited coroutine's value
    again = combine.with_inputs(5, scale=1, stream_first=0, live=numbers())
    assert await again([1]).collect() == [1006]


async def test_calling_a_task_binds_missing_arguments() -> None:
    @single_task
    async def add(x: int, y: int) -> int:
        return x + y

    bound = add(10)
    assert isinstance(bound, SingleTask)
    assert await bound([1, 2]).collect() == [11, 12]
    assert await (bound | add(5))([0]).collect() == [15]


async def test_context_is_visible_inside_tasks() -> None:
    seen: list[PipelineContext | None] = []

    @single_task
    async def look(x: int) -> int:
        seen.append(get_current_context())
        return x

    await look([1, 2], mode="as_completed").collect()
    assert get_current_context() is None
    first, second = seen
    assert first is second and first is not None
    assert first.mode == first.execution_mode == "as_completed"
    assert first.run_id == first.pipeline_id and str(uuid.UUID(first.pipeline_id)) == first.run_id


def test_output_types_unwrap_containers() -> None:
    @single_task
    async def many(x: int) -> list[str]:
        return [str(x)]

    @single_task
    async def maybe(x: int) -> int | None:
        return x

    @single_task
    async def stream(x: int) -> AsyncIterator[float]:
        yield float(x)

    assert many.output_type is str
    assert maybe.output_type is int
    assert stream.output_type is float
