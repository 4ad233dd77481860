"""The context of the run in progress, visible to task code through `get_current_context()`."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PipelineContext", "get_current_context"]


@dataclass
class PipelineContext:
    """What a task can learn about the run it is part of.

    `data` is a scratch dictionary shared by every task call of the run.
    """

    run_id: str
    mode: str
    max_in_flight: int
    data: dict[str, Any] = field(default_factory=dict)


_current: ContextVar[PipelineContext | None] = ContextVar("conveyor_context", default=None)


def get_current_context() -> PipelineContext | None:
    """The context of the run whose task is calling, or None outside a run."""
    return _current.get()
