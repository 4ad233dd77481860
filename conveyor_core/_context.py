"""The context of the run in progress, visible to task code through `get_current_context()`.

A pipeline holds a template context (`Pipeline(context)`, `pipeline.with_context(...)`); every
run starts from a copy of it with a fresh `pipeline_id`, the run's mode and bound. Inside a task,
`get_current_context()` returns that run's context. `set_current_context`, `ContextManager` and
`with_context` set the same context variable by hand, as conveyor-streaming 1.2.1 did.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar

__all__ = [
    "ContextManager",
    "ExecutionMode",
    "PipelineContext",
    "get_current_context",
    "run_context",
    "set_current_context",
    "with_context",
]

T = TypeVar("T")

ExecutionMode = Literal["ordered", "as_completed"]


@dataclass
class PipelineContext:
    """What a task can learn about the run it is part of, and data its calls share.

    `execution_mode` is "ordered" or "as_completed"; `max_parallelism` the bound on input items
    in flight (None: the default bound); `pipeline_id` a fresh `str(uuid4())` per run; `data` a
    dictionary shared by every task call of the run (each run starts from a copy of the
    pipeline's). `mode`, `max_in_flight` and `run_id` are other names of the first three.
    """

    execution_mode: ExecutionMode = "ordered"
    max_parallelism: int | None = None
    pipeline_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def copy(self) -> PipelineContext:
        """A copy whose `data` is a new dictionary with the same entries."""
        return PipelineContext(
            self.execution_mode, self.max_parallelism, self.pipeline_id, dict(self.data)
        )

    @property
    def mode(self) -> ExecutionMode:
        return self.execution_mode

    @mode.setter
    def mode(self, value: ExecutionMode) -> None:
        self.execution_mode = value

    @property
    def max_in_flight(self) -> int | None:
        return self.max_parallelism

    @max_in_flight.setter
    def max_in_flight(self, value: int | None) -> None:
        self.max_parallelism = value

    @property
    def run_id(self) -> str | None:
        return self.pipeline_id

    @run_id.setter
    def run_id(self, value: str | None) -> None:
        self.pipeline_id = value


_current: ContextVar[PipelineContext | None] = ContextVar("conveyor_context", default=None)


def run_context(
    template: PipelineContext | None, mode: ExecutionMode, max_in_flight: int
) -> PipelineContext:
    """The context of a new run: a copy of `template` with a fresh id, the run's mode and bound."""
    context = template.copy() if template is not None else PipelineContext()
    context.pipeline_id = str(uuid.uuid4())
    context.execution_mode = mode
    context.max_parallelism = max_in_flight
    return context


def get_current_context() -> PipelineContext | None:
    """The context of the run whose task is calling (or the one set by hand), else None."""
    return _current.get()


def set_current_context(context: PipelineContext | None) -> None:
    """Make `context` the current one in this task (and the tasks it starts from now on)."""
    _current.set(context)


class ContextManager:
    """`with ContextManager(ctx):` makes `ctx` current inside the block, then restores."""

    def __init__(self, context: PipelineContext) -> None:
        self.context = context
        self.previous_context: PipelineContext | None = None

    def __enter__(self) -> PipelineContext:
        self.previous_context = _current.get()
        _current.set(self.context)
        return self.context

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _current.set(self.previous_context)


async def with_context(context: PipelineContext, coro: Awaitable[T]) -> T:
    """Await `coro` with `context` current."""
    with ContextManager(context):
        return await coro
