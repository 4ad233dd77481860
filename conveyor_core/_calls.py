"""The call path: a value carried through a segment's stages, one call after another.

`Calls.carry` is what a worker runs for a piece of work: it calls stage after stage,
awaits what must be awaited, hands failures to the error policy (`_policy`), spreads or streams
fan-outs (`_fanout`), and resolves the value's slot (`_ordering`) at the end of the segment. The
plain case (no concurrency limit, no timing, one value in and one out) is inlined; everything
else goes through `Calls.call`: concurrency limits (work over the limit is parked and queued
again when a call of the stage ends), batches, generators, and the timing of traced runs.
"""

from __future__ import annotations

import inspect
import time
from collections import deque
from collections.abc import Callable
from contextvars import Context
from typing import TYPE_CHECKING, Any

from ._batching import values_of
from ._budget import Budget, Holding, sources_of
from ._channel import Channel
from ._fanout import LIST, STREAM, each, shape, spread, stream
from ._policy import SKIPPED, Reporter, StagePolicy
from ._tasks import BatchTask, Task
from ._trace import Tracer
from ._workers import FAIRNESS_CHECK, FAIRNESS_S, FAIRNESS_STREAK

if TYPE_CHECKING:
    from ._run import Segment

__all__ = ["FATAL", "TAKEN", "CallSite", "Calls"]

# raised by a task, these would stop the event loop itself: they fail the run instead
FATAL = (SystemExit, KeyboardInterrupt)
TAKEN: Any = object()  # a call's value went on elsewhere (parked, or streamed by a generator)
_ONE_VALUE = frozenset((int, float, str, bool, bytes, dict, tuple))  # results that never fan out


class CallSite:
    """A task as one run calls it: its resolved call, its policy and its concurrency state."""

    __slots__ = (
        "name",
        "kind",
        "call",
        "policy",
        "limit",
        "active",
        "parked",
        "is_batch",
        "is_gen",
        "is_coroutine",
        "plain",
        "plain_batch",
    )

    def __init__(self, task: Task, call: Callable[[Any], Any], timed: bool) -> None:
        self.name = task.name
        self.kind = task.kind
        self.call = call
        self.policy: StagePolicy = task.policy
        self.limit: int | None = task.effective_concurrency_limit
        self.active = 0
        self.parked: deque[Any] = deque()
        self.is_batch = isinstance(task, BatchTask)
        self.is_gen = task.is_gen or task.is_async_gen
        self.is_coroutine = task.is_coroutine or task.run_in_thread
        # a plain stage takes the fast path: no limit, no timing, one value in, one result out
        self.plain = not (self.limit or timed or self.is_batch or self.is_gen)
        # so does a batch stage with no limit and no timing whose function returns its result
        self.plain_batch = self.is_batch and not (self.limit or timed or self.is_gen)


