"""The call path: a value carried through a segment's stages (call, await, recover), with
concurrency limits, generators, batches and the timing of traced calls.

A segment is built here by hand, as `Run._prepare` builds it: call sites, a sequencer whose
emit stands for the consumer (it gives each value's holding back at once), and workers whose
carry is `Calls.carry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from conveyor_core import batch_task, single_task
from conveyor_core._budget import Budget, Holding, sources_of
from conveyor_core._calls import FATAL, Calls, CallSite
from conveyor_core._channel import Channel
from conveyor_core._events import StageEvent
from conveyor_core._ordering import ImmediateSequencer, OrderedSequencer
from conveyor_core._run import Segment
from conveyor_core._tasks import Task
from conveyor_core._trace import Tracer
from conveyor_core._workers import FAIRNESS_STREAK, Workers

from .conftest import VirtualSleep

var: contextvars.ContextVar[str] = contextvars.ContextVar("calls_var", default="unset")


class Reporter:
    def __init__(self) -> None:
        self.errors: list[tuple[str, list[int], str, str]] = []
        self.failures: list[tuple[str | None, BaseException]] = []

    def item_error(self, stage: str, sources: list[int], exc: BaseException, action: str) -> None:
        self.errors.append((stage, sources, str(exc), action))

    def fail(self, stage: str | None, exc: BaseException) -> None:
        self.failures.append((stage, exc))


class Harness:
    """One segment of the given tasks; `run(values)` feeds it and returns what it emitted."""

    def __init__(
        self, *tasks: Task[Any, Any], mode: str = "ordered", limit: int = 64, traced: bool = False
    ) -> None:
        self.budget = Budget(limit)
        self.channel = Channel(self.budget)
        self.reporter = Reporter()
        self.stage_events: list[StageEvent] = []
        self.tracer = None
        self.clock = 0.0
        if traced:
            self.tracer = Tracer(self._tick, 0.0, self.stage_events.append, None)
        self.base = contextvars.copy_context()
        self.calls = Calls(self.budget, self.channel, self.reporter, self.tracer, self.base)
        head = tasks[0] if tasks and tasks[0].kind == "batch" else None
        self.segment = segment = Segment(head)
        segment.stages = [CallSite(task, task.make_call((), {}), traced) for task in tasks]
        self.inputs = 0
        self.emitted: list[Any] = []
        self.sources: list[list[int]] = []
        self.tags: list[Any] = []
        self.closed = 0
        sequencer = OrderedSequencer if mode == "ordered" else ImmediateSequencer
        segment.sequencer = sequencer(self._emit, self._close)
        self.tasks: list[asyncio.Task[None]] = []
        segment.workers = Workers(segment, self._spawn, self.calls.carry, self.base, lambda: None)

    @property
    def sites(self) -> list[CallSite]:
        return self.segment.stages

    def _tick(self) -> float:
        self.clock += 1.0
        return self.clock

    def _emit(self, value: Any, hold: Holding, tag: Any) -> None:
        self.emitted.append(value)
        self.sources.append(list(sources_of(hold)))
        self.tags.append(tag)
        self.budget.release(hold)  # delivered

    def _close(self) -> None:
        self.closed += 1

    def _spawn(self, work: Any, context: Any) -> None:
        self.tasks.append(asyncio.create_task(work(), context=context))

    def feed(self, values: list[Any], tag: Any = None) -> None:
        """Each value admitted at the next input position, as the feeder does."""
        for value in values:
            hold = self.budget.admit(self.inputs)
            self.inputs += 1
            self.segment.workers.put((0, value, hold, self.segment.sequencer.new_slot(), tag))

    def feed_batches(self, batches: list[list[Any]]) -> None:
        """Each batch's members admitted, merged into the batch's holding, as a batcher does."""
        for batch in batches:
            members = []
            for value in batch:
                members.append((value, self.budget.admit(self.inputs), None))
                self.inputs += 1
            hold = self.budget.merge([member[1] for member in members])
            self.segment.workers.put((0, members, hold, self.segment.sequencer.new_slot(), None))

    async def finish(self) -> list[Any]:
        self.segment.workers.close()
        self.segment.sequencer.close()
        while not all(task.done() for task in self.tasks):
            await asyncio.wait_for(asyncio.gather(*self.tasks), 5)
        return self.emitted

    async def run(self, values: list[Any]) -> list[Any]:
        self.feed(values)
        return await self.finish()

    async def run_batches(self, batches: list[list[Any]]) -> list[Any]:
        self.feed_batches(batches)
        return await self.finish()


async def test_a_value_goes_through_sync_and_async_stages_in_one_carry() -> None:
    @single_task
    def inc(x: int) -> int:
        return x + 1

    @single_task
    async def double(x: int) -> int:
        return x * 2

    harness = Harness(inc, double)
    assert all(site.plain for site in harness.sites)
    assert await harness.run([1, 2, 3]) == [4, 6, 8]
    assert len(harness.tasks) == 1  # nothing waited: one worker carried everything
    assert harness.closed == 1 and harness.budget.live == set()


async def test_none_filters_the_value_and_gives_its_position_back() -> None:
    seen: list[int] = []

    @single_task
    def evens(x: int) -> int | None:
        return x if x % 2 == 0 else None

    @single_task
    def record(x: int) -> int:
        seen.append(x)
        return x

    harness = Harness(evens, record)
    assert await harness.run(list(range(6))) == [0, 2, 4]
    assert seen == [0, 2, 4]  # the next stage never saw the filtered values
    assert harness.budget.live == set()


@pytest.mark.parametrize("mode", ["ordered", "as_completed"])
async def test_a_list_fans_out_and_keeps_order_through_later_stages(mode: str) -> None:
    @single_task
    def split(x: int) -> list[int]:
        return [x * 10, x * 10 + 1, x * 10 + 2]

    @single_task
    async def uneven(x: int) -> int:
        for _ in range((x * 7) % 4):
            await asyncio.sleep(0)
        return x

    harness = Harness(split, uneven, mode=mode)
    out = await harness.run([1, 2])
    expected = [10, 11, 12, 20, 21, 22]
    assert out == expected if mode == "ordered" else sorted(out) == expected
    assert harness.budget.live == set() and harness.budget.shared == {}


async def test_an_empty_list_filters_the_value() -> None:
    @single_task
    def nothing(x: int) -> list[int]:
        return []

    harness = Harness(nothing)
    assert await harness.run([1, 2]) == []
    assert harness.budget.live == set() and harness.closed == 1


def gen_split(x: int) -> Iterator[int]:
    yield x
    yield -x


async def agen_split(x: int) -> AsyncIterator[int]:
    for value in (x, -x):
        await asyncio.sleep(0)
        yield value


def returns_a_generator(x: int) -> Any:
    return (value for value in (x, -x))  # not a generator function: its result streams


@pytest.mark.parametrize("func", [gen_split, agen_split, returns_a_generator])
async def test_generators_stream_their_values_in_order(func: Any) -> None:
    @single_task
    def inc(x: int) -> int:
        return x + 1

    harness = Harness(single_task(func), inc)
    assert await harness.run([1, 2, 3]) == [2, 0, 3, -1, 4, -2]
    assert harness.budget.live == set() and harness.closed == 1


async def test_a_generator_that_yields_nothing_filters_its_value() -> None:
    @single_task
    def nothing(x: int) -> Iterator[int]:
        yield from ()

    harness = Harness(nothing)
    assert await harness.run([1, 2]) == []
    assert harness.budget.live == set() and harness.closed == 1


async def test_a_concurrency_limit_parks_work_and_queues_it_when_a_call_ends() -> None:
    gate = asyncio.Event()
    running = peak = 0

    @single_task(concurrency_limit=2)
    async def limited(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1
        return x

    harness = Harness(limited)
    site = harness.sites[0]
    assert not site.plain and site.limit == 2
    harness.feed(list(range(5)))
    for _ in range(5):
        await asyncio.sleep(0)
    assert site.active == 2 and [piece[1] for piece in site.parked] == [2, 3, 4]
    gate.set()
    assert await harness.finish() == [0, 1, 2, 3, 4]
    assert peak == 2 and site.active == 0 and not site.parked


async def test_skip_item_reports_the_item_and_filters_it(retry_clock: VirtualSleep) -> None:
    @single_task(on_error="skip_item", retry_attempts=2, retry_delay=0.5)
    def no_threes(x: int) -> int:
        if x == 3:
            raise ValueError(f"three {x}")
        return x

    harness = Harness(no_threes)
    assert await harness.run([1, 3, 5]) == [1, 5]
    assert harness.reporter.errors == [("no_threes", [1], "three 3", "skip_item")]
    assert retry_clock.delays == [0.5]  # retried once before it was skipped
    assert harness.budget.live == set()


async def test_a_retry_that_succeeds_goes_on_with_its_value(retry_clock: VirtualSleep) -> None:
    attempts = 0

    @single_task(retry_attempts=3, retry_delay=0.1)
    async def flaky(x: int) -> int:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("again")
        return x * 2

    harness = Harness(flaky)
    assert await harness.run([21]) == [42]
    assert retry_clock.delays == [0.1, 0.2] and harness.reporter.errors == []


async def test_fail_reports_the_stage_and_raises_the_tasks_own_error() -> None:
    problem = KeyError("k")

    @single_task
    def broken(x: int) -> int:
        raise problem

    harness = Harness(broken)
    harness.feed([1])
    with pytest.raises(KeyError) as raised:
        await harness.finish()
    assert raised.value is problem
    assert harness.reporter.failures == [("broken", problem)]


@pytest.mark.parametrize("fatal", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("kind", ["plain", "limited", "batch"])
async def test_a_fatal_error_is_reported_as_the_runs_failure(fatal: type, kind: str) -> None:
    def boom(x: Any) -> int:
        raise fatal()

    task: Task[Any, Any]
    if kind == "plain":
        task = single_task(task_name="stage")(boom)
    elif kind == "limited":
        task = single_task(task_name="stage", concurrency_limit=1)(boom)
    else:
        task = batch_task(max_size=2, task_name="stage")(boom)
    harness = Harness(task)
    budget = harness.budget
    value: Any = 1 if kind != "batch" else [(1, budget.admit(1), None)]
    slot = harness.segment.sequencer.new_slot()
    context = harness.base.copy()
    with pytest.raises(fatal):
        await harness.calls.carry(harness.segment, context, 0, value, budget.admit(0), slot, None)
    assert [(stage, type(exc)) for stage, exc in harness.reporter.failures] == [("stage", fatal)]
    assert fatal in FATAL


async def test_a_batch_gets_its_members_values_and_its_result_fans_out() -> None:
    batches: list[list[int]] = []

    @batch_task(max_size=3)
    def pairs(xs: list[int]) -> list[int]:
        batches.append(xs)
        return [x * 2 for x in xs]

    harness = Harness(pairs)
    assert harness.sites[0].plain_batch
    assert await harness.run_batches([[1, 2, 3], [4]]) == [2, 4, 6, 8]
    assert batches == [[1, 2, 3], [4]]
    assert harness.sources == [[0, 1, 2]] * 3 + [[3]]  # each value stands for its batch
    assert harness.budget.live == set()


async def test_a_batch_result_that_is_a_set_or_range_fans_out_too() -> None:
    @batch_task(max_size=2)
    def spread(xs: list[int]) -> Any:
        return range(xs[0], xs[0] + 2) if xs[0] < 10 else {xs[0]}

    harness = Harness(spread)
    assert await harness.run_batches([[1, 2], [10, 11]]) == [1, 2, 10]
    assert harness.budget.live == set()


async def test_skip_item_in_a_batch_gives_the_result_the_survivors_positions() -> None:
    @batch_task(max_size=3, on_error="skip_item")
    def total(xs: list[int]) -> int:
        if 2 in xs:
            raise ValueError("no twos")
        return sum(xs)

    harness = Harness(total)
    assert await harness.run_batches([[1, 2, 3]]) == [4]
    assert harness.sources == [[0, 2]]  # the result stands for the members that were kept
    assert harness.reporter.errors == [("total", [1], "no twos", "skip_item")]
    assert harness.budget.live == set() and harness.budget.shared == {}


async def test_a_batch_whose_members_all_fail_is_filtered() -> None:
    @batch_task(max_size=2, on_error="skip_item")
    def broken(xs: list[int]) -> int:
        raise ValueError("never")

    harness = Harness(broken)
    assert await harness.run_batches([[1, 2]]) == []
    assert [error[1] for error in harness.reporter.errors] == [[0], [1]]
    assert harness.budget.live == set()


async def test_traced_calls_are_timed_and_linked_to_the_calls_before() -> None:
    @single_task
    def inc(x: int) -> int:
        return x + 1

    @single_task
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    harness = Harness(inc, double, traced=True)
    assert not any(site.plain for site in harness.sites)  # traced: every call goes through call()
    assert harness.tracer is not None
    harness.feed([1], tag=harness.tracer.tag())
    assert await harness.finish() == [4]
    first, second = harness.stage_events
    assert (first.stage, first.outcome, first.inputs) == ("inc", "ok", ())
    assert (second.stage, second.outcome, second.inputs) == ("double", "ok", (first.call,))
    assert first.started_s < first.ended_s <= second.started_s < second.ended_s
    assert second.queued_s == first.ended_s  # its input was ready when inc ended
    (tag,) = harness.tags
    assert tag.calls == (second.call,)


async def test_a_traced_retry_reports_each_attempt(retry_clock: VirtualSleep) -> None:
    attempts = 0

    @single_task(retry_attempts=2, retry_delay=0.1)
    def flaky(x: int) -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("again")
        return x

    harness = Harness(flaky, traced=True)
    assert await harness.run([7]) == [7]
    assert [(e.attempt, e.outcome, e.error) for e in harness.stage_events] == [
        (1, "retry", "ConnectionError: again"),
        (2, "ok", None),
    ]


async def test_a_carry_takes_the_next_pieces_of_the_queue_until_its_streak_ends() -> None:
    @single_task
    def same(x: int) -> int:
        return x

    harness = Harness(same)
    workers = harness.segment.workers
    sequencer = harness.segment.sequencer
    budget = harness.budget
    count = FAIRNESS_STREAK + 10
    workers.queue.extend((0, i, budget.admit(i), sequencer.new_slot(), None) for i in range(count))
    first = workers.queue.popleft()
    streak = await harness.calls.carry(harness.segment, harness.base.copy(), *first)
    assert streak is True  # a whole streak: the worker lets others run before going on
    assert harness.emitted == list(range(FAIRNESS_STREAK)) and len(workers.queue) == 10
    rest = workers.queue.popleft()
    short = await harness.calls.carry(harness.segment, harness.base.copy(), *rest)
    assert short is False and harness.emitted == list(range(count)) and not workers.queue


async def test_a_carry_ends_when_a_call_changed_the_context() -> None:
    @single_task
    def sets(x: int) -> int:
        if x == 1:
            var.set("changed")  # the next piece must start from the run's context
        return x

    harness = Harness(sets)
    workers = harness.segment.workers
    sequencer = harness.segment.sequencer
    budget = harness.budget
    workers.queue.extend((0, i, budget.admit(i), sequencer.new_slot(), None) for i in range(4))
    context = harness.base.copy()
    first = workers.queue.popleft()
    carry = harness.calls.carry(harness.segment, context, *first)
    done = await asyncio.create_task(carry, context=context)
    assert done is False and harness.emitted == [0, 1] and len(workers.queue) == 2


def _parse(x: int) -> int:
    if x == 2:
        raise ValueError(f"bad {x}")
    return x * 10


async def test_an_error_while_a_batch_result_streams_goes_through_the_policy() -> None:
    """A batch task's `map` is iterated after the call returned: its error is still the
    task's, and on_error decides."""

    @batch_task(max_size=2, on_error="skip_batch")
    def lazy(xs: list[int]) -> Any:
        return map(_parse, xs)

    harness = Harness(lazy)
    assert await harness.run_batches([[1, 2], [3, 4]]) == [10, 30, 40]
    assert harness.reporter.errors == [("lazy", [0, 1], "bad 2", "skip_batch")]
    assert harness.reporter.failures == []
    assert harness.budget.live == set()


