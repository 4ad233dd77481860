"""Fan-out: which results become several values (the shape rules), and how they are spread
or streamed into the segment in order."""

from __future__ import annotations

import array
import asyncio
import collections
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any, NamedTuple

import pytest

from conveyor_core import batch_task, single_task
from conveyor_core._budget import Budget, Hold
from conveyor_core._channel import Channel
from conveyor_core._fanout import LIST, NONE, ONE, STREAM, shape, spread, stream
from conveyor_core._ordering import OrderedSequencer


def _gen() -> Iterator[int]:
    yield 1


async def _agen() -> AsyncIterator[int]:
    yield 1


class Point(NamedTuple):
    x: int
    y: int


class Fields:
    """Iterates over its fields as a pydantic model does: not a collection of items."""

    def __init__(self) -> None:
        self.a, self.b = 1, 2

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(vars(self).items())


class Docs(list[int]):
    pass


# what fans out in every task: a list (or a list subclass), a generator, an async generator
ALWAYS = {
    "list": [1, 2],
    "empty list": [],
    "list with None": [None, 1],
    "list subclass": Docs([1]),
    "generator": _gen(),
    "async generator": _agen(),
}
# what fans out from a batch task only: its other iterators and sized collections
BATCH_ONLY = {
    "map": map(str, [1]),
    "filter": filter(None, [1]),
    "set": {1, 2},
    "frozenset": frozenset({1}),
    "deque": collections.deque([1]),
    "range": range(3),
    "dict keys": {"a": 1}.keys(),
    "dict values": {"a": 1}.values(),
    "dict items": {"a": 1}.items(),
    "array": array.array("i", [1, 2]),
    "iterator": iter([1]),
}
# one value wherever it comes from
NEVER = {
    "int": 1,
    "str": "ab",
    "empty str": "",
    "bytes": b"ab",
    "bytearray": bytearray(b"ab"),
    "memoryview": memoryview(b"ab"),
    "tuple": (1, 2),
    "named tuple": Point(1, 2),
    "dict": {"a": 1},
    "mapping proxy": types.MappingProxyType({"a": 1}),
    "ordered dict": collections.OrderedDict(a=1),
    "fields object": Fields(),
    "object": object(),
}


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("name", sorted(ALWAYS))
def test_lists_and_generators_fan_out_from_any_task(name: str, batch: bool) -> None:
    result = ALWAYS[name]
    streamed = isinstance(result, (types.GeneratorType, types.AsyncGeneratorType))
    expected = STREAM if streamed else LIST
    assert shape(result, batch) == expected


@pytest.mark.parametrize("name", sorted(BATCH_ONLY))
def test_a_batch_tasks_iterators_and_collections_fan_out(name: str) -> None:
    assert shape(BATCH_ONLY[name], True) == STREAM
    assert shape(BATCH_ONLY[name], False) == ONE  # a single task's set is one value


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("name", sorted(NEVER))
def test_strings_tuples_mappings_and_objects_are_one_value(name: str, batch: bool) -> None:
    assert shape(NEVER[name], batch) == ONE


@pytest.mark.parametrize("batch", [False, True])
def test_none_is_no_value(batch: bool) -> None:
    assert shape(None, batch) == NONE


