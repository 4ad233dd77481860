"""What every stage shares: composition with `|` and running on data."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeAlias, TypeVar

if TYPE_CHECKING:
    from ._events import StageEvent
    from ._pipeline import AsyncStream, Pipeline, RunEvents

__all__ = ["NO_DATA", "Data", "In", "Out", "Runnable", "Stage", "StreamItemError", "StreamTask"]

In = TypeVar("In", contravariant=True)  # what a stage takes
Out = TypeVar("Out", covariant=True)  # what it yields
T = TypeVar("T")

Data: TypeAlias = Iterable[T] | AsyncIterable[T] | T
"""What a run takes: an iterable or async iterable of items, or one item (str, tuple, dict...)."""


class _NoData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_DATA"


NO_DATA: Any = _NoData()
"""Stands for "no data given": `pipeline()` calls its first stage once, with no item."""


class Runnable(Generic[In, Out]):
    """Composes with `|` (nothing runs) and runs when called on data."""

    def as_pipeline(self) -> Pipeline[In, Out]:
        raise NotImplementedError

    def __or__(self, other: Runnable[Out, T]) -> Pipeline[In, T]:
        from ._pipeline import Pipeline

        if not isinstance(other, Runnable):
            return NotImplemented
        if isinstance(other, Pipeline):  # task | pipeline: the pipeline's context carries on
            return other._derive(stages=[self, *other.stages])  # type: ignore[list-item]
        return Pipeline(self, other)

    def __call__(
        self,
        data: Data[In] = NO_DATA,
        *args: Any,
        mode: str | None = None,
        max_in_flight: int | None = None,
        **kwargs: Any,
    ) -> AsyncStream[Out]:
        """A stream of the results on `data` (it runs when iterated); see `Pipeline.__call__`."""
        return self.as_pipeline()(data, *args, mode=mode, max_in_flight=max_in_flight, **kwargs)

    def as_completed(
        self, data: Data[In] = NO_DATA, *args: Any, max_in_flight: int | None = None, **kwargs: Any
    ) -> AsyncStream[Out]:
        """Run on `data`, yielding results in completion order."""
        return self.as_pipeline().as_completed(data, *args, max_in_flight=max_in_flight, **kwargs)

    def with_execution_mode(self, mode: str) -> Pipeline[In, Out]:
        """A pipeline of this that runs in `mode` ("ordered" or "as_completed") by default."""
        return self.as_pipeline().with_execution_mode(mode)

    def with_context(self, **fields: Any) -> Pipeline[In, Out]:
        """A pipeline of this whose runs start from a copy of its context with `fields` set."""
        return self.as_pipeline().with_context(**fields)

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
        """Run on `data`, yielding the run's events (see `Pipeline.events`)."""
        return self.as_pipeline().events(
            data,
            mode=mode,
            max_in_flight=max_in_flight,
            trace=trace,
            on_call=on_call,
            stage_timer=stage_timer,
        )


class Stage(Runnable[In, Out]):
    """One step of a pipeline: a single task, a batch task or a stream task."""

    kind: ClassVar[str]
    name: str

    def as_pipeline(self) -> Pipeline[In, Out]:
        from ._pipeline import Pipeline

        return Pipeline(self)

    @property
    def input_type(self) -> Any:
        return Any

    @property
    def output_type(self) -> Any:
        return Any

    @property
    def description(self) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class StreamItemError:
    """Yielded by a `StreamTask` instead of a result: items it skipped, and why.

    The run reports it as an `item_error` event (and counts it as skipped unless "handled").
    """

    positions: list[int]
    error: str  # "ValueError: the message"
    action: Literal["skip_item", "skip_batch", "handled"] = "skip_item"
    stage: str | None = field(default=None)  # the inner stage that failed, if known


class StreamTask(Stage[Any, Any]):
    """A stage that turns the whole stream of its items into a stream of results.

    Subclasses implement `process_stream`, an async generator that receives the stage's items as
    they arrive and yields `(value, positions)`: `positions` are 0-based indices into the items
    this stage received, from which the engine derives each result's `sources`. It may also
    yield a `StreamItemError` for items it skipped. The run's mode ("ordered" or
    "as_completed") is passed along. Errors it raises fail the run.
    """

    kind: ClassVar[str] = "stream"

    def __init__(self, name: str) -> None:
        self.name = name

    def process_stream(
        self, items: AsyncIterator[Any], mode: str
    ) -> AsyncIterator[tuple[Any, list[int]] | StreamItemError]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
