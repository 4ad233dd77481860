"""A run: one execution of a pipeline over one input, as one structured unit.

The stages are cut into segments: a segment starts at the source or at a batch or stream task
and goes on through the single tasks after it. Each segment has a queue and workers
(`_workers`) that carry its work through its stages (`_calls`), a sequencer (`_ordering`) its
values leave through, and, at its head, a batcher (`_batching`) or a stream stage's inbox
(`_streams`). The values leaving the last segment go into the event channel (`_channel`) the
consumer reads. Every task of a run lives in one TaskGroup owned by a driver task; at most
`max_in_flight` input items are in flight (`_budget`), which is where a slow consumer slows the
source.

A run ends with its own `end` event however it ends: `succeeded`, `failed` (after an `error`
event), or `cancelled` by `cancel()`. Closing it (`aclose()`, or its consumer leaving) stops it
with no more events.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Sequence,
)
from itertools import islice, repeat
from typing import Any

from ._batching import Batcher, Member, holdings_of
from ._budget import Budget, Holding, sources_of
from ._calls import FATAL, Calls, CallSite
from ._channel import Channel
from ._context import PipelineContext, _current, run_context
from ._errors import InvalidRunError, StreamConsumedError
from ._events import EndEvent, Event, ItemErrorEvent, RunErrorEvent, RunStats, describe_error
from ._ordering import ImmediateSequencer, OrderedSequencer, Sequencer
from ._stage import Stage, StreamTask
from ._streams import Inbox, run_stream
from ._tasks import BatchTask, Task
from ._trace import OnCall, Tracer
from ._workers import Workers

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "MODES", "Run", "Segment"]

logger = logging.getLogger("conveyor_core")

DEFAULT_MAX_IN_FLIGHT = 4096
_CHUNK = 1024  # items a plain iterable gives at most at once
MODES = ("ordered", "as_completed")

StageTimer = Callable[[str, float], None]


class _Aborted(Exception):
    """Carries a SystemExit or KeyboardInterrupt of a task out of the run's TaskGroup."""


class Segment:
    """Stages that share one queue, one pool of workers and one sequencer."""

    __slots__ = ("head", "stages", "workers", "sequencer", "batcher", "inbox", "later")

    def __init__(self, head: Stage | None) -> None:
        self.head = head  # None: the source; else a batch or stream task
        self.stages: list[CallSite] = []
        self.workers: Workers
        self.sequencer: Sequencer
        self.batcher: Batcher | None = None
        self.inbox: Inbox | None = Inbox() if isinstance(head, StreamTask) else None
        self.later: list[Workers] = []  # the workers of the segments after this one