def test_a_pydantic_model_is_one_value() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Item(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        a: int = 1
        b: int = 2

    assert list(Item()) == [("a", 1), ("b", 2)]  # it iterates, yet it is one result
    assert shape(Item(), True) == ONE and shape(Item(), False) == ONE


# -- spread and stream, on a sequencer and a queue ------------------------------------------


class Queue:
    """A segment's workers, reduced to their queue."""

    def __init__(self) -> None:
        self.queue: collections.deque[Any] = collections.deque()
        self.waiting = 0  # pieces running that wait

    def put(self, work: Any) -> None:
        self.queue.append(work)


class Site:
    """A call site's concurrency state: its limit and the work parked behind it."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.parked: collections.deque[Any] = collections.deque()


class Segment:
    def __init__(self, stages: list[Site] | None = None) -> None:
        self.emitted: list[Any] = []
        self.closed = 0
        self.sequencer = OrderedSequencer(self._emit, self._close)
        self.workers = Queue()
        self.stages = stages or []
        self.later: list[Queue] = []  # the workers of the segments after it

    def _emit(self, value: Any, hold: Any, tag: Any) -> None:
        self.emitted.append(value)

    def _close(self) -> None:
        self.closed += 1


def test_spread_queues_the_rest_in_slots_right_after_the_first() -> None:
    budget = Budget(8)
    segment = Segment()
    sequencer = segment.sequencer
    before, slot, after = sequencer.new_slot(), sequencer.new_slot(), sequencer.new_slot()
    first, hold = spread(segment, 2, ["a", "b", "c"], budget.admit(1), slot, "tag", budget)
    assert first == "a" and isinstance(hold, Hold) and (hold.sources, hold.refs) == ([1], 3)
    queued = list(segment.workers.queue)
    assert [(index, value, tag) for index, value, _, _, tag in queued] == [
        (2, "b", "tag"),
        (2, "c", "tag"),
    ]
    assert all(work[2] is hold for work in queued)
    # resolved in any order, they leave in the order of the list, where the value would have
    for _, value, _, child, _ in reversed(queued):
        sequencer.resolve(child, value, hold, None)
    sequencer.resolve(after, "after", None, None)
    sequencer.resolve(slot, first, hold, None)
    assert segment.emitted == []  # `before` is not resolved yet
    sequencer.resolve(before, "before", None, None)
    assert segment.emitted == ["before", "a", "b", "c", "after"]


def test_spreading_one_item_keeps_the_holding() -> None:
    budget = Budget(8)
    segment = Segment()
    holding = budget.admit(0)
    first, hold = spread(segment, 1, ["only"], holding, segment.sequencer.new_slot(), None, budget)
    assert (first, hold) == ("only", holding) and not segment.workers.queue


async def test_stream_queues_values_in_order_and_gives_its_own_ref_back_at_the_end() -> None:
    budget = Budget(8)
    channel = Channel(budget)
    segment = Segment()
    sequencer = segment.sequencer
    slot = sequencer.new_slot()
    sequencer.close()

    async def values() -> AsyncIterator[str]:
        for value in "xyz":
            yield value

    await stream(segment, 3, values(), budget.admit(0), slot, None, budget, channel, 64)
    queued = list(segment.workers.queue)
    assert [(index, value) for index, value, *_ in queued] == [(3, "x"), (3, "y"), (3, "z")]
    hold = queued[0][2]
    assert hold.refs == 3 and budget.live == {0}  # the values hold 0, the stream let go
    assert queued[0][3] == slot  # the first value goes on in the value's own slot
    for _, value, _, child, _ in reversed(queued):
        sequencer.resolve(child, value, hold, None)
        budget.release(hold)
    assert segment.emitted == ["x", "y", "z"] and segment.closed == 1
    assert budget.live == set()


async def test_a_stream_that_yields_nothing_resolves_its_slot_empty() -> None:
    budget = Budget(8)
    segment = Segment()
    sequencer = segment.sequencer
    slot = sequencer.new_slot()
    sequencer.close()

    async def nothing() -> AsyncIterator[str]:
        return
        yield  # an async generator

    await stream(segment, 1, nothing(), budget.admit(0), slot, None, budget, Channel(budget), 8)
    assert segment.emitted == [] and segment.closed == 1 and budget.live == set()


async def test_stream_waits_while_the_queue_is_a_bound_behind() -> None:
    budget = Budget(8)
    channel = Channel(budget)
    segment = Segment()
    produced = 0

    async def endless() -> AsyncIterator[int]:
        nonlocal produced
        while True:
            produced += 1
            yield produced

    slot = segment.sequencer.new_slot()
    args = (segment, 1, endless(), budget.admit(0), slot, None, budget, channel, 2)
    streaming = asyncio.create_task(stream(*args))
    for _ in range(5):
        await asyncio.sleep(0)
    assert produced == 2 and len(segment.workers.queue) == 2 and channel.drained
    segment.workers.queue.popleft()  # a worker takes one: the queue is below the bound
    channel.drained.fire()
    for _ in range(5):
        await asyncio.sleep(0)
    assert produced == 3 and len(segment.workers.queue) == 2
    streaming.cancel()
    with pytest.raises(asyncio.CancelledError):
        await streaming


async def test_stream_counts_work_parked_behind_a_later_stages_limit_as_queued() -> None:
    budget = Budget(8)
    channel = Channel(budget)
    generator, limited = Site(1), Site(1)
    generator.parked.extend(range(5))  # other items waiting for the generator stage itself
    segment = Segment([generator, limited])
    produced = 0

    async def endless() -> AsyncIterator[int]:
        nonlocal produced
        while True:
            produced += 1
            yield produced

    slot = segment.sequencer.new_slot()
    args = (segment, 1, endless(), budget.admit(0), slot, None, budget, channel, 3)
    streaming = asyncio.create_task(stream(*args))
    for _ in range(5):
        await asyncio.sleep(0)
    assert produced == 3  # the work parked before its own stage does not hold it back
    limited.parked.extend(segment.workers.queue)  # a worker parked them behind the limit
    segment.workers.queue.clear()
    channel.drained.fire()
    for _ in range(5):
        await asyncio.sleep(0)
    assert produced == 3 and not streaming.done()  # parked is queued in all but name
    limited.parked.popleft()
    channel.drained.fire()
    for _ in range(5):
        await asyncio.sleep(0)
    assert produced == 4
    streaming.cancel()
    with pytest.raises(asyncio.CancelledError):
        await streaming


async def test_stream_counts_the_later_segments_work_not_a_partial_batch() -> None:
    budget = Budget(8)
    channel = Channel(budget)
    segment = Segment()
    batch_segment = Queue()  # a batch stage's segment after it
    segment.later = [batch_segment]
    produced = 0

    async def endless() -> AsyncIterator[int]:
        nonlocal produced
        while True:
            produced += 1
            yield produced

    slot = segment.sequencer.new_slot()
    args = (segment, 0, endless(), budget.admit(0), slot, None, budget, channel, 3)
    streaming = asyncio.create_task(stream(*args))
    segment.workers.queue.clear()  # as if the values went into a batcher at once
    batch_segment.queue.extend(["batch 1", "batch 2"])
    batch_segment.waiting = 1  # one batch call running
    for _ in range(5):
        await asyncio.sleep(0)
    assert produced == 1 and not streaming.done()  # 2 queued + 1 running: a bound behind
    batch_segment.queue.popleft()
    channel.drained.fire()
    for _ in range(5):
        await asyncio.sleep(0)
    assert produced == 3  # room again: on until its own queue (values 1-3) is a bound behind
    streaming.cancel()
    with pytest.raises(asyncio.CancelledError):
        await streaming


async def test_stream_waits_while_the_consumer_is_a_bound_behind() -> None:
    budget = Budget(8)
    channel = Channel(budget)
    for index in range(3):
        channel.result(index, budget.hold([100 + index]))  # three results not taken yet
    segment = Segment()

    async def two() -> AsyncIterator[int]:
        for value in range(2):
            yield value

    slot = segment.sequencer.new_slot()
    args = (segment, 1, two(), budget.admit(0), slot, None, budget, channel, 3)
    streaming = asyncio.create_task(stream(*args))
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(segment.workers.queue) == 1 and not streaming.done()  # the queue has room
    events = channel.events(lambda: None, _nothing)
    await anext(events)  # the consumer takes one: drained fires
    await asyncio.wait_for(streaming, 1)
    assert len(segment.workers.queue) == 2
    await events.aclose()


async def _nothing() -> None:
    return None


# -- the same rules seen through the smallest runs ----------------------------------------


@pytest.mark.looptime  # the deadline is virtual: a stall fails at once
@pytest.mark.parametrize("last", ["limited", "filter"])
async def test_a_generator_does_not_outrun_a_concurrency_limited_stage(last: str) -> None:
    """The work a limited stage parks is that segment's backlog: the generator waits for it as
    for the queue, whether the results reach the consumer or are filtered out."""
    produced = done = 0

    @single_task
    async def explode(x: int) -> AsyncIterator[int]:
        nonlocal produced
        for i in range(10_000):
            produced += 1
            yield i

    @single_task(concurrency_limit=1)
    async def limited(x: int) -> int:
        nonlocal done
        assert produced <= done + 2 * 8 + 2
        await asyncio.sleep(0)
        done += 1
        return x

    @single_task
    def nothing(x: int) -> None:
        return None

    pipeline = explode | limited if last == "limited" else explode | limited | nothing
    consumed = 0

    async def consume() -> None:
        nonlocal consumed
        async for _ in pipeline([0], max_in_flight=8):
            consumed += 1
            assert produced <= consumed + 2 * 8 + 2
            if consumed == 200:
                break

    await asyncio.wait_for(consume(), 30)
    if last == "filter":
        assert done == produced == 10_000  # it ran to the end, never stalled


@pytest.mark.looptime
async def test_a_generator_does_not_outrun_a_batch_stage_after_it() -> None:
    running = peak = 0

    @single_task
    async def explode(x: int) -> AsyncIterator[int]:
        for i in range(2_000):
            yield i

    @batch_task(max_size=2)
    async def slow(xs: list[int]) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        return sum(xs)

    async for _ in (explode | slow)([0], max_in_flight=8):
        break
    assert peak <= 2 * 8


async def test_none_inside_a_list_is_an_item_and_a_top_level_none_filters() -> None:
    @single_task
    def shape_of(x: int) -> Any:
        return None if x == 0 else [None, x]

    assert await shape_of([0, 1, 2]).collect() == [None, 1, None, 2]


async def test_a_single_tasks_set_is_one_value_and_a_batch_tasks_set_fans_out() -> None:
    @single_task
    def as_set(x: int) -> frozenset[int]:
        return frozenset({x})

    @batch_task(max_size=2)
    def batch_set(xs: list[int]) -> set[int]:
        return set(xs)

    assert await as_set([1, 2]).collect() == [frozenset({1}), frozenset({2})]
    assert sorted(await batch_set([1, 2, 3]).collect()) == [1, 2, 3]


async def test_a_batch_tasks_dict_and_tuple_are_one_value_each() -> None:
    @batch_task(max_size=2)
    def as_dict(xs: list[int]) -> dict[int, int]:
        return {x: x for x in xs}

    @batch_task(max_size=2)
    def as_tuple(xs: list[int]) -> tuple[int, ...]:
        return tuple(xs)

    assert await as_dict([1, 2, 3]).collect() == [{1: 1, 2: 2}, {3: 3}]
    assert await as_tuple([1, 2, 3]).collect() == [(1, 2), (3,)]


async def test_an_error_while_a_result_streams_is_the_tasks_own() -> None:
    """The same rules as for a generator function: skipped with on_error, or the run fails in
    the task's stage."""

    def parse(x: int) -> int:
        if x == 2:
            raise ValueError("bad 2")
        return x * 10

    @batch_task(max_size=2, on_error="skip_batch")
    def lazy_batch(xs: list[int]) -> Any:
        return map(parse, xs)

    @single_task
    def lazy(x: int) -> Any:
        return (parse(v) for v in (x,))

    events = [e async for e in lazy_batch.events([1, 2, 3, 4])]
    assert [e.value for e in events if e.type == "result"] == [10, 30, 40]  # 10 came first
    (skipped,) = [e for e in events if e.type == "item_error"]
    assert (skipped.stage, skipped.sources, skipped.action) == ("lazy_batch", [0, 1], "skip_batch")
    assert events[-1].status == "succeeded"
    events = [e async for e in lazy.events([1, 2, 3])]
    error = events[-2]
    assert (error.type, error.stage, error.error) == ("error", "lazy", "ValueError: bad 2")
