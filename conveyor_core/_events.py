"""The events of a run: what `Pipeline.events()` yields and the service puts on the wire.

A run yields `ResultEvent`s and `ItemErrorEvent`s while it goes (and, traced, a `StageEvent` for
every call of every stage), then, when it fails, one `RunErrorEvent`, and always last one
`EndEvent`. `seq` counts 0, 1, 2, ... per run with no gaps. `to_dict()` gives the JSON object of
DESIGN.md without its `type`; the wire encoders add it.

Events are plain slotted classes (not frozen: a frozen dataclass costs three times as much to
build, and a run builds one per result); treat them as read-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

__all__ = [
    "EndEvent",
    "Event",
    "ItemErrorEvent",
    "ResultEvent",
    "RunErrorEvent",
    "RunStats",
    "StageEvent",
    "describe_error",
]

ErrorAction = Literal["skip_item", "skip_batch", "handled"]
RunStatus = Literal["succeeded", "failed", "cancelled"]
StageOutcome = Literal["ok", "retry", "error", "skipped", "cancelled"]


def describe_error(exc: BaseException) -> str:
    """`"ValueError: the message"`, the form errors take on the wire."""
    try:
        message = str(exc)
    except Exception:  # an exception whose __str__ fails still gets described
        message = "<unprintable message>"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@dataclass(slots=True)
class RunStats:
    """Counts of one run, reported by its `EndEvent`."""

    inputs: int = 0  # items pulled from the source
    results: int = 0  # values yielded to the consumer
    skipped: int = 0  # items or batches dropped by on_error="skip_item" / "skip_batch"
    dropped: int = 0  # remainder items below a batch task's min_size
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "results": self.results,
            "skipped": self.skipped,
            "dropped": self.dropped,
            "elapsed_s": round(self.elapsed_s, 6),
        }


@dataclass(slots=True)
class ResultEvent:
    """A value the pipeline produced, with the input positions it came from."""

    type: ClassVar[str] = "result"
    seq: int
    value: Any
    sources: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "value": self.value, "sources": self.sources}


@dataclass(slots=True)
class ItemErrorEvent:
    """An item or batch failed in `stage`; the run went on (`action` says how)."""

    type: ClassVar[str] = "item_error"
    seq: int
    stage: str
    sources: list[int]
    error: str
    action: ErrorAction
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "stage": self.stage,
            "sources": self.sources,
            "error": self.error,
            "action": self.action,
        }


@dataclass(slots=True)
class RunErrorEvent:
    """The run failed in `stage` (None: outside any stage, e.g. in the source)."""

    type: ClassVar[str] = "error"
    seq: int
    stage: str | None
    error: str
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "stage": self.stage, "error": self.error}


@dataclass(slots=True)
class EndEvent:
    """The last event of every run that finished, failed or was cancelled."""

    type: ClassVar[str] = "end"
    seq: int
    status: RunStatus
    stats: RunStats

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "status": self.status, "stats": self.stats.to_dict()}


@dataclass(slots=True)
class StageEvent:
    """One call of one stage, reported by a traced run (`events(data, trace=True)`).

    Times are seconds since the run started: `queued_s` when the call's input was ready,
    `started_s` and `ended_s` when the call began and ended. A retried call gives one event per
    attempt (`outcome` "retry" for all but the last). `call` numbers the run's calls and
    `inputs` are the calls whose results this call took (a batch: one per member; the first
    stage: none), for tracers that link calls (OpenTelemetry); `error` is the failed attempt's
    error and `size` the number of items the call took. These four are not on the wire.
    """

    type: ClassVar[str] = "stage"
    seq: int
    stage: str
    kind: str
    sources: list[int]
    attempt: int
    queued_s: float
    started_s: float
    ended_s: float
    outcome: StageOutcome
    call: int = field(default=0, compare=False)
    inputs: tuple[int, ...] = field(default=(), compare=False)
    error: str | None = field(default=None, compare=False)
    size: int = field(default=1, compare=False)  # items in the call: a batch's length

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "stage": self.stage,
            "kind": self.kind,
            "sources": self.sources,
            "attempt": self.attempt,
            "queued_s": round(self.queued_s, 6),
            "started_s": round(self.started_s, 6),
            "ended_s": round(self.ended_s, 6),
            "outcome": self.outcome,
        }


Event = ResultEvent | ItemErrorEvent | RunErrorEvent | EndEvent | StageEvent
