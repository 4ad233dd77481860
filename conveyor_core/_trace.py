"""Tracing: the calls of a run timed and reported as `StageEvent`s.

Only a run that is traced (`events(data, trace=True)`: stage events on the event stream) or
observed (`on_call=`, `stage_timer=`: told of every call) has a `Tracer`; the others take the
untimed fast path. In a traced run every value carries a `Tag`: the calls that produced it and
the time it was ready, which become the next call's `inputs` and `queued_s`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._events import StageEvent, describe_error

__all__ = ["CallTrace", "OnCall", "Tag", "Tracer"]

OnCall = Callable[[StageEvent], None]


class Tag:
    """Where a value of a traced run comes from."""

    __slots__ = ("calls", "ready")

    def __init__(self, calls: tuple[int, ...], ready: float) -> None:
        self.calls = calls  # the calls whose results it is (none: an input item)
        self.ready = ready  # when it was ready for the next call, on the run's clock


class Tracer:
    """Numbers, times and reports the calls of one run."""

    __slots__ = ("clock", "_started", "_put", "_on_call", "_next_call")

    def __init__(
        self,
        clock: Callable[[], float],
        started: float,
        put: Callable[[StageEvent], None] | None,
        on_call: OnCall | None,
    ) -> None:
        self.clock = clock
        self._started = started
        self._put = put  # the event channel, when the run is traced
        self._on_call = on_call
        self._next_call = 0

    def tag(self) -> Tag:
        """The tag of an input item admitted now."""
        return Tag((), self.clock())

    def call(
        self, stage: str, kind: str, size: int, tags: list[Any], ready: float | None = None
    ) -> CallTrace:
        """A call about to start on inputs tagged `tags`, ready at `ready` (a batch: when it
        was released; else when its last input was)."""
        calls = tuple(call for tag in tags if tag is not None for call in tag.calls)
        if ready is None:
            ready = max((tag.ready for tag in tags if tag is not None), default=self.clock())
        return CallTrace(self, stage, kind, size, ready, calls)

    def reserve(self) -> int:
        call = self._next_call
        self._next_call = call + 1
        return call

    def record(self, event: StageEvent) -> None:
        started = self._started
        event.queued_s -= started
        event.started_s -= started
        event.ended_s -= started
        if self._on_call is not None:
            self._on_call(event)
        if self._put is not None:
            self._put(event)


class CallTrace:
    """One call of a traced run, told of each of its attempts (an `_policy.Observer`)."""

    __slots__ = (
        "_tracer",
        "stage",
        "kind",
        "size",
        "queued",
        "inputs",
        "current",
        "ended",
        "_last",
    )

    def __init__(
        self,
        tracer: Tracer,
        stage: str,
        kind: str,
        size: int,
        queued: float,
        inputs: tuple[int, ...],
    ) -> None:
        self._tracer = tracer
        self.stage = stage
        self.kind = kind
        self.size = size
        self.queued = queued
        self.inputs = inputs
        self.current = tracer.reserve()  # the number of the attempt in progress
        self.ended = queued
        self._last: int | None = None  # the number of the last attempt that ended

    def __call__(
        self,
        sources: list[int],
        attempt: int,
        started: float,
        ended: float,
        outcome: str,
        error: BaseException | None,
    ) -> None:
        event = StageEvent(
            -1,
            self.stage,
            self.kind,
            sources,
            attempt,
            self.queued,
            started,
            ended,
            outcome,  # type: ignore[arg-type]
            self.current,
            self.inputs,
            None if error is None else describe_error(error),
            self.size,
        )
        self._tracer.record(event)
        self.queued = self.ended = ended  # a retry's input was ready when this attempt ended
        self._last = self.current
        self.current = self._tracer.reserve()

    def output(self) -> Tag:
        """The tag of a value this call produced (a generator: the attempt in progress)."""
        return Tag((self._last if self._last is not None else self.current,), self.ended)

    def streamed(self) -> Tag:
        """The tag of a value a generator call yields now."""
        return Tag((self.current,), self._tracer.clock())
