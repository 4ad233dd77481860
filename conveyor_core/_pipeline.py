"""Pipelines (stages composed with `|`) and the streams a run produces."""

from __future__ import annotations

import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
)
from collections.abc import Mapping as MappingABC
from typing import Any, Generic, TypeGuard, TypeVar

from ._base_task import BaseTask, ProcessStage
from ._context import PipelineContext
from ._errors import InvalidRunError, PipelineDefinitionError, StreamConsumedError
from ._events import Event, RunStats, StageEvent
from ._run import MODES, Run
from ._stage import NO_DATA, Data, In, Out, Runnable, Stage
from ._tasks import Task

__all__ = ["AsyncStream", "Pipeline", "RunEvents", "as_pipeline"]

T = TypeVar("T")

# the PipelineContext attributes `with_context` sets; any other key goes into context.data
_CONTEXT_FIELDS = frozenset(
    {"execution_mode", "max_parallelism", "pipeline_id", "data", "mode", "max_in_flight", "run_id"}
)


class Pipeline(Runnable[In, Out]):
    """Stages applied one after the other. `|` builds one; calling it on data runs it.

    `Pipeline(a, b)`, `Pipeline([a, b])`, `Pipeline()` (passes items through) and
    `Pipeline(context)` (a `PipelineContext` or None first) all build one; `add` appends.
    `context` is the template every run starts from (a copy, with a fresh `pipeline_id`): its
    `execution_mode` ("ordered", the default, or "as_completed") and `max_parallelism` (input
    items admitted and not yet delivered; `mode` and `max_in_flight` here) are the defaults of
    its runs. `description` is shown by the service.
    """

    def __init__(
        self,
        *stages: Any,
        context: PipelineContext | None = None,
        mode: str | None = None,
        max_in_flight: int | None = None,
        description: str | None = None,
    ) -> None:
        if stages and (stages[0] is None or isinstance(stages[0], PipelineContext)):
            if context is not None:
                raise PipelineDefinitionError("Pipeline got a context twice")
            context, stages = stages[0], stages[1:]
        if context is not None and not isinstance(context, PipelineContext):
            raise PipelineDefinitionError(f"context must be a PipelineContext, got {context!r}")
        if mode is not None:
            _check_mode(mode)
        self.stages: list[Stage[Any, Any]] = _flatten(stages)
        if context is None:
            context = PipelineContext()
        elif mode is not None or max_in_flight is not None:
            context = context.copy()  # the caller's object stays as it is
        if mode is not None:
            context.execution_mode = mode  # type: ignore[assignment]
        if max_in_flight is not None:
            context.max_parallelism = max_in_flight
        self.context = context
        self._description = description

    @property
    def mode(self) -> str:
        """The mode of its runs unless a call says otherwise (the context's execution_mode)."""
        return self.context.execution_mode

    @property
    def max_in_flight(self) -> int | None:
        """The bound of its runs unless a call says otherwise (the context's max_parallelism)."""
        return self.context.max_parallelism

    def as_pipeline(self) -> Pipeline[In, Out]:
        return self

    def add(self, *stages: Any) -> Pipeline[In, Any]:
        """Append stages (tasks or pipelines) to this pipeline; returns it."""
        self.stages.extend(_flatten(stages))
        return self

    def __or__(self, other: Runnable[Out, T]) -> Pipeline[In, T]:
        if not isinstance(other, Runnable):
            return NotImplemented
        return self._derive(stages=[*self.stages, *_flatten((other,))])

    def __len__(self) -> int:
        return len(self.stages)

    def __bool__(self) -> bool:
        return True  # an empty pipeline is still a pipeline (it passes items through)

    def __repr__(self) -> str:
        return "Pipeline(" + " | ".join(stage.name for stage in self.stages) + ")"

    def with_execution_mode(self, mode: str) -> Pipeline[In, Out]:
        return self.with_context(execution_mode=mode)

    def with_max_in_flight(self, max_in_flight: int | None) -> Pipeline[In, Out]:
        """A pipeline of this whose runs admit at most `max_in_flight` items by default."""
        return self.with_context(max_parallelism=max_in_flight)

    def with_description(self, description: str) -> Pipeline[In, Out]:
        derived = self._derive()
        derived._description = description
        return derived

    def with_context(self, **fields: Any) -> Pipeline[In, Out]:
        """A pipeline of the same stages whose runs start from a copy of this one's context
        with `fields` set: PipelineContext's own (`execution_mode`, `max_parallelism`, `data`,
        ...), and any other key as an entry of `context.data`."""
        context = self.context.copy()
        for key, value in fields.items():
            if key not in _CONTEXT_FIELDS:
                context.data[key] = value
            elif key == "data":
                if not isinstance(value, MappingABC):
                    raise PipelineDefinitionError(f"context data must be a mapping, got {value!r}")
                context.data = dict(value)
            else:
                if key in ("execution_mode", "mode"):
                    _check_mode(value)
                setattr(context, key, value)
        return self._derive(context=context)

    def _derive(
        self, stages: list[Stage[Any, Any]] | None = None, context: PipelineContext | None = None
    ) -> Pipeline[Any, Any]:
        return Pipeline(
            *(self.stages if stages is None else stages),
            context=self.context.copy() if context is None else context,
            description=self._description,
        )

    @property
    def description(self) -> str | None:
        """The explicit description, else the first task's docstring (first paragraph)."""
        if self._description:
            return self._description
        return self.stages[0].description if self.stages else None

    @property
    def input_type(self) -> Any:
        return self.stages[0].input_type if self.stages else Any

    @property
    def output_type(self) -> Any:
        return self.stages[-1].output_type if self.stages else Any

    # -- running ----------------------------------------------------------------------------

    def __call__(
        self,
        data: Data[In] = NO_DATA,
        *args: Any,
        mode: str | None = None,
        max_in_flight: int | None = None,
        **kwargs: Any,
    ) -> AsyncStream[Out]:
        """A stream of this pipeline's results on `data` (it runs when iterated).

        `data` is an iterable or async iterable of items (lists, ranges, sets, generators,
        endless sources: pulled lazily); a str, bytes, tuple, mapping or any other value is one
        item; no data runs a first task that takes no item once. Extra arguments go to the
        first task after the item, for this run only. `mode` and `max_in_flight` are this
        call's own keywords, never passed on.
        """
        bound = self.max_in_flight if max_in_flight is None else max_in_flight

        def start(run_mode: str) -> Run:
            return self._run(data, run_mode, bound, args=args, kwargs=kwargs)

        return _RunStream(start, mode or self.mode)

    def as_completed(
        self, data: Data[In] = NO_DATA, *args: Any, max_in_flight: int | None = None, **kwargs: Any
    ) -> AsyncStream[Out]:
        return self(data, *args, mode="as_completed", max_in_flight=max_in_flight, **kwargs)

    def events(
        self,
        data: Data[In] = NO_DATA,
        *,
        mode: str | None = None,
        max_in_flight: int | None = None,
        trace: bool = False,
        on_call: Callable[[StageEvent], None] | None = None,
        stage_timer: Callable[[str, float], None] | None = None,
    ) -> RunEvents:
        """Run on `data` and yield its events: `ResultEvent`s and `ItemErrorEvent`s as they
        come, a `RunErrorEvent` if the run fails, and always an `EndEvent` last.

        A failure does not raise here: it is an event. `trace=True` adds a `StageEvent` for
        every call of every stage. `on_call(event)` is told of every call as a `StageEvent`
        (traced or not), `stage_timer(stage_name, seconds)` of every call's duration. Closing
        the iterator (`aclose()`) stops the run with no more events; `cancel()` stops it with
        its own `end` event, status `cancelled`.
        """
        run = self._run(data, mode, max_in_flight, stage_timer, trace, on_call)
        return RunEvents(run)

    def _run(
        self,
        data: Any,
        mode: str | None,
        max_in_flight: int | None,
        stage_timer: Callable[[str, float], None] | None = None,
        trace: bool = False,
        on_call: Callable[[StageEvent], None] | None = None,
        *,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Run:
        return Run(
            _stages_for_run(self.stages, data is NO_DATA, args, kwargs or {}),
            _run_data(data),
            mode=mode or self.mode,
            max_in_flight=self.max_in_flight if max_in_flight is None else max_in_flight,
            stage_timer=stage_timer,
            trace=trace,
            on_call=on_call,
            context=self.context,
        )


class AsyncStream(AsyncIterator[T], Generic[T]):
    """An async iterator of results: `async for`, `anext()`, `await stream.collect()`.

    `AsyncStream(source)` wraps any async iterable (iterating it iterates the source). Calling a
    pipeline returns the stream of one run, which runs once: iterating it again raises
    `StreamConsumedError`. A failed run raises the task's own exception from the iteration.
    Leaving early cancels the run: `aclose()` or `async with` wait until its calls have ended;
    after a plain `break`, the run is cancelled as soon as the iteration is garbage collected
    (at once in CPython).
    """

    def __init__(self, source: AsyncIterable[T]) -> None:
        if not isinstance(source, AsyncIterable):
            raise PipelineDefinitionError(
                f"AsyncStream wraps an async iterable, got {type(source).__name__}"
            )
        self._source = source
        self._iterator: AsyncIterator[T] | None = None  # the one anext() goes through

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterator if self._iterator is not None else aiter(self._source)

    async def __anext__(self) -> T:
        if self._iterator is None:
            self._iterator = aiter(self._source)
        return await anext(self._iterator)

    async def collect(self) -> list[T]:
        """Iterate to the end and return every result."""
        return [value async for value in self]

    def as_completed(self) -> AsyncStream[T]:
        """The results as they complete: a wrapped source already yields them so."""
        return self

    async def first(self) -> T:
        """The first result (the stream is then closed)."""
        iterator = aiter(self)
        try:
            return await anext(iterator)
        finally:
            await _aclose(iterator)

    async def aclose(self) -> None:
        """Close the iteration (and its source, if it can be closed)."""
        await _aclose(self._iterator if self._iterator is not None else self._source)

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _RunStream(AsyncStream[T]):
    """The stream of one run of a pipeline (see `AsyncStream`)."""

    def __init__(self, start: Callable[[str], Run], mode: str) -> None:
        self._start = start
        self._mode = mode
        self._run = start(mode)  # built now: bad arguments raise at the call
        self._iterator = None
        self._used = False
        # weak: a `break` must let the iteration be collected, which cancels the run
        self._weak: weakref.ref[AsyncGenerator[T, None]] | None = None

    def _begin(self) -> AsyncGenerator[T, None]:
        if self._used:
            raise StreamConsumedError("this stream was iterated already: call the pipeline again")
        self._used = True
        iterator = self._run.values()
        self._weak = weakref.ref(iterator)
        return iterator

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterator if self._iterator is not None else self._begin()

    async def __anext__(self) -> T:
        if self._iterator is None:
            self._iterator = self._begin()
        return await anext(self._iterator)

    def as_completed(self) -> AsyncStream[T]:
        """This run in completion order; call it before iterating (the run starts once)."""
        if self._used:
            raise StreamConsumedError("as_completed() must come before the stream is iterated")
        if self._mode == "as_completed":
            return self
        self._used = True
        return _RunStream(self._start, "as_completed")

    async def aclose(self) -> None:
        """Stop the run if it is going on, and wait until its calls have ended."""
        await self._run.aclose()
        iterator = self._weak() if self._weak is not None else None
        if iterator is not None and not getattr(iterator, "ag_running", False):
            await iterator.aclose()


class RunEvents:
    """The events of one run (`Pipeline.events()`), an async iterator to consume once.

    `aclose()` stops the run with no more events and waits until its calls have ended (as
    leaving an `async for` early does); `cancel()` stops it too, but the iteration goes on to
    the run's own `end` event, status `cancelled`, after the events produced before. `stats`
    are the run's counts so far, `in_flight` the input items it holds now.
    """

    __slots__ = ("_run", "_events")

    def __init__(self, run: Run) -> None:
        self._run = run
        self._events = run.events()

    def __aiter__(self) -> RunEvents:
        return self

    def __anext__(self) -> Awaitable[Event]:
        return self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()
        await self._run.aclose()

    def cancel(self, error: BaseException | None = None) -> None:
        """End the run early with its own `end` (status `cancelled`, after the events it
        produced before); with `error`, fail it with that error instead (the events not taken
        yet are dropped, then `error` and `end` failed). See `Run.cancel`."""
        self._run.cancel(error)

    @property
    def stats(self) -> RunStats:
        return self._run.stats

    @property
    def in_flight(self) -> int:
        return self._run.budget.in_flight

    @property
    def started_at(self) -> float | None:
        """The wall-clock time (`time.time()`) the run started at; a `StageEvent`'s times are
        seconds after it. None until the run starts."""
        return self._run.started_at


def as_pipeline(obj: Runnable[In, Out]) -> Pipeline[In, Out]:
    """`obj` as a Pipeline: a pipeline as it is, a task in a one-stage pipeline."""
    if not isinstance(obj, Runnable):
        raise PipelineDefinitionError(f"expected a task or a pipeline, got {obj!r}")
    return obj.as_pipeline()


def _check_mode(mode: Any) -> None:
    if mode not in MODES:
        raise InvalidRunError(f"mode must be 'ordered' or 'as_completed', got {mode!r}")


def _flatten(parts: Iterable[Any]) -> list[Stage[Any, Any]]:
    stages: list[Stage[Any, Any]] = []
    for part in parts:
        if isinstance(part, Pipeline):
            stages.extend(part.stages)
        elif isinstance(part, Stage):
            stages.append(part)
        elif isinstance(part, (list, tuple)):  # Pipeline([a, b, c])
            stages.extend(_flatten(part))
        else:
            raise PipelineDefinitionError(
                f"a pipeline is made of tasks and pipelines, got {type(part).__name__}: {part!r}"
            )
    return stages


def _run_data(data: Any) -> Any:
    """What the run iterates: `data` itself when it is a collection or a source of items, else
    `data` as the one item (a str, bytes, tuple, mapping or any non-iterable value)."""
    if data is NO_DATA:
        return (None,)  # one call of the first task, which gets no item (see Task.for_run)
    if isinstance(data, (str, bytes, bytearray, memoryview, tuple, MappingABC)):
        return (data,)
    if isinstance(data, (Iterable, AsyncIterable)):
        return data
    return (data,)


def _stages_for_run(
    stages: list[Stage[Any, Any]], no_data: bool, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[Stage[Any, Any]]:
    """The stages as one run uses them: a user's `BaseTask` as a stream stage, and the first
    task in a copy of its own when this run calls it without an item or with extra arguments."""
    run_stages: list[Stage[Any, Any]] = [
        ProcessStage(stage) if _runs_own_process(stage) else stage for stage in stages
    ]
    if not (no_data or args or kwargs):
        return run_stages
    first = run_stages[0] if run_stages else None
    if not isinstance(first, Task):
        if no_data:
            what = "an empty pipeline" if first is None else f"{first.kind} stage {first.name}"
            raise InvalidRunError(f"{what} comes first: call the pipeline with data")
        raise InvalidRunError("extra arguments go to a first stage that is a task: there is none")
    run_stages[0] = first.for_run(args, kwargs, without_item=no_data)
    return run_stages


def _runs_own_process(stage: Stage[Any, Any]) -> TypeGuard[BaseTask[Any, Any]]:
    """A user's BaseTask subclass, or a task subclass that overrides process(): the run calls
    its process() on the stage's items, as 1.2.1 did."""
    if isinstance(stage, Task):
        return type(stage).process is not Task.process and not stage._engine_process
    return isinstance(stage, BaseTask)


async def _aclose(obj: object) -> None:
    close = getattr(obj, "aclose", None)
    if close is not None:
        await close()
