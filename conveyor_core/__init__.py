"""Streaming asyncio pipelines of single and batch tasks."""

from ._context import PipelineContext, get_current_context
from ._errors import (
    ConveyorError,
    InvalidRunError,
    PipelineDefinitionError,
    StreamConsumedError,
)
from ._events import (
    EndEvent,
    Event,
    ItemErrorEvent,
    ResultEvent,
    RunErrorEvent,
    RunStats,
    StageEvent,
    describe_error,
)
from ._pipeline import AsyncStream, Pipeline, RunEvents, as_pipeline
from ._policy import ErrorHandler, LoggingErrorHandler, RetryConfig
from ._run import DEFAULT_MAX_IN_FLIGHT
from ._stage import Stage, StreamItemError, StreamTask
from ._tasks import BatchTask, SingleTask, Task, batch_task, single_task

__all__ = [
    "AsyncStream",
    "BatchTask",
    "ConveyorError",
    "DEFAULT_MAX_IN_FLIGHT",
    "EndEvent",
    "ErrorHandler",
    "Event",
    "InvalidRunError",
    "ItemErrorEvent",
    "LoggingErrorHandler",
    "Pipeline",
    "PipelineContext",
    "PipelineDefinitionError",
    "ResultEvent",
    "RetryConfig",
    "RunErrorEvent",
    "RunEvents",
    "RunStats",
    "SingleTask",
    "Stage",
    "StageEvent",
    "StreamConsumedError",
    "StreamItemError",
    "StreamTask",
    "Task",
    "as_pipeline",
    "batch_task",
    "describe_error",
    "get_current_context",
    "single_task",
]