class Calls:
    """The call path of one run."""

    __slots__ = ("budget", "channel", "reporter", "tracer", "limit", "base")

    def __init__(
        self,
        budget: Budget,
        channel: Channel,
        reporter: Reporter,
        tracer: Tracer | None,
        base: Context,
    ) -> None:
        self.base = base  # the context each piece starts from
        self.budget = budget
        self.channel = channel
        self.reporter = reporter
        self.tracer = tracer
        self.limit = budget.limit

    async def carry(
        self,
        segment: Segment,
        context: Context,
        index: int,
        value: Any,
        hold: Holding,
        slot: Any,
        tag: Any,
    ) -> bool:
        """Carry `value` through `segment`'s stages from stage `index` on, then the next pieces
        of the segment's queue while nothing waits. `context` is the one it runs in.

        A piece that waited let other tasks run: the queue is someone else's by now, so the
        carry ends there. So it does when a call changed the context (each piece must start
        from the run's), and after `FAIRNESS_STREAK` pieces or `FAIRNESS_S` seconds, returning
        True: the worker then lets others run.
        """
        stages = segment.stages
        count = len(stages)
        workers = segment.workers
        queue = workers.queue
        sequencer = segment.sequencer
        release = self.budget.release
        reporter = self.reporter
        base = self.base
        switches = workers.switches
        streak = 0
        started = time.perf_counter()
        while True:
            while index < count:
                site = stages[index]
                if site.plain:
                    try:
                        result = site.call(value)
                        if site.is_coroutine or inspect.isawaitable(result):
                            result = await result
                    except Exception as exc:
                        result = await site.policy.recover(
                            exc, site.call, value, sources_of(hold), reporter
                        )
                        if result is SKIPPED:
                            result = None
                    except FATAL as exc:
                        reporter.fail(site.name, exc)
                        raise
                elif site.plain_batch:
                    try:
                        result = site.call(values_of(value))
                        if site.is_coroutine or inspect.isawaitable(result):
                            result = await result
                    except Exception as exc:
                        result, hold, tag = await self._call_batch(site, value, hold, None, exc)
                        if result is SKIPPED:
                            result = None
                    except FATAL as exc:
                        reporter.fail(site.name, exc)
                        raise
                else:
                    result, hold, tag = await self.call(
                        segment, site, index, value, hold, slot, tag
                    )
                    if result is TAKEN:
                        break
                    if result is SKIPPED:
                        result = None
                index += 1
                if result is None:
                    release(hold)
                    sequencer.resolve_empty(slot)
                    break
                kind = type(result)
                if kind in _ONE_VALUE:
                    pass
                elif kind is list:
                    if not result:
                        release(hold)
                        sequencer.resolve_empty(slot)
                        break
                    result, hold = spread(segment, index, result, hold, slot, tag, self.budget)
                else:
                    how = shape(result, site.is_batch)
                    if how == LIST:
                        if not result:
                            release(hold)
                            sequencer.resolve_empty(slot)
                            break
                        result, hold = spread(segment, index, result, hold, slot, tag, self.budget)
                    elif how == STREAM:
                        # iterated after the call returned, it fails as the task: the policy
                        # decides, as for a generator function's values
                        values = site.policy.iterate(
                            _called_again(site.call),
                            values_of(value) if site.is_batch else value,
                            sources_of(hold),
                            reporter,
                            first=result,
                        )
                        await stream(
                            segment,
                            index,
                            values,
                            hold,
                            slot,
                            None if tag is None else (lambda tag=tag: tag),
                            self.budget,
                            self.channel,
                            self.limit,
                        )
                        break
                value = result
            else:
                sequencer.resolve(slot, value, hold, tag)
            streak += 1
            if not queue or workers.switches != switches:
                return False
            try:  # as `_workers.changed`, inline: this runs after every piece
                if context != base:
                    return False
            except Exception:
                return False
            if streak >= FAIRNESS_STREAK:
                return True
            if not streak % FAIRNESS_CHECK and time.perf_counter() - started >= FAIRNESS_S:
                return True
            index, value, hold, slot, tag = queue.popleft()

    async def call(
        self,
        segment: Segment,
        site: CallSite,
        index: int,
        value: Any,
        hold: Holding,
        slot: Any,
        tag: Any,
    ) -> tuple[Any, Holding, Any]:
        """A call with a concurrency limit, timing, a batch or a generator.

        Returns the result (`TAKEN` when the value went on elsewhere), the hold it stands on and
        its tag.
        """
        limit = site.limit
        if limit is not None:
            if site.active >= limit:
                site.parked.append((index, value, hold, slot, tag))
                return TAKEN, hold, tag
            site.active += 1
        tracer = self.tracer
        try:
            trace = None
            if tracer is not None:
                if site.is_batch:
                    inputs = [member[2] for member in value]
                    ready = None if tag is None else tag.ready  # when the batch was released
                    trace = tracer.call(site.name, site.kind, len(value), inputs, ready)
                else:
                    trace = tracer.call(site.name, site.kind, 1, [tag])
            if site.is_gen:
                item = values_of(value) if site.is_batch else value
                values = site.policy.iterate(
                    site.call,
                    item,
                    sources_of(hold),
                    self.reporter,
                    observe=trace,
                    clock=tracer.clock if tracer is not None else _no_clock,
                )
                tags = None if trace is None else trace.streamed
                await stream(
                    segment, index + 1, values, hold, slot, tags, self.budget, self.channel,
                    self.limit,
                )  # fmt: skip
                return TAKEN, hold, tag
            if site.is_batch:
                return await self._call_batch(site, value, hold, trace)
            if trace is None:
                try:
                    result = site.call(value)
                    if site.is_coroutine or inspect.isawaitable(result):
                        result = await result
                except Exception as exc:
                    result = await site.policy.recover(
                        exc, site.call, value, sources_of(hold), self.reporter
                    )
                return result, hold, tag
            assert tracer is not None
            result = await site.policy.call(
                site.call, value, sources_of(hold), self.reporter, trace, tracer.clock
            )
            return result, hold, trace.output()
        except FATAL as exc:
            self.reporter.fail(site.name, exc)
            raise
        finally:
            if limit is not None:
                site.active -= 1
                if site.parked:
                    segment.workers.put(site.parked.popleft())

    async def _call_batch(
        self,
        site: CallSite,
        members: list[Any],
        hold: Holding,
        trace: Any,
        failed: Exception | None = None,
    ) -> tuple[Any, Holding, Any]:
        """A batch of `(value, hold, tag)` members, `hold` standing for all of them;
        `failed`: the error of a first attempt made already."""
        if trace is None and failed is None:
            try:
                result = site.call(values_of(members))
                if site.is_coroutine or inspect.isawaitable(result):
                    result = await result
                return result, hold, None
            except Exception as exc:
                failed = exc
        tracer = self.tracer
        sources = sources_of(hold)
        result, kept = await site.policy.call_batch(
            site.call,
            [(value, sources_of(member), tag) for value, member, tag in members],
            sources,
            self.reporter,
            trace,
            tracer.clock if tracer is not None else _no_clock,
            failed,
        )
        if result is SKIPPED:
            return SKIPPED, hold, None
        if kept != sources:  # members skipped alone: the result stands for the others
            budget = self.budget
            survivors = budget.hold(kept)
            budget.release(hold)
            hold = survivors
        return result, hold, None if trace is None else trace.output()


def _called_again(call: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A retry of a call whose result streams: the call again, its result as an async iterator
    (None: no values)."""

    async def again(item: Any) -> Any:
        result = call(item)
        if inspect.isawaitable(result):
            result = await result
        if result is not None:
            async for value in result if inspect.isasyncgen(result) else each(result):
                yield value

    return again


def _no_clock() -> float:
    return 0.0
