"""The run scheduler: one run of a pipeline over one input, as one structured unit.

The stages are cut into segments: a segment starts at the source or at a batch or stream task
and goes on through the single tasks after it. Each segment has a queue of work, a pool of
worker tasks that grows only while every worker is waiting on a call, a sequencer (ordering,
see `_ordering`) and, between segments, a batcher (see `_batching`). All tasks of a run live in
one TaskGroup owned by a driver task; the consumer reads events from the driver through a
channel. At most `max_in_flight` input items are admitted and not yet delivered: that bound is
where a slow consumer slows the source.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import time
import types
import uuid
from array import array
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Sequence,
)
from typing import Any

from ._batching import Batcher, Member
from ._context import PipelineContext, _current
from ._errors import InvalidRunError, StreamConsumedError
from ._events import (
    EndEvent,
    Event,
    ItemErrorEvent,
    ResultEvent,
    RunErrorEvent,
    RunStats,
    describe_error,
)
from ._ordering import ImmediateSequencer, OrderedSequencer, Sequencer, Slot
from ._policy import SKIPPED, StagePolicy
from ._stage import Stage, StreamItemError, StreamTask
from ._tasks import BatchTask, Task

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "MODES", "Run"]

logger = logging.getLogger("conveyor_core")

DEFAULT_MAX_IN_FLIGHT = 4096
MODES = ("ordered", "as_completed")
_FAIRNESS_STREAK = 64  # calls a worker runs without suspending before it lets others run
_TAKEN: Any = object()  # a call's value went on elsewhere (parked, or streamed by a generator)
# raised by a task, these would stop the event loop itself: they fail the run instead
_FATAL = (SystemExit, KeyboardInterrupt)


class _Aborted(Exception):
    """Carries a SystemExit or KeyboardInterrupt of a task out of the run's TaskGroup."""


StageTimer = Callable[[str, float], None]
Work = tuple[int, Any, list[int], Slot | None]


@types.coroutine
def _resume(coro: Any, yielded: Any, context: contextvars.Context) -> Generator[Any, Any, None]:
    """Go on with a coroutine that was started by hand and suspended, yielding `yielded`.

    Workers start each call with `coro.send(None)` so that a call that never waits costs no
    task and no scheduling; the few that do wait are finished through this inside the worker's
    own task (so `current_task()`, timeouts and cancellation behave as usual).
    """
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = context.run(coro.throw, exc)
            except StopIteration:
                return
        else:
            try:
                yielded = context.run(coro.send, sent)
            except StopIteration:
                return


class _StageRun:
    """A task as one run uses it: its resolved call and its concurrency state."""

    __slots__ = (
        "name",
        "call",
        "policy",
        "limit",
        "active",
        "parked",
        "is_batch",
        "is_gen",
        "is_coroutine",
        "plain",
    )

    def __init__(self, task: Task, call: Callable[[Any], Any], timed: bool) -> None:
        self.name = task.name
        self.call = call
        self.policy: StagePolicy = task.policy
        self.limit = task.effective_concurrency_limit
        self.active = 0
        self.parked: deque[Work] = deque()
        self.is_batch = isinstance(task, BatchTask)
        self.is_gen = task.is_gen or task.is_async_gen
        self.is_coroutine = task.is_coroutine or task.run_in_thread
        # a plain stage takes the fast path: no limit, no timer, one item in, one result out
        self.plain = not (self.limit or timed or self.is_batch or self.is_gen)


class _Segment:
    """A run of stages that share one work queue, worker pool and sequencer."""

    def __init__(self, head: Stage | None, spawn: Callable[[_Segment], None]) -> None:
        self.head = head
        self.stages: list[_StageRun] = []
        self.queue: deque[Work] = deque()
        self.runnable = 0
        self.spawn = spawn
        self.sequencer: Sequencer
        self.batcher: Batcher | None = None
        self.inbox: deque[Member | None] = deque()  # stream heads only
        self.inbox_waiter: asyncio.Future[None] | None = None
        self.inbox_open = True
        self.inbox_idle = False  # the stream task waits for its next item

    def suspended(self) -> None:
        """A worker of this segment waits on a call: make sure the queue keeps moving."""
        self.runnable -= 1
        if self.queue and not self.runnable:
            self.runnable = 1
            self.spawn(self)


