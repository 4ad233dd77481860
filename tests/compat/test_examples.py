"""What the example programs of conveyor-streaming 1.2.1 rely on, each in miniature.

`scripts/compare_examples.py` runs the programs themselves under both libraries; these tests
keep their behaviours without needing the programs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from conveyor import (
    AsyncStream,
    ErrorHandler,
    PipelineContext,
    batch_task,
    get_current_context,
    single_task,
)


@single_task
async def multiply_by_two(x: int) -> int:
    await asyncio.sleep(0.001)
    return x * 2


@single_task
async def add_ten(x: int) -> int:
    return x + 10


async def test_quick_start_and_min_batch_size() -> None:
    @batch_task(max_size=3)
    async def sum_batch(batch: list[int]) -> int:
        return sum(batch)

    @batch_task(min_size=2, max_size=3)
    async def sum_at_least_two(batch: list[int]) -> int:
        return sum(batch)

    data = [1, 2, 3, 4, 5, 6, 7]
    assert [x async for x in (multiply_by_two | sum_batch | add_ten)(data)] == [22, 40, 24]
    assert await (multiply_by_two | sum_at_least_two | add_ten)(data).collect() == [22, 40]


async def test_side_inputs_example() -> None:
    @single_task
    async def add_value_from_side_input(item: int, value_to_add: int) -> int:
        return item + value_to_add

    async def get_dynamic_value() -> int:
        await asyncio.sleep(0.001)
        return 100

    async def generate_stream_value() -> AsyncIterator[int]:
        yield 50

    results = []
    for side in (10, get_dynamic_value(), AsyncStream(generate_stream_value())):
        task = add_value_from_side_input.with_inputs(value_to_add=side)
        results.append(await (multiply_by_two | task | multiply_by_two)([1, 2]).collect())
    assert results == [[24, 28], [204, 208], [104, 108]]


async def test_error_handling_example() -> None:
    @batch_task(max_size=3, on_error="skip_batch")
    async def sensitive_batch_task(batch: list[int]) -> int:
        if any(x < 0 for x in batch):
            raise ValueError("Negative numbers not allowed in batch")
        return sum(batch)

    class BusinessErrorHandler(ErrorHandler):
        async def handle_error(
            self, error: Exception, item: Any, task_name: str, attempt: int
        ) -> tuple[bool, Any]:
            if isinstance(error, ValueError) and "business rule" in str(error):
                return True, -1
            return False, None

    @single_task(error_handler=BusinessErrorHandler())
    async def business_task(x: int) -> int:
        if x % 7 == 0:
            raise ValueError("business rule: multiples of 7 not allowed")
        return x * 5

    data = [1, 2, -1, 3, 4, 5, 6, 7, 8]
    assert await (multiply_by_two | sensitive_batch_task)(data).collect() == [24, 42]
    assert await business_task([1, 2, 7, 14, 21]).collect() == [5, 10, -1, -1, -1]


SAMPLE = [("slow", 0.03), ("fast", 0.0), ("middle", 0.015)]


@single_task
async def process_with_delay(item: tuple[str, float]) -> dict[str, Any]:
    text, delay = item
    await asyncio.sleep(delay)
    return {"text": text}


@single_task
async def add_metadata(result: dict[str, Any]) -> dict[str, Any]:
    context = get_current_context()
    assert context is not None and context.pipeline_id is not None
    context.data["processed_count"] = context.data.get("processed_count", 0) + 1
    result["info"] = (
        context.pipeline_id[:8],
        context.execution_mode,
        context.data["processed_count"],
        context.data.get("custom_tag"),
    )
    return result


def texts(results: list[dict[str, Any]]) -> list[str]:
    return [r["text"] for r in results]


async def test_as_completed_example() -> None:
    pipeline = process_with_delay | add_metadata
    ordered = await pipeline(SAMPLE).collect()
    assert texts(ordered) == ["slow", "fast", "middle"]
    assert {r["info"][1] for r in ordered} == {"ordered"}
    assert len({r["info"][0] for r in ordered}) == 1  # one run, one pipeline id
    completed = [r async for r in pipeline.as_completed(SAMPLE)]
    assert texts(completed) == ["fast", "middle", "slow"]
    assert [r["info"][1:3] for r in completed] == [("as_completed", n) for n in (1, 2, 3)]
    assert completed[0]["info"][0] != ordered[0]["info"][0]
    stream = pipeline.with_execution_mode("as_completed")(SAMPLE)
    assert texts([r async for r in stream.as_completed()]) == ["fast", "middle", "slow"]
    custom = PipelineContext(execution_mode="as_completed", data={"custom_tag": "test"})
    tagged = await pipeline.with_context(**custom.__dict__)(SAMPLE).collect()
    assert [r["info"][1:] for r in tagged] == [("as_completed", n, "test") for n in (1, 2, 3)]


async def test_batch_item_generating_example() -> None:
    @single_task
    async def generate_batches_with_delay() -> AsyncIterator[dict[str, int]]:
        for batch in range(3):
            await asyncio.sleep(0.005)
            for index in range(5):
                yield {"id": batch * 10 + index}

    @batch_task(max_size=3, min_size=1)
    async def process_batch(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = [item["id"] for item in items]
        for item in items:
            item["processed_with"] = ids
        return items

    results = [r async for r in (generate_batches_with_delay | process_batch)()]
    assert [r["id"] for r in results] == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 20, 21, 22, 23, 24]
    batches = {tuple(r["processed_with"]) for r in results}
    assert batches == {(0, 1, 2), (3, 4, 10), (11, 12, 13), (14, 20, 21), (22, 23, 24)}


async def test_split_and_process_example() -> None:
    text = "Short line.\nA much longer line here.\nTiny."

    @single_task
    async def split_by_lines(text: str) -> list[str]:
        return text.strip().split("\n")

    @single_task
    async def split_by_lines_iter(text: str) -> AsyncIterator[str]:
        for line in text.strip().split("\n"):
            yield line.strip()

    @single_task
    async def process_line(line: str) -> dict[str, Any]:
        await asyncio.sleep(len(line) * 0.0005)
        return {"line": line, "length": len(line)}

    lines = text.split("\n")
    for split in (split_by_lines, split_by_lines_iter):
        streamed = [r["line"] async for r in (split | process_line)(text)]
        assert streamed == lines  # one str is one item; its lines come back in order
    assert [r["line"] for r in await (split_by_lines | process_line)(text).collect()] == lines


async def test_streaming_performance_example() -> None:
    release = asyncio.Event()

    @single_task
    async def process_task(item: tuple[str, float]) -> str:
        name, _ = item
        if name == "outlier":
            await release.wait()
        return name

    tasks = [("a", 0.0), ("b", 0.0), ("outlier", 0.0), ("c", 0.0)]
    seen = []
    async for name in process_task(tasks):
        seen.append(name)
        if name == "b":
            assert seen == ["a", "b"]  # early results, before the outlier ends
            release.set()
    assert seen == ["a", "b", "outlier", "c"]
