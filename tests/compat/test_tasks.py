"""`conveyor.tasks`: BaseTask and a user's own stages, process(), the 1.2.1 constructors,
attributes and side inputs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import pytest

from conveyor import (
    AsyncStream,
    ErrorHandler,
    Pipeline,
    PipelineContext,
    RetryConfig,
    batch_task,
    get_current_context,
    single_task,
    with_context,
)
from conveyor.tasks import BaseTask, BatchTask, SingleTask


async def items(*values: Any) -> AsyncIterator[Any]:
    for value in values:
        await asyncio.sleep(0)
        yield value


@single_task
async def double(x: int) -> int:
    return x * 2


@single_task
async def wait(delay: float) -> float:
    await asyncio.sleep(delay)
    return delay


@batch_task(max_size=2)
async def total(xs: list[int]) -> int:
    return sum(xs)


class Doubler:
    def __init__(self, factor: int) -> None:
        self.factor = factor

    @single_task
    async def scale(self, x: int) -> int:
        return x * self.factor


async def test_process_runs_a_task_on_a_stream_of_items() -> None:
    results = await double.process(items(1, 2, 3))
    assert isinstance(results, AsyncIterable)
    assert [x async for x in results] == [2, 4, 6]
    assert await (await total.process(items(1, 2, 3))).collect() == [3, 3]
    assert await (await Doubler(10).scale.process(items(1))).collect() == [10]
    bound = single_task(lambda x, y: x + y).with_inputs(5)
    assert await (await bound.process(AsyncStream(items(1, 2)))).collect() == [6, 7]


async def test_process_follows_the_current_contexts_mode() -> None:
    data = [0.02, 0.0]
    assert await (await wait.process(items(*data))).collect() == data
    context = PipelineContext(execution_mode="as_completed")
    stream = await with_context(context, wait.process(items(*data)))
    assert await stream.collect() == [0.0, 0.02]


class Pairs(BaseTask):
    """Sums each two consecutive items."""

    async def process(self, items: AsyncIterable[Any]) -> AsyncIterable[Any]:
        async def pairs() -> AsyncIterator[int]:
            held: list[int] = []
            async for item in items:
                held.append(item)
                if len(held) == 2:
                    yield sum(held)
                    held = []
            if held:
                yield held[0]

        return pairs()


async def test_a_base_task_subclass_is_a_stage() -> None:
    pairs = Pairs()
    assert isinstance(pairs, BaseTask) and pairs.task_name == "Pairs"
    assert await pairs([1, 2, 3, 4, 5]).collect() == [3, 7, 5]
    assert await (double | pairs | double)([1, 2, 3]).collect() == [12, 12]
    assert await Pipeline().add(pairs, double)([1, 1]).collect() == [4]
    assert await pairs.as_completed([1, 2]).collect() == [3]
    assert (pairs | double).stages[0] is pairs
    assert Pipeline(pairs).description == "Sums each two consecutive items."


async def test_sources_of_a_base_task_result_are_the_items_it_took_for_it() -> None:
    class Fan(BaseTask):
        async def process(self, items: AsyncIterable[Any]) -> AsyncIterable[Any]:
            async def gen() -> AsyncIterator[Any]:
                async for item in items:
                    for copy in range(item):
                        yield f"{item}.{copy}"

            return gen()

    events = [e async for e in (double | Pairs()).events([1, 2, 3])]
    assert [(e.value, e.sources) for e in events if e.type == "result"] == [(6, [0, 1]), (6, [2])]
    events = [e async for e in Fan().events([2, 0, 1])]
    results = [(e.value, e.sources) for e in events if e.type == "result"]
    assert results == [("2.0", [0]), ("2.1", [0]), ("1.0", [1, 2])]  # [1, 2]: 0 yields nothing


async def test_process_may_be_an_async_generator_or_return_an_iterable() -> None:
    class Gen(BaseTask):
        def __init__(self) -> None:
            super().__init__(task_name="gen")

        async def process(self, items: AsyncIterable[Any]) -> AsyncIterator[Any]:  # type: ignore[override]
            context = self.get_context()
            async for item in items:
                yield (item, context is not None and context.pipeline_id is not None)

    class Eager(BaseTask):
        async def process(self, items: AsyncIterable[Any]) -> Any:
            return sorted([x async for x in items])

    assert await Gen()([1]).collect() == [(1, True)]
    assert Gen().name == "gen"
    assert await Eager()([3, 1, 2]).collect() == [1, 2, 3]


async def test_a_base_task_that_returns_nothing_iterable_fails_clearly() -> None:
    class Forgot(BaseTask):
        async def process(self, items: AsyncIterable[Any]) -> Any:
            return None

    class Missing(BaseTask):
        pass

    with pytest.raises(TypeError, match="Forgot.process\\(\\) must return an async iterable"):
        await Forgot()([1]).collect()
    with pytest.raises(NotImplementedError, match="process"):
        await Missing()([1]).collect()


def test_base_task_constructor_and_attributes() -> None:
    handler = ErrorHandler()
    task = BaseTask("skip_item", RetryConfig(2), handler, "named")
    assert (task.on_error, task.retry_config.max_attempts, task.error_handler) == (
        "skip_item",
        2,
        handler,
    )
    assert task.task_name == task.name == "named" and task.get_context() is None
    assert task._side_args == [] and task._side_kwargs == {}
    assert BaseTask().retry_config.max_attempts == 1  # no retry by default


async def test_single_and_batch_task_constructors_positional_or_keyword() -> None:
    handler = ErrorHandler()
    retry = RetryConfig(max_attempts=1)

    async def add(x: int, y: int, z: int = 0) -> int:
        return x + y + z

    single = SingleTask(add, [10], {"z": 1}, "skip_item", retry, handler, "adder", 2)
    assert isinstance(single, BaseTask)
    assert (single.task_name, single.on_error, single.retry_config, single.error_handler) == (
        "adder",
        "skip_item",
        retry,
        handler,
    )
    assert (single._side_args, single._side_kwargs, single.concurrency_limit) == (
        [10],
        {"z": 1},
        2,
    )
    assert await single([1, 2]).collect() == [12, 13]
    keyword = SingleTask(func=add, _side_args=[1], task_name="k", concurrency_limit=0)
    assert keyword.name == "k" and keyword.concurrency_limit is None
    assert await keyword([1]).collect() == [2]

    async def sum_all(xs: list[int], bonus: int = 0) -> int:
        return sum(xs) + bonus

    batch = BatchTask(sum_all, 2, 3, [100], None, "skip_batch", None, None, "sums")
    assert (batch.min_size, batch.max_size, batch.on_error, batch.task_name) == (
        2,
        3,
        "skip_batch",
        "sums",
    )
    assert await batch(range(7)).collect() == [103, 112]  # [6] is below min_size
    assert await batch(range(8)).collect() == [103, 112, 113]
    assert BatchTask(sum_all, min_size=2).max_size == 2  # max_size None: min_size
    assert BatchTask(sum_all).max_size == 1


async def test_attributes_can_be_changed_after_declaration() -> None:
    @single_task
    def fails(x: int) -> int:
        raise ValueError("no")

    fails.on_error = "skip_item"
    assert fails.on_error == "skip_item" and await fails([1]).collect() == []

    class Zero(ErrorHandler):
        async def handle_error(self, *_: Any) -> tuple[bool, Any]:
            return True, 0

    fails.error_handler = Zero()
    assert await fails([1]).collect() == [0]
    fails.retry_config = RetryConfig(max_attempts=1)
    assert fails.retry_config.max_attempts == 1
    fails._side_args = [5]
    assert fails._side_args == [5]
    with pytest.raises(ValueError, match="on_error"):
        fails.on_error = "nope"


async def test_with_inputs_replaces_the_inputs_bound_before() -> None:
    @single_task
    async def add(x: int, y: int = 0, *, z: int = 0) -> int:
        return x + y + z

    first = add.with_inputs(1, z=10)
    second = first.with_inputs(2)
    assert (second._side_args, second._side_kwargs) == ([2], {})
    assert await second([0]).collect() == [2]
    assert await first([0]).collect() == [11]  # the first is unchanged
    assert add._side_args == [] and add._side_kwargs == {}


async def test_a_raw_async_generator_side_input_keeps_asend_and_aclose() -> None:
    async def counter() -> AsyncIterator[int]:
        total = 0
        while True:
            sent = yield total
            total += sent or 1

    @single_task(concurrency_limit=1)
    async def step(x: int, gen: Any) -> int:
        if x == 0:
            await anext(gen)
            return await gen.asend(5)
        if x == 1:
            return await anext(gen)
        await gen.aclose()
        return -1

    source = counter()
    assert await step.with_inputs(source)([0, 1, 2]).collect() == [5, 6, -1]
    assert source.ag_frame is None  # closed by the task


async def test_a_stream_side_input_resolves_to_its_first_item() -> None:
    @single_task
    async def add(x: int, y: Any) -> Any:
        return (x, y)

    assert await add.with_inputs(AsyncStream(items(7, 8)))([1]).collect() == [(1, 7)]
    assert await add.with_inputs(double([4]))([1]).collect() == [(1, 8)]
    assert await add.with_inputs(AsyncStream(items()))([1]).collect() == [(1, None)]


async def test_a_task_sees_the_run_context_through_get_context() -> None:
    seen: list[Any] = []

    @single_task
    async def look(x: int) -> int:
        seen.append((look.get_context(), get_current_context()))
        return x

    await look.with_context(tag=1)([1]).collect()
    ((from_task, current),) = seen
    assert from_task is current and current.data == {"tag": 1}


async def test_a_task_subclass_that_overrides_process_runs_its_own() -> None:
    class Tagged(SingleTask):
        async def process(self, items: Any) -> Any:
            results = await super().process(items)  # the engine's own

            async def tag() -> AsyncIterator[Any]:
                async for value in results:
                    yield ("tagged", value)

            return tag()

    tagged = Tagged(lambda x: x + 1, task_name="tagged")
    assert await tagged([1, 2]).collect() == [("tagged", 2), ("tagged", 3)]
    assert await (double | tagged)([1]).collect() == [("tagged", 3)]
    assert BatchTask(lambda xs: xs, 2, 0).max_size == 2  # 0, as None, means min_size
