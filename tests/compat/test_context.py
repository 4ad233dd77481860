"""`conveyor.context`: PipelineContext, its template on a pipeline, and the context variable."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from conveyor import (
    ContextManager,
    Pipeline,
    PipelineContext,
    get_current_context,
    set_current_context,
    single_task,
    with_context,
)
from conveyor.context import ExecutionMode


def test_a_context_needs_no_argument_and_copies_its_data() -> None:
    context = PipelineContext()
    assert (context.execution_mode, context.max_parallelism, context.pipeline_id) == (
        "ordered",
        None,
        None,
    )
    assert context.data == {}
    full = PipelineContext("as_completed", 8, "id", {"k": [1]})
    copy = full.copy()
    assert copy == full and copy is not full and copy.data is not full.data
    copy.data["other"] = 1
    assert "other" not in full.data
    assert set(vars(full)) == {"execution_mode", "max_parallelism", "pipeline_id", "data"}


def test_todays_names_are_aliases() -> None:
    context = PipelineContext()
    context.mode = "as_completed"
    context.max_in_flight = 3
    context.run_id = "r"
    assert (context.execution_mode, context.max_parallelism, context.pipeline_id) == (
        "as_completed",
        3,
        "r",
    )
    assert (context.mode, context.max_in_flight, context.run_id) == ("as_completed", 3, "r")
    mode: ExecutionMode = context.execution_mode
    assert mode == "as_completed"


async def test_each_run_gets_a_fresh_pipeline_id_and_a_copy_of_the_template() -> None:
    seen: list[PipelineContext] = []

    @single_task
    async def count(x: int) -> int:
        context = get_current_context()
        assert context is not None
        seen.append(context)
        context.data["counter"] = context.data.get("counter", 0) + 1
        return context.data["counter"]

    pipeline = count.with_context(data={"counter": 100})
    assert await pipeline([1, 2, 3]).collect() == [101, 102, 103]
    assert await pipeline([1, 2, 3]).collect() == [101, 102, 103]  # a run starts from a copy
    assert pipeline.context.data == {"counter": 100}
    first, second = seen[0], seen[3]
    assert first is seen[1] is seen[2] and first is not second
    assert first.pipeline_id != second.pipeline_id
    assert str(uuid.UUID(first.pipeline_id or "")) == first.pipeline_id
    assert first.execution_mode == "ordered"
    assert get_current_context() is None  # the run's context stays inside the run


async def test_with_context_sets_fields_and_puts_other_keys_into_data() -> None:
    seen: list[PipelineContext | None] = []

    @single_task
    async def look(x: int) -> int:
        seen.append(get_current_context())
        return x

    template = PipelineContext(execution_mode="as_completed", data={"tag": "t"})
    pipeline = look.with_context(**template.__dict__).with_context(user="u", max_parallelism=5)
    assert pipeline.context.data == {"tag": "t", "user": "u"}
    assert pipeline.mode == "as_completed" and pipeline.max_in_flight == 5
    await pipeline([1]).collect()
    context = seen[-1]
    assert context is not None
    assert context.execution_mode == "as_completed"
    assert context.max_parallelism == 5 and context.data == {"tag": "t", "user": "u"}
    assert template.data == {"tag": "t"}  # the caller's context is not changed


async def test_pipeline_takes_a_context_and_bar_carries_it() -> None:
    seen: list[PipelineContext | None] = []

    @single_task
    async def look(x: int) -> int:
        seen.append(get_current_context())
        return x

    context = PipelineContext(data={"who": "me"})
    pipeline = Pipeline(context).add(look)
    assert pipeline.context is context
    assert Pipeline(None).context == PipelineContext() and Pipeline().stages == []
    for composed in (pipeline | look, look | pipeline, pipeline | Pipeline(look)):
        seen.clear()
        await composed([1]).collect()
        assert all(c is not None and c.data == {"who": "me"} for c in seen)
        assert composed.context is not context and composed.context.data == {"who": "me"}
    with pytest.raises(Exception, match="mode"):
        look.with_context(execution_mode="sideways")


async def test_set_current_context_context_manager_and_with_context_share_one_variable() -> None:
    mine = PipelineContext(data={"k": 1})
    other = PipelineContext(data={"k": 2})
    assert get_current_context() is None
    with ContextManager(mine) as entered:
        assert entered is mine and get_current_context() is mine
        with ContextManager(other):
            assert get_current_context() is other
        assert get_current_context() is mine

    async def current() -> PipelineContext | None:
        await asyncio.sleep(0)
        return get_current_context()

    assert await with_context(other, current()) is other
    assert get_current_context() is None

    async def setter() -> Any:
        set_current_context(mine)
        return get_current_context()

    assert await asyncio.create_task(setter()) is mine
    assert get_current_context() is None  # set in another task: not here


async def test_a_task_sees_the_run_context_even_inside_a_context_manager() -> None:
    @single_task
    async def look(x: int) -> Any:
        return get_current_context()

    outer = PipelineContext(data={"outer": True})
    with ContextManager(outer):
        (inside,) = await look([1]).collect()
        assert get_current_context() is outer
    assert inside is not outer and inside.pipeline_id is not None
