"""`conveyor.pipeline`: building pipelines as 1.2.1 did, what data a run takes, extra arguments."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from conveyor import (
    InvalidRunError,
    Pipeline,
    PipelineContext,
    StreamTask,
    batch_task,
    single_task,
)
from conveyor.pipeline import Pipeline as FromModule


@single_task
async def echo(x: Any) -> Any:
    return x


@single_task
def hello(name: str) -> str:
    return f"Hello, {name}!"


@single_task
async def shout(x: str) -> str:
    return x.upper()


def test_the_ways_to_build_one() -> None:
    assert FromModule is Pipeline
    assert Pipeline(None).stages == [] and Pipeline().stages == []
    assert Pipeline(PipelineContext()).stages == []
    assert Pipeline(hello, shout).stages == [hello, shout]
    assert Pipeline([hello, shout]).stages == [hello, shout]  # as 1.2.1's docs show
    assert Pipeline(PipelineContext(), hello).stages == [hello]
    pipeline = Pipeline()
    assert pipeline.add(hello).add(shout) is pipeline
    assert isinstance(pipeline.stages, list) and pipeline.stages == [hello, shout]
    assert bool(Pipeline()) and len(Pipeline()) == 0


async def test_bar_and_add_compose_the_same() -> None:
    for pipeline in (hello | shout, Pipeline().add(hello, shout), Pipeline(hello) | shout):
        assert await pipeline(["ann"]).collect() == ["HELLO, ANN!"]


@pytest.mark.parametrize(
    "data",
    ["World", b"raw", ("a", 1), {"k": "v"}, 42, 1.5, None, object],
    ids=["str", "bytes", "tuple", "dict", "int", "float", "None", "type"],
)
async def test_a_value_that_is_not_a_collection_is_one_item(data: Any) -> None:
    got = await echo(data).collect()
    assert got == ([] if data is None else [data])  # a None item is filtered as any None


async def test_hello_world() -> None:
    assert await hello("World").collect() == ["Hello, World!"]
    assert await (hello | shout)("World").collect() == ["HELLO, WORLD!"]


async def test_collections_and_sources_are_iterated() -> None:
    def gen() -> Iterator[int]:
        yield from (1, 2)

    async def agen() -> AsyncIterator[int]:
        for i in (1, 2):
            yield i

    for data in (
        [1, 2],
        range(1, 3),
        gen(),
        iter([1, 2]),
        agen(),
        deque([1, 2]),
        {1: 0, 2: 0}.keys(),
    ):
        assert await echo(data).collect() == [1, 2], data
    assert sorted(await echo({2, 1}).collect()) == [1, 2]
    assert sorted(await echo(frozenset({1, 2})).collect()) == [1, 2]


async def test_no_data_runs_a_first_task_that_takes_no_item_once() -> None:
    calls = 0

    @single_task
    async def source() -> AsyncIterator[int]:
        nonlocal calls
        calls += 1
        for i in range(3):
            yield i

    @single_task
    def plain_source() -> list[str]:
        return ["a", "b"]

    @batch_task(max_size=2)
    async def pairs(xs: list[int]) -> list[int]:
        return [sum(xs)]

    assert await (source | pairs)().collect() == [1, 2]
    assert calls == 1
    assert await source.as_completed().collect() == [0, 1, 2]
    assert await plain_source().collect() == ["a", "b"]

    @single_task
    def count_to(n: int) -> list[int]:
        return list(range(n))

    class Feed:
        def __init__(self, size: int) -> None:
            self.size = size

        @single_task
        async def items(self) -> AsyncIterator[int]:
            for i in range(self.size):
                yield i

    assert await count_to.with_inputs(3)().collect() == [0, 1, 2]  # side inputs, no item
    assert await (Feed(2).items | pairs)().collect() == [1]
    events = [e async for e in source.events()]
    assert [e.value for e in events if e.type == "result"] == [0, 1, 2]
    assert events[-1].stats.inputs == 1  # one call, as if one item


async def test_no_data_with_a_first_stage_that_needs_items_is_a_clear_error() -> None:
    @batch_task(max_size=2)
    def total(xs: list[int]) -> int:
        return sum(xs)

    with pytest.raises(InvalidRunError, match="batch task: call the pipeline with data"):
        total()
    with pytest.raises(InvalidRunError, match="takes an item"):
        (hello | shout)()
    with pytest.raises(InvalidRunError, match="empty pipeline comes first"):
        Pipeline()()


async def test_extra_arguments_go_to_the_first_stage_for_that_run_only() -> None:
    @single_task
    async def scale(x: int, factor: int = 1, *, offset: int = 0) -> int:
        return x * factor + offset

    @single_task
    async def plus(x: int, y: int = 0) -> int:
        return x + y

    pipeline = scale | plus
    assert await pipeline([1, 2], 10).collect() == [10, 20]
    assert await pipeline([1, 2], 10, offset=1).collect() == [11, 21]
    assert await pipeline([1, 2]).collect() == [1, 2]  # the shared stage was not changed
    assert scale._side_args == [] and scale._side_kwargs == {}
    bound = scale.with_inputs(3, offset=5)
    assert await bound([1], 7).collect() == [12]  # call arguments replace positional inputs
    assert await bound([1], offset=0).collect() == [3]  # and update keyword ones
    assert await bound([1]).collect() == [8]
    assert await scale(2, 5).collect() == [10]  # a non-iterable value is the item


async def test_mode_and_max_in_flight_stay_the_engines_keywords() -> None:
    seen: list[dict[str, Any]] = []

    @single_task
    async def capture(x: float, **kwargs: Any) -> float:
        seen.append(kwargs)
        await asyncio.sleep(x)
        return x

    pipeline = Pipeline(capture)
    data = [0.02, 0.0]
    assert await pipeline(data, mode="as_completed", max_in_flight=1, tag=1).collect() == data
    assert seen == [{"tag": 1}, {"tag": 1}]
    assert await pipeline(data, mode="as_completed").collect() == [0.0, 0.02]


async def test_extra_arguments_need_a_task_first() -> None:
    with pytest.raises(InvalidRunError, match="first stage that is a task"):
        Pipeline()([1], 2)

    class Stream(StreamTask):
        async def process_stream(self, items: Any, mode: str) -> Any:
            position = 0
            async for item in items:
                yield item, [position]
                position += 1

    with pytest.raises(InvalidRunError, match="first stage that is a task"):
        Stream("s")([1], 2)
    with pytest.raises(InvalidRunError, match="stream stage s comes first"):
        Stream("s")()
