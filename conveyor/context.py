"""conveyor-streaming 1.2.1's `conveyor.context`."""

from conveyor_core import (
    ContextManager,
    ExecutionMode,
    PipelineContext,
    get_current_context,
    set_current_context,
    with_context,
)

__all__ = [
    "ContextManager",
    "ExecutionMode",
    "PipelineContext",
    "get_current_context",
    "set_current_context",
    "with_context",
]