async def test_an_error_while_a_returned_generator_streams_fails_the_run_in_its_stage() -> None:
    @single_task
    def lazy(x: int) -> Any:
        return (_parse(v) for v in (x, x))

    harness = Harness(lazy)
    harness.feed([1, 2])
    with pytest.raises(ValueError, match="bad 2"):
        await harness.finish()
    assert [(stage, str(exc)) for stage, exc in harness.reporter.failures] == [("lazy", "bad 2")]


async def test_a_result_that_fails_before_its_first_value_is_called_again(
    retry_clock: VirtualSleep,
) -> None:
    calls = 0

    @single_task(retry_attempts=2, retry_delay=0.5)
    async def lazy(x: int) -> Any:
        nonlocal calls
        calls += 1
        return (_parse(v) for v in ((2,) if calls == 1 else (x,)))

    harness = Harness(lazy)
    assert await harness.run([1]) == [10]
    assert calls == 2 and retry_clock.delays == [0.5]


async def test_a_streak_of_slow_calls_lets_others_run_after_fairness_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A streak ends after FAIRNESS_STREAK pieces, or sooner once it held the loop FAIRNESS_S
    (looked at every FAIRNESS_CHECK pieces): slow synchronous calls do not starve other tasks."""
    from conveyor_core import _calls, _workers

    now = 0.0
    monkeypatch.setattr(_calls, "time", types.SimpleNamespace(perf_counter=lambda: now))
    per_call = 0.0
    run_lengths: list[int] = []
    since_tick = 0

    @single_task
    def work(x: int) -> int:
        nonlocal now, since_tick
        now += per_call  # the fake clock: each call takes `per_call` seconds
        since_tick += 1
        return x

    async def ticker() -> None:
        nonlocal since_tick
        while True:
            await asyncio.sleep(0)
            if since_tick:
                run_lengths.append(since_tick)
                since_tick = 0

    ticking = asyncio.create_task(ticker())
    try:
        cases = ((0.0, _workers.FAIRNESS_STREAK), (0.0001, _workers.FAIRNESS_CHECK))
        for per_call, longest in cases:
            run_lengths.clear()
            assert await work(range(2_000)).collect() == list(range(2_000))
            assert max(run_lengths) == longest, per_call
    finally:
        ticking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticking
