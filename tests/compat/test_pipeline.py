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


async def test_what_a_batch_result_becomes() -> None:
    """Any iterable a batch task returns fans out, except str, bytes, tuple and mappings; a
    None inside a list is an item, only a top-level None filters; a model is one result."""
    pydantic = pytest.importorskip("pydantic")

    class Point(pydantic.BaseModel):  # iterates over its fields, but is one value
        x: int
        y: int

    def returning(make: Any) -> Any:
        @batch_task(max_size=2)
        def stage(batch: list[int]) -> Any:
            return make(batch)

        return stage

    fans_out = {
        "list": lambda b: [x * 10 for x in b],
        "map": lambda b: map(lambda x: x * 10, b),
        "filter": lambda b: filter(None, [x * 10 for x in b]),
        "deque": lambda b: deque(x * 10 for x in b),
        "range": lambda b: range(b[0] * 10, b[0] * 10 + 11, 10),
        "dict keys": lambda b: {x * 10: None for x in b}.keys(),
        "dict values": lambda b: {x: x * 10 for x in b}.values(),
        "generator": lambda b: (x * 10 for x in b),
    }
    for name, make in fans_out.items():
        assert await returning(make)([1, 2, 3, 4]).collect() == [10, 20, 30, 40], name
    assert sorted(await returning(lambda b: {x * 10 for x in b})([1, 2]).collect()) == [10, 20]

    one_each = {
        "str": (lambda b: "ab", ["ab", "ab"]),
        "bytes": (lambda b: b"ab", [b"ab", b"ab"]),
        "tuple": (lambda b: tuple(b), [(1, 2), (3, 4)]),
        "dict": (lambda b: {"n": len(b)}, [{"n": 2}, {"n": 2}]),
        "model": (lambda b: Point(x=b[0], y=b[1]), [Point(x=1, y=2), Point(x=3, y=4)]),
        "int": (lambda b: sum(b), [3, 7]),
    }
    for name, (make, want) in one_each.items():
        assert await returning(make)([1, 2, 3, 4]).collect() == want, name

    assert await returning(lambda b: [None, b[0]])([1, 2, 3, 4]).collect() == [None, 1, None, 3]
    assert await returning(lambda b: None if b[0] == 1 else b)([1, 2, 3, 4]).collect() == [3, 4]