class Run:
    """One execution of a pipeline's stages over `data`; consume it with `events()`."""

    def __init__(
        self,
        stages: Sequence[Stage],
        data: Any,
        *,
        mode: str = "ordered",
        max_in_flight: int | None = None,
        stage_timer: StageTimer | None = None,
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
        self._limit = max_in_flight
        self._timer = stage_timer
        self.context = PipelineContext(uuid.uuid4().hex, mode, max_in_flight)
        self.stats = RunStats()
        self._seq = 0
        self._events: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._failure: tuple[str | None, BaseException] | None = None
        self._live: dict[int, int] = {}
        self._in_flight = 0
        self._room: asyncio.Future[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._started = 0.0
        self._driver: asyncio.Task[None] | None = None
        self._base = contextvars.Context()  # copied for every call: set in _drive
        self._segments: list[_Segment] = []
        self._suspended_calls = 0  # calls waiting on something (I/O, a thread, room to fan out)
        self._drain: asyncio.Future[None] | None = None  # a fan-out waits for queues to drain
        self._finished = False  # the last segment closed: everything was delivered

    # -- the consumer's side ------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """Run, yielding results and item errors as they come, then error (if any) and end."""
        if self._driver is not None:
            raise StreamConsumedError("a run runs once: call the pipeline again")
        loop = asyncio.get_running_loop()
        driver = self._driver = loop.create_task(self._drive())
        driver.add_done_callback(lambda _: self._wake())
        try:
            while True:
                while not self._events:
                    if driver.done():
                        if driver.cancelled():  # closed by aclose() from elsewhere
                            return
                        driver.result()
                        raise RuntimeError("conveyor run ended without an end event")
                    self._waiter = loop.create_future()
                    await self._waiter
                event = self._events.popleft()
                kind = type(event)
                if kind is ResultEvent or kind is ItemErrorEvent:
                    self._release(event.sources)  # type: ignore[union-attr]
                    self._wake_drain()
                yield event
                if kind is EndEvent:
                    return
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Cancel the run if it is going on, and wait until every task of it has ended.

        Safe to call more than once and from any task.
        """
        driver = self._driver
        if driver is None:
            return
        if not driver.done():
            driver.cancel()
        await asyncio.wait({driver})

    def _push(self, event: Event) -> None:
        self._events.append(event)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

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
        event = ItemErrorEvent(self._next_seq(), stage, sources, error, action, exc)  # type: ignore[arg-type]
        self._retain(sources)  # the items stay in flight until the consumer took the report
        self._push(event)

    def fail(self, stage: str | None, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = (stage, exc)

    # -- the driver ---------------------------------------------------------------------------

    async def _drive(self) -> None:
        _current.set(self.context)
        self._base = contextvars.copy_context()
        self._started = time.perf_counter()
        segments: list[_Segment] = []
        try:
            segments = self._segments = await self._prepare()
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self._guard(self._feed, segments[0]))
                for segment in segments:
                    if isinstance(segment.head, StreamTask):
                        tg.create_task(self._guard(self._run_stream, segment))
            if not self._finished:
                raise RuntimeError("conveyor engine: the run stopped before its input was done")
        except asyncio.CancelledError:
            self._stop_timers(segments)
            raise
        except (Exception, *_FATAL) as error:
            self._stop_timers(segments)
            stage, exc = self._failure or (None, _first_error(error))
            self.stats.elapsed_s = time.perf_counter() - self._started
            self._push(RunErrorEvent(self._next_seq(), stage, describe_error(exc), exc))
            self._push(EndEvent(self._next_seq(), "failed", self.stats))
            return
        self.stats.elapsed_s = time.perf_counter() - self._started
        self._push(EndEvent(self._next_seq(), "succeeded", self.stats))

    @staticmethod
    def _stop_timers(segments: list[_Segment]) -> None:
        for segment in segments:
            if segment.batcher is not None:
                segment.batcher.stop()

    async def _prepare(self) -> list[_Segment]:
        segments = [_Segment(None, self._spawn)]
        for stage in self._stages:
            if stage.kind != "single":
                segments.append(_Segment(stage, self._spawn))
            if isinstance(stage, Task):
                try:
                    args, kwargs = await stage.resolve_inputs()
                except (Exception, *_FATAL) as exc:
                    self.fail(stage.name, exc)
                    raise
                call = stage.make_call(args, kwargs)
                segments[-1].stages.append(_StageRun(stage, call, self._timer is not None))
        ordered = self._mode == "ordered"
        sequencer = OrderedSequencer if ordered else ImmediateSequencer
        for index, segment in enumerate(segments):
            after = segments[index + 1] if index + 1 < len(segments) else None
            emit, close = self._entry(after)
            segment.sequencer = sequencer(emit, close)
        return segments

    def _entry(self, segment: _Segment | None) -> tuple[Callable[[Any, list[int]], None], Any]:
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
                lambda: segment.sequencer.close(),
            )
            segment.batcher = batcher
            return batcher.add, batcher.close
        return (
            lambda value, sources: self._to_inbox(segment, (value, sources)),
            lambda: self._to_inbox(segment, None),
        )

    def _finish(self) -> None:
        self._finished = True

    # -- input ------------------------------------------------------------------------------

    async def _feed(self, segment: _Segment) -> None:
        data = self._data
        try:
            if isinstance(data, AsyncIterable):
                async for item in data:
                    if self._in_flight >= self._limit:
                        await self._wait_for_room()
                    self._admit(segment, item)
            else:
                for item in data:
                    if self._in_flight >= self._limit:
                        await self._wait_for_room()
                    self._admit(segment, item)
        except Exception as exc:
            self.fail(None, exc)
            raise
        except BaseException:  # cancelled, or worse: a generator source is closed, not left open
            if inspect.isasyncgen(data):
                await data.aclose()
            elif inspect.isgenerator(data):
                data.close()
            raise
        segment.sequencer.close()

    def _admit(self, segment: _Segment, item: Any) -> None:
        stats = self.stats
        index = stats.inputs
        stats.inputs = index + 1
        self._live[index] = 1
        self._in_flight += 1
        segment.queue.append((0, item, [index], segment.sequencer.new_slot()))
        if not segment.runnable:
            segment.runnable = 1
            self._spawn(segment)

    async def _wait_for_room(self) -> None:
        while self._in_flight >= self._limit:
            self._room = asyncio.get_running_loop().create_future()
            self._unstall()
            await self._room

    def _unstall(self) -> None:
        """The bound is reached: if nothing can move but partial batches, release them.

        Room comes back when a call ends, the consumer takes an event, a stream task pulls, or
        a batch's max_wait passes. When none of that can happen, every admitted item sits in a
        partial batch waiting for items the bound keeps out: those batches go now.
        """
        if self._events or self._suspended_calls:
            return
        for segment in self._segments:
            if segment.queue or segment.runnable:
                return
            if isinstance(segment.head, StreamTask) and not segment.inbox_idle:
                return
            if segment.batcher is not None and segment.batcher.waiting:
                return
        for segment in self._segments:
            if segment.batcher is not None and segment.batcher.release_early():
                logger.info("a partial batch went early: max_in_flight=%d reached", self._limit)

    async def _wait_for_drain(self) -> None:
        self._drain = asyncio.get_running_loop().create_future()
        await self._drain

    def _wake_drain(self) -> None:
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- the budget of items in flight ------------------------------------------------------

    def _retain(self, sources: list[int], count: int = 1) -> None:
        live = self._live
        for source in sources:
            held = live.get(source, 0)
            if not held:
                self._in_flight += 1
            live[source] = held + count

    def _release(self, sources: list[int]) -> None:
        live = self._live
        for source in sources:
            held = live[source] - 1
            if held:
                live[source] = held
            else:
                del live[source]
                self._in_flight -= 1
        room = self._room
        if room is not None and self._in_flight < self._limit and not room.done():
            room.set_result(None)

    # -- workers ------------------------------------------------------------------------------

    def _spawn(self, segment: _Segment) -> None:
        assert self._tg is not None
        worker = self._guard(self._worker, segment)
        try:
            self._tg.create_task(worker)
        except RuntimeError:  # the run is shutting down: nothing more may start
            worker.close()

    def _dispatch(self, segment: _Segment, work: Work) -> None:
        segment.queue.append(work)
        if not segment.runnable:
            segment.runnable = 1
            self._spawn(segment)

    async def _guard(
        self, work: Callable[[_Segment], Coroutine[Any, Any, None]], on: _Segment
    ) -> None:
        """Run `work(on)` as a task of the run; a SystemExit or KeyboardInterrupt fails the run
        instead of stopping the event loop."""
        try:
            await work(on)
        except _FATAL as exc:
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

    async def _worker(self, segment: _Segment) -> None:
        queue = segment.queue
        base = self._base
        streak = 0
        while queue:
            index, value, sources, slot = queue.popleft()
            coro = self._process(segment, index, value, sources, slot)
            context = base.copy()  # each call sees the run's context, not the previous call's
            try:
                yielded = context.run(coro.send, None)
            except StopIteration:
                streak += 1
                if streak >= _FAIRNESS_STREAK:
                    streak = 0
                    await asyncio.sleep(0)
                continue
            segment.suspended()  # this call waits: another worker takes the queue meanwhile
            self._suspended_calls += 1
            await _resume(coro, yielded, context)
            self._suspended_calls -= 1
            segment.runnable += 1
            streak = 0
        segment.runnable -= 1
        self._wake_drain()
        if self._room is not None and not self._room.done():
            self._unstall()

    async def _process(
        self, segment: _Segment, index: int, value: Any, sources: list[int], slot: Slot | None
    ) -> None:
        """Carry one value through the segment's stages, from stage `index` on."""
        stages = segment.stages
        count = len(stages)
        while index < count:
            stage = stages[index]
            if stage.plain:
                try:
                    result = stage.call(value)
                    if stage.is_coroutine or inspect.isawaitable(result):
                        result = await result
                except Exception as exc:
                    result = await stage.policy.recover(exc, stage.call, value, sources, self)
                except _FATAL as exc:
                    self.fail(stage.name, exc)
                    raise
            else:
                result, sources = await self._call(segment, stage, index, value, sources, slot)
                if result is _TAKEN:
                    return
            index += 1
            if result is None or result is SKIPPED:
                self._release(sources)
                segment.sequencer.resolve_empty(slot)
                return
            kind = type(result)
            if kind is list or isinstance(result, list):
                result = [item for item in result if item is not None]
                if not result:
                    self._release(sources)
                    segment.sequencer.resolve_empty(slot)
                    return
                if len(result) > 1:
                    self._retain(sources, len(result) - 1)
                    cursor = slot
                    for item in result[1:]:
                        cursor = segment.sequencer.insert_after(cursor)
                        self._dispatch(segment, (index, item, sources, cursor))
                result = result[0]
            elif kind is types.GeneratorType or kind is types.AsyncGeneratorType:
                await self._fan_out_stream(segment, index - 1, value, sources, slot, result)
                return
            value = result
        segment.sequencer.resolve(slot, value, sources)

    async def _call(
        self,
        segment: _Segment,
        stage: _StageRun,
        index: int,
        value: Any,
        sources: list[int],
        slot: Slot | None,
    ) -> tuple[Any, list[int]]:
        """A call with a concurrency limit, a timer, a batch or a generator.

        Returns `_TAKEN` as the result when the value went elsewhere (parked or streamed on).
        """
        if stage.limit is not None:
            if stage.active >= stage.limit:
                stage.parked.append((index, value, sources, slot))
                return _TAKEN, sources
            stage.active += 1
        started = time.perf_counter()
        try:
            if stage.is_gen:
                await self._fan_out_stream(segment, index, value, sources, slot)
                return _TAKEN, sources
            if stage.is_batch:
                return await self._call_batch(stage, value, sources)
            try:
                result = stage.call(value)
                if stage.is_coroutine or inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                result = await stage.policy.recover(exc, stage.call, value, sources, self)
            return result, sources
        except _FATAL as exc:
            self.fail(stage.name, exc)
            raise
        finally:
            if self._timer is not None:
                self._timer(stage.name, time.perf_counter() - started)
            if stage.limit is not None:
                stage.active -= 1
                if stage.parked:
                    self._dispatch(segment, stage.parked.popleft())

    async def _call_batch(
        self, stage: _StageRun, members: list[Member], sources: list[int]
    ) -> tuple[Any, list[int]]:
        batch = [value for value, _ in members]
        try:
            result = stage.call(batch)
            if stage.is_coroutine or inspect.isawaitable(result):
                result = await result
            return result, sources
        except Exception as exc:
            result, kept = await stage.policy.recover_batch(exc, stage.call, members, sources, self)
        if result is SKIPPED:
            return result, sources
        self._retain(kept)
        self._release(sources)
        return result, kept

    async def _fan_out_stream(
        self,
        segment: _Segment,
        index: int,
        value: Any,
        sources: list[int],
        slot: Slot | None,
        started: Any = None,
    ) -> None:
        """Stage `index` yields several values over time: each goes on as it is yielded."""
        stage = segment.stages[index]
        item = [member for member, _ in value] if stage.is_batch else value
        sequencer = segment.sequencer
        cursor = slot
        limit = self._limit
        try:
            async for result in stage.policy.iterate(stage.call, item, sources, self, started):
                if result is None:
                    continue
                following = sequencer.insert_after(cursor)
                self._retain(sources)
                self._dispatch(segment, (index + 1, result, sources, cursor))
                cursor = following
                while len(segment.queue) >= limit or len(self._events) >= limit:
                    await self._wait_for_drain()  # the consumer or the workers are behind
        except _FATAL as exc:
            self.fail(stage.name, exc)
            raise
        self._release(sources)
        sequencer.resolve_empty(cursor)

    # -- between segments ------------------------------------------------------------------

    def _release_batch(self, segment: _Segment, members: list[Member]) -> None:
        if len(members) == 1:
            sources = members[0][1]
        else:
            every = [source for _, member in members for source in member]
            sources = sorted(set(every))
            if len(sources) != len(every):
                # members share inputs (a fan-out): the batch holds one reference per input
                self._retain(sources)
                for _, member in members:
                    self._release(member)
            # else the members' references pass to the batch unchanged
        self._dispatch(segment, (0, members, sources, segment.sequencer.new_slot()))

    def _drop(self, stage: str, members: list[Member]) -> None:
        self.stats.dropped += len(members)
        dropped = sorted({source for _, member in members for source in member})
        logger.warning(
            "%s: dropped %d remainder item(s) below min_size: sources %s",
            stage,
            len(members),
            dropped,
        )
        for _, member in members:
            self._release(member)

    def _deliver(self, value: Any, sources: list[int]) -> None:
        self.stats.results += 1
        self._push(ResultEvent(self._next_seq(), value, sources))

    # -- stream stages ---------------------------------------------------------------------

    def _to_inbox(self, segment: _Segment, member: Member | None) -> None:
        if not segment.inbox_open:
            if member is not None:
                self._release(member[1])
            return
        segment.inbox.append(member)
        waiter = segment.inbox_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _inbox(self, segment: _Segment, seen: _Positions) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        while True:
            while not segment.inbox:
                segment.inbox_waiter = loop.create_future()
                segment.inbox_idle = True
                if self._room is not None and not self._room.done():
                    self._unstall()
                try:
                    await segment.inbox_waiter
                finally:
                    segment.inbox_idle = False
            member = segment.inbox.popleft()
            if member is None:
                return
            value, sources = member
            seen.append(sources)
            self._release(sources)
            yield value

    async def _run_stream(self, segment: _Segment) -> None:
        head = segment.head
        assert isinstance(head, StreamTask)
        seen = _Positions()
        sequencer = segment.sequencer
        outputs = head.process_stream(self._inbox(segment, seen), self._mode)
        try:
            async with contextlib.aclosing(outputs):  # type: ignore[type-var]
                async for output in outputs:
                    if isinstance(output, StreamItemError):
                        sources = _map_positions(head, output.positions, seen)
                        stage = output.stage or head.name
                        self._item_error(stage, sources, output.error, output.action, None)
                        continue
                    value, positions = output
                    sources = _map_positions(head, positions, seen)
                    if value is None:
                        continue
                    self._retain(sources)
                    self._dispatch(segment, (0, value, sources, sequencer.new_slot()))
        except Exception as exc:
            self.fail(head.name, exc)
            raise
        finally:
            segment.inbox_open = False
            for member in segment.inbox:
                if member is not None:
                    self._release(member[1])
            segment.inbox.clear()
        sequencer.close()


def _map_positions(head: StreamTask, positions: Any, seen: _Positions) -> list[int]:
    """The run's sources of the items at `positions` of what a stream task received."""
    try:
        return sorted({source for position in positions for source in seen[position]})
    except (IndexError, TypeError):
        raise InvalidRunError(
            f"stream task {head.name} gave positions {positions!r}: each must index "
            f"the {len(seen)} item(s) it received so far"
        ) from None


class _Positions:
    """The sources of every item a stream task received, by position: 8 bytes an item when an
    item has one source (the common case), a list otherwise."""

    def __init__(self) -> None:
        self._single = array("q")
        self._several: dict[int, list[int]] = {}

    def append(self, sources: list[int]) -> None:
        if len(sources) == 1:
            self._single.append(sources[0])
        else:
            self._several[len(self._single)] = sources
            self._single.append(-1)

    def __getitem__(self, position: int) -> list[int]:
        if position < 0:
            raise IndexError(position)
        source = self._single[position]
        return [source] if source >= 0 else self._several[position]

    def __len__(self) -> int:
        return len(self._single)


def _first_error(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
