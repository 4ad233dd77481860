"""Pipelines (stages composed with `|`) and the streams a run produces."""

from __future__ import annotations

import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from ._errors import InvalidRunError, PipelineDefinitionError, StreamConsumedError
from ._events import Event, RunStats, StageEvent
from ._run import MODES, Run
from ._stage import Runnable, Stage

__all__ = ["AsyncStream", "Pipeline", "RunEvents", "as_pipeline"]


class Pipeline(Runnable):
    """Stages applied one after the other. `|` builds one; calling it on data runs it.

    `Pipeline()` with no stage passes items through. `mode` ("ordered", the default, or
    "as_completed") and `max_in_flight` (input items admitted and not yet delivered) are the
    defaults of its runs; `description` is shown by the service.
    """

    def __init__(
        self,
        *stages: Runnable,
        mode: str = "ordered",
        max_in_flight: int | None = None,
        description: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise InvalidRunError(f"mode must be 'ordered' or 'as_completed', got {mode!r}")
        self.stages: tuple[Stage, ...] = _flatten(stages)
        self.mode = mode
        self.max_in_flight = max_in_flight
        self._description = description

    def as_pipeline(self) -> Pipeline:
        return self

    def add(self, *stages: Runnable) -> Pipeline:
        """Append stages (tasks or pipelines) to this pipeline; returns it."""
        self.stages = self.stages + _flatten(stages)
        return self

    def __or__(self, other: object) -> Pipeline:
        if not isinstance(other, Runnable):
            return NotImplemented
        return self._derive(stages=self.stages + _flatten((other,)))

    def __ror__(self, other: object) -> Pipeline:
        if not isinstance(other, Runnable):
            return NotImplemented
        return self._derive(stages=_flatten((other,)) + self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    def __repr__(self) -> str:
        return "Pipeline(" + " | ".join(stage.name for stage in self.stages) + ")"

    def with_execution_mode(self, mode: str) -> Pipeline:
        return self._derive(mode=mode)

    def with_max_in_flight(self, max_in_flight: int | None) -> Pipeline:
        """A pipeline of this whose runs admit at most `max_in_flight` items by default."""
        return self._derive(max_in_flight=max_in_flight)

    def with_description(self, description: str) -> Pipeline:
        return self._derive(description=description)

    def _derive(self, **changes: Any) -> Pipeline:
        options: dict[str, Any] = {
            "mode": self.mode,
            "max_in_flight": self.max_in_flight,
            "description": self._description,
        }
        stages = changes.pop("stages", self.stages)
        options.update(changes)
        return Pipeline(*stages, **options)

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
        self, data: Any, *, mode: str | None = None, max_in_flight: int | None = None
    ) -> AsyncStream:
        """A stream of this pipeline's results on `data` (it runs when iterated)."""
        if max_in_flight is None:
            max_in_flight = self.max_in_flight
        return AsyncStream(self, data, mode or self.mode, max_in_flight)

    def as_completed(self, data: Any, *, max_in_flight: int | None = None) -> AsyncStream:
        return self(data, mode="as_completed", max_in_flight=max_in_flight)

    def events(
        self,
        data: Any,
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
    ) -> Run:
        return Run(
            self.stages,
            data,
            mode=mode or self.mode,
            max_in_flight=self.max_in_flight if max_in_flight is None else max_in_flight,
            stage_timer=stage_timer,
            trace=trace,
            on_call=on_call,
        )


class AsyncStream:
    """The results of one run: iterate it once (`async for`), or `await stream.collect()`.

    A failed run raises the task's own exception from the iteration. Leaving early cancels the
    run: `aclose()` or `async with` wait until its calls have ended; after a plain `break`, the
    run is cancelled as soon as the iteration is garbage collected (at once in CPython).
    """

    def __init__(self, pipeline: Pipeline, data: Any, mode: str, max_in_flight: int | None):
        self._run = pipeline._run(data, mode, max_in_flight)
        # weak: a `break` must let the iteration be collected, which cancels the run
        self._iterator: weakref.ref[AsyncGenerator[Any, None]] | None = None

    def __aiter__(self) -> AsyncIterator[Any]:
        if self._iterator is not None:
            raise StreamConsumedError("this stream was iterated already: call the pipeline again")
        iterator = self._run.values()
        self._iterator = weakref.ref(iterator)
        return iterator

    async def collect(self) -> list[Any]:
        """Run to the end and return every result."""
        return [value async for value in self]

    async def first(self) -> Any:
        """The first result (the run is then cancelled)."""
        iterator = aiter(self)
        try:
            return await anext(iterator)
        finally:
            await iterator.aclose()  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        """Stop the run if it is going on, and wait until its calls have ended."""
        await self._run.aclose()
        iterator = self._iterator() if self._iterator is not None else None
        if iterator is not None and not getattr(iterator, "ag_running", False):
            await iterator.aclose()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


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

    def cancel(self) -> None:
        self._run.cancel()

    @property
    def stats(self) -> RunStats:
        return self._run.stats

    @property
    def in_flight(self) -> int:
        return self._run.budget.in_flight


def as_pipeline(obj: Runnable) -> Pipeline:
    """`obj` as a Pipeline: a pipeline as it is, a task in a one-stage pipeline."""
    if not isinstance(obj, Runnable):
        raise PipelineDefinitionError(f"expected a task or a pipeline, got {obj!r}")
    return obj.as_pipeline()


def _flatten(parts: Iterable[Any]) -> tuple[Stage, ...]:
    stages: list[Stage] = []
    for part in parts:
        if isinstance(part, Pipeline):
            stages.extend(part.stages)
        elif isinstance(part, Stage):
            stages.append(part)
        else:
            raise PipelineDefinitionError(
                f"a pipeline is made of tasks and pipelines, got {type(part).__name__}: {part!r}"
            )
    return tuple(stages)
