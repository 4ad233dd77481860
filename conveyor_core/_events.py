"""The events of a run: what `Pipeline.events()` yields and the service puts on the wire.

A run yields `ResultEvent`s and `ItemErrorEvent`s while it goes, then, when it fails, one
`RunErrorEvent`, and always last one `EndEvent`. `seq` counts 0, 1, 2, ... per run with no gaps.
`to_dict()` gives the JSON object of DESIGN.md without its `type`; the wire encoders add it.
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
    "describe_error",
]

ErrorAction = Literal["skip_item", "skip_batch", "handled"]
RunStatus = Literal["succeeded", "failed", "cancelled"]


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


@dataclass(frozen=True, slots=True)
class ResultEvent:
    """A value the pipeline produced, with the input positions it came from."""

    type: ClassVar[str] = "result"
    seq: int
    value: Any
    sources: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "value": self.value, "sources": self.sources}


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class RunErrorEvent:
    """The run failed in `stage` (None: outside any stage, e.g. in the source)."""

    type: ClassVar[str] = "error"
    seq: int
    stage: str | None
    error: str
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "stage": self.stage, "error": self.error}


@dataclass(frozen=True, slots=True)
class EndEvent:
    """The last event of every run that finished, failed or was cancelled."""

    type: ClassVar[str] = "end"
    seq: int
    status: RunStatus
    stats: RunStats

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "status": self.status, "stats": self.stats.to_dict()}


Event = ResultEvent | ItemErrorEvent | RunErrorEvent | EndEvent