class Run:
    """One execution of a pipeline's stages over `data`; consume it with `events()` or
    `values()`, once."""

    def __init__(
        self,
        stages: Sequence[Stage],
        data: Any,
        *,
        mode: str = "ordered",
        max_in_flight: int | None = None,
        stage_timer: StageTimer | None = None,
        trace: bool = False,
        on_call: OnCall | None = None,
        context: PipelineContext | None = None,
    ) -> None:
        if mode not in MODES:
            raise InvalidRunError(f"mode must be 'ordered' or 'as_completed', got {mode!r}")
        if isinstance(data, (str, bytes)) or not isinstance(data, (AsyncIterable, Iterable)):
            raise InvalidRunError(
                f"data must be an iterable or async iterable of items, got {type(data).__name__}"
            )
        if max_in_flight is None:
            max_in_flight = DEFAULT_MAX_IN_FLIGHT
        elif not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise InvalidRunError(f"max_in_flight must be an int >= 1, got {max_in_flight!r}")
        self._stages = tuple(stages)
        self._data = data
        self._mode = mode
        self._trace = trace
        self._on_call = _observers(on_call, stage_timer)
        self.context = run_context(context, mode, max_in_flight)  # type: ignore[arg-type]
        self.stats = RunStats()
        self.budget = Budget(max_in_flight)
        self.channel = Channel(self.budget)
        self.channel.on_wait = self._on_idle  # the consumer took everything: can more move?
        self._driver: asyncio.Task[None] | None = None
        self._consumed = False
        self._cancelling = False  # cancel() was called: the run ends with `end` cancelled
        self._failure: tuple[str | None, BaseException] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._segments: list[Segment] = []
        self._tracer: Tracer | None = None
        self._clock: Callable[[], float] = _no_clock
        self._started = 0.0
        self.started_at: float | None = None
        self._finished = False  # the last segment closed: everything was delivered

    # -- the consumer's side ------------------------------------------------------------------

    def events(self) -> AsyncGenerator[Event, None]:
        """The run's events: results and item errors as they come, then error (if any) and end.
        Closing the generator cancels the run."""
        return self.channel.events(self._claim(), self.aclose)

    def values(self) -> AsyncGenerator[Any, None]:
        """The results' values; a failed run raises the task's own exception."""
        return self.channel.values(self._claim(), self.aclose)

    def cancel(self, error: BaseException | None = None) -> None:
        """Stop the run: its calls are cancelled and it ends with `end`, status `cancelled`
        (events it produced before stay before it). With `error`, the run fails with it
        instead: the events not taken yet are dropped (no seq is skipped), then an `error`
        event (no stage) and `end`, status `failed`. Safe to call at any time, more than once;
        once the consumer took the `end`, it does nothing."""
        if self.channel.finished:
            return
        if error is not None and not self.channel.dropping:
            self._failure = (None, error)
            self._drop_untaken()
        self._cancelling = True
        driver = self._driver
        if driver is None:
            return
        if not driver.done():
            driver.cancel()
        elif error is not None:  # it ended already, but the consumer has not taken the end
            self._fail_with(None, error)

    def reject(self, error: BaseException) -> None:
        """The consumer cannot use the result it was just given (it has no wire form, say):
        the run fails in its place, with `error`, which takes the result's seq (see
        `cancel(error)` for the rest)."""
        if self.channel.finished or self.channel.dropping:
            return
        self.channel.untake()
        self.stats.results -= 1
        self.cancel(error)

    def _drop_untaken(self) -> None:
        self.stats.results -= self.channel.drop()

    async def aclose(self) -> None:
        """Stop the run if it is going on, with no more events, and wait until every task of
        it has ended. Safe to call more than once and from any task."""
        driver = self._driver
        if driver is not None and not driver.done():
            driver.cancel()
            await asyncio.wait({driver})

    def _claim(self) -> Callable[[], None]:
        if self._consumed:
            raise StreamConsumedError("a run runs once: call the pipeline again")
        self._consumed = True
        return self._start

    def _start(self) -> None:
        self._driver = asyncio.get_running_loop().create_task(self._drive())
        self.channel.watch(self._driver)

    # -- the reporter the error policy talks to --------------------------------------------

    def item_error(self, stage: str, sources: list[int], exc: BaseException, action: str) -> None:
        self._item_error(stage, sources, describe_error(exc), action, exc)

    def _item_error(
        self, stage: str, sources: list[int], error: str, action: str, exc: BaseException | None
    ) -> None:
        if action != "handled":
            self.stats.skipped += 1
        level = logging.INFO if action == "handled" else logging.WARNING
        logger.log(level, "%s: %s on sources %s: %s", stage, action, sources, error)
        event = ItemErrorEvent(-1, stage, sources, error, action, exc)  # type: ignore[arg-type]
        self.channel.report(event, self.budget.hold(sources))  # in flight until it is taken

    def fail(self, stage: str | None, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = (stage, exc)

    # -- the driver ---------------------------------------------------------------------------

    async def _drive(self) -> None:
        _current.set(self.context)
        base = contextvars.copy_context()
        self._clock = clock = asyncio.get_running_loop().time
        self._started = clock()
        self.started_at = time.time()  # the wall clock at the start: stage times add to it
        if self._trace or self._on_call is not None:
            put = self.channel.put if self._trace else None
            self._tracer = Tracer(clock, self._started, put, self._on_call)
        segments: list[Segment] = []
        try:
            if self._cancelling:
                raise asyncio.CancelledError
            segments = self._segments = await self._prepare(base)
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self._guard(lambda: self._feed(segments[0])))
                for segment in segments:
                    if segment.inbox is not None:
                        tg.create_task(self._guard(functools.partial(self._stream, segment)))
            if not self._finished:
                raise RuntimeError("conveyor engine: the run stopped before its input was done")
        except asyncio.CancelledError:
            _stop_timers(segments)
            if not self._cancelling:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if self._failure is not None:
                self._fail_with(*self._failure)
            else:
                self._end("cancelled")
            return
        except (Exception, *FATAL) as error:
            _stop_timers(segments)
            self._fail_with(*(self._failure or (None, _first_error(error))))
            return
        self._end("succeeded")

    def _fail_with(self, stage: str | None, exc: BaseException) -> None:
        self._end("failed", RunErrorEvent(-1, stage, describe_error(exc), exc))

    def _end(self, status: str, error: RunErrorEvent | None = None) -> None:
        self.stats.elapsed_s = self._clock() - self._started
        self.channel.close(EndEvent(-1, status, self.stats), error)  # type: ignore[arg-type]

    async def _prepare(self, base: contextvars.Context) -> list[Segment]:
        segments = [Segment(None)]
        timed = self._tracer is not None
        for stage in self._stages:
            if stage.kind != "single":
                segments.append(Segment(stage))
            if isinstance(stage, Task):
                try:
                    args, kwargs = await stage.resolve_inputs()
                except (Exception, *FATAL) as exc:
                    self.fail(stage.name, exc)
                    raise
                call = stage.make_call(args, kwargs)
                segments[-1].stages.append(CallSite(stage, call, timed))
        calls = Calls(self.budget, self.channel, self, self._tracer, base)
        sequencer = OrderedSequencer if self._mode == "ordered" else ImmediateSequencer
        for index, segment in enumerate(segments):
            after = segments[index + 1] if index + 1 < len(segments) else None
            emit, close = self._entry(after)
            segment.sequencer = sequencer(emit, close)
            segment.workers = Workers(segment, self._spawn, calls.carry, base, self._on_idle)
        for index, segment in enumerate(segments):
            segment.later = [after.workers for after in segments[index + 1 :]]
        return segments

    def _entry(self, segment: Segment | None) -> tuple[Callable[[Any, Any, Any], None], Any]:
        """How values enter `segment` (None: the consumer), and how its input is closed."""
        if segment is None:
            return self._deliver, self._finish
        head = segment.head
        if isinstance(head, BatchTask):
            batcher = Batcher(
                head.max_size,
                head.min_size,
                head.max_wait,
                lambda members: self._release_batch(segment, members),
                lambda members: self._drop(head.name, members),
                lambda: _close(segment),
            )
            segment.batcher = batcher
            return batcher.add, batcher.close
        inbox = segment.inbox
        assert inbox is not None
        budget = self.budget
        return (lambda value, hold, tag: inbox.put(value, hold, tag, budget)), inbox.close

    def _deliver(self, value: Any, hold: Holding, tag: Any) -> None:
        channel = self.channel
        if channel.dropping:
            self.budget.release(hold)
            return
        self.stats.results += 1
        channel.queue.append((value, hold))
        if channel.ready.waiters:
            channel.ready.fire()

    def _finish(self) -> None:
        self._finished = True

    # -- input ------------------------------------------------------------------------------

    async def _feed(self, segment: Segment) -> None:
        data = self._data
        budget = self.budget
        put = segment.workers.put
        new_slot = segment.sequencer.new_slot
        stats = self.stats
        tracer = self._tracer
        try:
            if isinstance(data, AsyncIterable):
                async for item in data:
                    if budget.full:
                        await budget.wait_for_room(self._unstall)
                    index = stats.inputs
                    stats.inputs = index + 1
                    tag = None if tracer is None else tracer.tag()
                    put((0, item, budget.admit(index), new_slot(), tag))
            else:
                await self._feed_sync(segment, iter(data))
        except Exception as exc:
            self.fail(None, exc)
            raise
        except BaseException:  # cancelled, or worse: a generator source is closed, not left open
            if inspect.isasyncgen(data):
                await data.aclose()
            elif inspect.isgenerator(data):
                data.close()
            raise
        _close(segment)

    async def _feed_sync(self, segment: Segment, items: Iterator[Any]) -> None:
        """Admit a plain iterable's items in chunks, as many as there is room for: a chunk is
        pulled, admitted and queued by C loops (`islice`, `set.update`, `deque.extend`)."""
        budget = self.budget
        live, limit = budget.live, budget.limit
        workers = segment.workers
        stats = self.stats
        waiting: list[Any] = []  # an item pulled while there was no room for it
        while True:
            room = limit - len(live)
            if room <= 0:
                if not waiting:  # the next item first: at the end of the input nothing waits
                    waiting = list(islice(items, 1))
                    if not waiting:
                        return
                await budget.wait_for_room(self._unstall)
                continue
            chunk = waiting + list(islice(items, min(room, _CHUNK) - len(waiting)))
            waiting = []
            if not chunk:
                return
            start = stats.inputs
            count = len(chunk)
            stats.inputs = start + count
            positions = range(start, start + count)
            live.update(positions)  # each item's holding is its position (see `_budget`)
            tags = repeat(None if self._tracer is None else self._tracer.tag())
            slots = segment.sequencer.new_slots(count)
            workers.queue.extend(zip(repeat(0), chunk, positions, slots, tags))
            if not workers.active:
                workers.start()
            if count < min(room, _CHUNK):
                return  # the iterable is exhausted
            if count == _CHUNK:
                await asyncio.sleep(0)  # a long burst lets the workers start on it

    def _unstall(self) -> None:
        """The bound is reached: if nothing can move but partial batches, release them.

        Room comes back when a call ends, the consumer takes an event, a stream task pulls, or
        a batch's max_wait passes. When none of that can happen, every admitted item sits in a
        partial batch waiting for items the bound keeps out: those batches go now.
        """
        if self.channel.queue:
            return
        for segment in self._segments:
            workers = segment.workers
            if workers.queue or workers.active or workers.waiting:
                return
            if segment.inbox is not None and not segment.inbox.idle:
                return
            if segment.batcher is not None and segment.batcher.waiting:
                return
        for segment in self._segments:
            if segment.batcher is not None and segment.batcher.release_early():
                logger.info(
                    "a partial batch went early: max_in_flight=%d reached", self.budget.limit
                )

    def _on_idle(self) -> None:
        """A worker found its queue empty."""
        drained = self.channel.drained
        if drained.waiters:
            drained.fire()
        if self.budget.room.waiters:
            self._unstall()

    # -- tasks of the run -------------------------------------------------------------------

    def _spawn(
        self,
        work: Callable[[], Coroutine[Any, Any, None]],
        context: contextvars.Context | None = None,
    ) -> None:
        assert self._tg is not None
        guarded = self._guard(work)
        try:
            self._tg.create_task(guarded, context=context)
        except RuntimeError:  # the run is shutting down: nothing more may start
            guarded.close()

    async def _guard(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `work()` as a task of the run; a SystemExit or KeyboardInterrupt fails the run
        instead of stopping the event loop. (`work` is called in the task, so a task cancelled
        before it starts leaves no coroutine unawaited.)"""
        try:
            await work()
        except FATAL as exc:
            self.fail(None, exc)
            raise _Aborted(describe_error(exc)) from exc
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # a task raised CancelledError of its own: a TaskGroup would ignore that task and
            # lose its items, so it fails the run
            error = RuntimeError("a task raised CancelledError without being cancelled")
            error.__cause__ = exc
            self.fail(None, error)
            raise _Aborted(describe_error(error)) from exc

    # -- between segments ------------------------------------------------------------------

    def _release_batch(self, segment: Segment, members: list[Member]) -> None:
        hold = self.budget.merge(holdings_of(members))
        tag = None if self._tracer is None else self._tracer.tag()
        segment.workers.put((0, members, hold, segment.sequencer.new_slot(), tag))

    def _drop(self, stage: str, members: list[Member]) -> None:
        self.stats.dropped += len(members)
        dropped = sorted({source for _, hold, _ in members for source in sources_of(hold)})
        logger.warning(
            "%s: dropped %d remainder item(s) below min_size: sources %s",
            stage,
            len(members),
            dropped,
        )
        for member in members:
            self.budget.release(member[1])

    async def _stream(self, segment: Segment) -> None:
        head = segment.head
        inbox = segment.inbox
        assert isinstance(head, StreamTask) and inbox is not None
        budget = self.budget
        put = segment.workers.put
        new_slot = segment.sequencer.new_slot
        tracer = self._tracer

        def emit(value: Any, sources: list[int]) -> None:
            tag = None if tracer is None else tracer.tag()
            put((0, value, budget.hold(sources), new_slot(), tag))

        def report(stage: str, sources: list[int], error: str, action: str) -> None:
            self._item_error(stage, sources, error, action, None)

        def on_idle() -> None:
            if budget.room.waiters:
                self._unstall()

        await run_stream(head, inbox, self._mode, budget, emit, report, self.fail, on_idle)
        _close(segment)


def _close(segment: Segment) -> None:
    """`segment`'s input ended."""
    segment.workers.close()
    segment.sequencer.close()


def _stop_timers(segments: list[Segment]) -> None:
    for segment in segments:
        if segment.batcher is not None:
            segment.batcher.stop()


def _observers(on_call: OnCall | None, stage_timer: StageTimer | None) -> OnCall | None:
    if stage_timer is None:
        return on_call

    def timed(event: Any) -> None:
        stage_timer(event.stage, event.ended_s - event.started_s)
        if on_call is not None:
            on_call(event)

    return timed


def _no_clock() -> float:
    return 0.0


def _first_error(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
