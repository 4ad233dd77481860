"""`conveyor.stream`: AsyncStream over any async iterable, and the stream of a pipeline run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from conveyor import AsyncStream, StreamConsumedError, single_task
from conveyor.stream import AsyncStream as FromModule


async def numbers(n: int = 3) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


@single_task
async def wait(delay: float) -> float:
    await asyncio.sleep(delay)
    return delay


async def test_a_stream_wraps_any_async_iterable() -> None:
    assert FromModule is AsyncStream
    assert await AsyncStream(numbers()).collect() == [0, 1, 2]
    assert [x async for x in AsyncStream(numbers())] == [0, 1, 2]
    stream = AsyncStream(numbers())
    assert [await anext(stream), await anext(stream)] == [0, 1]
    assert [x async for x in stream] == [2]  # the iteration goes on where anext() left it
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_a_wrapper_over_an_exhausted_source_yields_nothing_like_its_source() -> None:
    source = numbers()
    stream = AsyncStream(source)
    assert await stream.collect() == [0, 1, 2]
    assert await stream.collect() == []
    assert [x async for x in source] == []

    class Again:
        """An async iterable that starts over each time, like a list."""

        def __aiter__(self) -> AsyncIterator[int]:
            return numbers(2)

    again = AsyncStream(Again())
    assert await again.collect() == [0, 1] and await again.collect() == [0, 1]


async def test_a_wrapper_is_generic_and_refuses_what_is_not_async_iterable() -> None:
    typed: AsyncStream[int] = AsyncStream[int](numbers())
    assert await typed.collect() == [0, 1, 2]
    with pytest.raises(TypeError, match="async iterable"):
        AsyncStream([1, 2])  # type: ignore[arg-type]


async def test_as_completed_of_a_wrapper_yields_as_the_source_does() -> None:
    assert await AsyncStream(numbers()).as_completed().collect() == [0, 1, 2]
    async with AsyncStream(numbers()) as stream:
        assert await anext(stream) == 0


async def test_anext_works_on_every_stream_of_a_run() -> None:
    data = [0.03, 0.0, 0.01]
    ordered = wait(data)
    assert [await anext(ordered) for _ in data] == data
    with pytest.raises(StopAsyncIteration):
        await anext(ordered)
    completed = wait.as_completed(data)
    assert await anext(completed) == 0.0
    assert [x async for x in completed] == [0.01, 0.03]  # async for goes on after anext()
    piped = (wait | wait).as_completed(data)
    assert await anext(piped) == 0.0
    await piped.aclose()


async def test_a_runs_stream_refuses_a_second_iteration() -> None:
    stream = wait([0.0])
    assert await stream.collect() == [0.0]
    with pytest.raises(StreamConsumedError):
        await stream.collect()
    with pytest.raises(StreamConsumedError):
        await anext(stream)
    started = wait([0.0, 0.0])
    await anext(started)
    with pytest.raises(StreamConsumedError):
        started.as_completed()
    await started.aclose()


async def test_as_completed_of_a_run_not_yet_started_gives_completion_order() -> None:
    data = [0.03, 0.0, 0.01]
    assert await wait(data).as_completed().collect() == [0.0, 0.01, 0.03]
    already = wait.with_execution_mode("as_completed")(data)
    assert already.as_completed() is already
    assert await already.as_completed().collect() == [0.0, 0.01, 0.03]
