"""Exceptions of conveyor_core.

    ConveyorError               base of every error this project raises itself
    ├── PipelineDefinitionError a task or pipeline declared or composed wrongly (a TypeError)
    ├── InvalidRunError         a run started with bad arguments (a ValueError)
    ├── StreamConsumedError     an AsyncStream iterated a second time (a RuntimeError)
    └── WorkerLost              the worker running a call (a process, a Ray actor) died during it

The client (`conveyor_core.client`) adds its own errors under `ConveyorError`.

An exception raised inside a task is never wrapped: under `on_error="fail"` it reaches the
consumer of the run as itself.
"""

from __future__ import annotations

__all__ = [
    "ConveyorError",
    "InvalidRunError",
    "PipelineDefinitionError",
    "StreamConsumedError",
    "WorkerLost",
]


class ConveyorError(Exception):
    """Base class of the errors raised by conveyor_core itself."""


class PipelineDefinitionError(ConveyorError, TypeError):
    """Raised when a task is declared with invalid options or composed with a non-stage."""


class InvalidRunError(ConveyorError, ValueError):
    """Raised when a run is started with an unknown mode or an unusable bound."""


class StreamConsumedError(ConveyorError, RuntimeError):
    """Raised when an `AsyncStream` is iterated again: a stream runs its pipeline once."""


class WorkerLost(ConveyorError):
    """Raised in place of a call's result when the worker running it elsewhere (a process of a
    pool, a Ray actor or task) died before the call ended. It names the stage; the task's retry
    policy retries it like any error, on a live or replaced worker."""
