"""Composition, data kinds, ordering, fan-out, filtering and events of a run."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, get_args

import pytest

from conveyor_core import (
    AsyncStream,
    EndEvent,
    InvalidRunError,
    Pipeline,
    PipelineDefinitionError,
    ResultEvent,
    StreamConsumedError,
    batch_task,
    single_task,
)

pytestmark = pytest.mark.looptime  # the virtual clock: times below are exact, and take no time


@single_task
async def double(x: int) -> int:
    return x * 2


@single_task
def plus_one(x: int) -> int:
    return x + 1


@batch_task(max_size=2)
async def total(xs: list[int]) -> int:
    return sum(xs)


async def test_composition_forms_agree() -> None:
    data = [1, 2, 3, 4]
    expected = [(1 * 2 + 1) + (2 * 2 + 1), (3 * 2 + 1) + (4 * 2 + 1)]
    forms = [
        double | plus_one | total,
        double | (plus_one | total),
        (double | plus_one) | total,
        Pipeline(double) | Pipeline(plus_one, total),
        Pipeline().add(double, plus_one).add(total),
    ]
    for pipeline in forms:
        assert await pipeline(data).collect() == expected


async def test_bar_builds_without_running() -> None:
    calls: list[int] = []

    @single_task
    async def record(x: int) -> int:
        calls.append(x)
        return x

    pipeline = record | record
    stream = pipeline([1, 2])
    assert isinstance(pipeline, Pipeline) and isinstance(stream, AsyncStream)
    await asyncio.sleep(0.01)
    assert calls == []
    assert await stream.collect() == [1, 2]


async def test_empty_pipeline_passes_items_through() -> None:
    assert await Pipeline()([3, 1, 2]).collect() == [3, 1, 2]


def test_composing_with_a_non_stage_is_a_clear_error() -> None:
    with pytest.raises(TypeError):
        double | 3  # type: ignore[operator]
    with pytest.raises(PipelineDefinitionError):
        Pipeline(double, "nope")  # type: ignore[arg-type]


async def test_data_kinds() -> None:
    async def agen() -> AsyncIterator[int]:
        for i in range(5):
            yield i

    def gen() -> Iterator[int]:
        yield from range(5)

    expected = [0, 2, 4, 6, 8]
    for data in ([0, 1, 2, 3, 4], range(5), gen(), agen(), iter((0, 1, 2, 3, 4))):
        assert await double(data).collect() == expected


async def test_bad_mode_and_bound_are_clear_errors() -> None:
    with pytest.raises(InvalidRunError):
        double([1], mode="sideways")
    with pytest.raises(InvalidRunError):
        total([1], max_in_flight=0)
    # a bound below the batch size: batches go early rather than wait forever
    assert await total([1, 2, 3], max_in_flight=1).collect() == [1, 2, 3]


async def test_endless_source_streams() -> None:
    async def endless() -> AsyncIterator[int]:
        for i in itertools.count():
            yield i
            await asyncio.sleep(0)

    got = []
    async for value in (double | plus_one)(endless()):
        got.append(value)
        if len(got) == 50:
            break
    assert got == [2 * i + 1 for i in range(50)]


async def test_ordered_mode_keeps_input_order_with_uneven_delays(looptime: Any) -> None:
    @single_task
    async def wait(delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    delays = [0.05, 0.01, 0.03, 0.0, 0.02]
    assert await wait(delays).collect() == delays
    assert looptime == 0.05  # the calls ran at once: the run takes its slowest call
    assert await wait.as_completed(delays).collect() == sorted(delays)
    assert looptime == 0.1


async def test_ordered_mode_yields_early_results_before_slow_later_ones() -> None:
    release = asyncio.Event()

    @single_task
    async def gate(x: int) -> int:
        if x == 3:
            await release.wait()
        return x

    seen: list[int] = []
    async for value in gate(range(5)):
        seen.append(value)
        if value == 2:
            assert seen == [0, 1, 2]  # arrived while item 3 is still blocked
            release.set()
    assert seen == [0, 1, 2, 3, 4]


async def test_none_is_filtered_and_tuples_dicts_strings_are_single_items() -> None:
    @single_task
    def shape(x: int) -> object:
        return [None, (x, x), {"x": x}, "ab", None][x]

    assert await shape(range(5)).collect() == [(1, 1), {"x": 2}, "ab"]


async def test_fan_out_keeps_order_across_kinds() -> None:
    @single_task
    def as_list(x: int) -> list[int]:
        return [x * 10 + i for i in range(3)]

    @single_task
    def as_gen(x: int) -> Iterator[int]:
        yield x
        yield -x

    @single_task
    async def as_agen(x: int) -> AsyncIterator[int]:
        for i in range(2):
            await asyncio.sleep(0.001 * (3 - x))
            yield x + i / 10

    @single_task
    async def slow_first(x: int) -> int:
        await asyncio.sleep(0.02 if x % 2 == 0 else 0)
        return x

    pipeline = as_agen | as_list | slow_first | as_gen
    values = await pipeline([1, 2]).collect()
    expected = []
    for x in (1, 2):
        for y in (x, x + 0.1):
            for z in (y * 10, y * 10 + 1, y * 10 + 2):
                expected += [z, -z]
    assert values == expected


async def test_events_report_sources_seq_and_stats() -> None:
    @single_task
    def evens_only(x: int) -> int | None:
        return x if x % 2 == 0 else None

    pipeline = evens_only | total
    events = [e async for e in pipeline.events(range(7))]
    assert [e.seq for e in events] == list(range(len(events)))
    results = [e for e in events if isinstance(e, ResultEvent)]
    assert [(r.value, r.sources) for r in results] == [(2, [0, 2]), (10, [4, 6])]
    end = events[-1]
    assert isinstance(end, EndEvent) and end.status == "succeeded"
    assert (end.stats.inputs, end.stats.results, end.stats.skipped) == (7, 2, 0)
    assert end.to_dict()["stats"]["elapsed_s"] >= 0


async def test_stream_runs_once() -> None:
    stream = double([1])
    assert await stream.collect() == [2]
    with pytest.raises(StreamConsumedError):
        await stream.collect()


async def test_a_task_serves_several_pipelines_and_concurrent_runs(looptime: Any) -> None:
    @single_task
    async def slow(x: int) -> int:
        await asyncio.sleep(0.01)
        return x

    one, two = slow | double, double | slow
    results = await asyncio.gather(*(p(range(20)).collect() for p in (one, two, one, slow)))
    assert results[0] == results[1] == results[2] == [2 * i for i in range(20)]
    assert results[3] == list(range(20))
    assert looptime == 0.01  # 80 calls of 10 ms in four runs, all at once


async def test_execution_mode_helpers(looptime: Any) -> None:
    @single_task
    async def wait(delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    data = [0.03, 0.0]
    assert await wait.with_execution_mode("as_completed")(data).collect() == [0.0, 0.03]
    assert await wait.with_execution_mode("ordered")(data).collect() == data
    assert await (wait | double).as_completed(data).collect() == [0.0, 0.06]
    assert looptime == 0.09


def test_pipeline_description_and_types() -> None:
    @single_task
    async def first(x: int) -> str:
        """Turn a number into text.

        More words.
        """
        return str(x)

    @batch_task(max_size=2)
    async def joined(xs: list[str]) -> list[str]:
        return xs

    pipeline = first | joined
    assert pipeline.description == "Turn a number into text."
    assert pipeline.with_description("mine").description == "mine"
    assert pipeline.input_type is int and pipeline.output_type is str
    assert joined.input_type is str
    assert [s.kind for s in pipeline.stages] == ["single", "batch"]


def test_annotated_types_keep_their_metadata() -> None:
    @single_task
    async def positive(x: Annotated[float, "ge=0"]) -> Annotated[float, "unit=s"]:
        return x

    assert get_args(positive.input_type) == (float, "ge=0")
    assert get_args(positive.output_type) == (float, "unit=s")
