"""Streaming asyncio pipelines of single and batch tasks."""

from ._context import PipelineContext, get_current_context
from ._errors import (
    ConveyorError,
    InvalidRunError,
    PipelineDefinitionError,
    StreamConsumedError,
    WorkerLost,
)
from ._events import (
    EndEvent,
    Event,
    ItemErrorEvent,
    ResultEvent,
    RunErrorEvent,
    RunStats,
    describe_error,
)
from ._executors import CallTarget, Executor, ThreadExecutor
from ._pipeline import AsyncStream, Pipeline, as_pipeline
from ._policy import ErrorHandler, LoggingErrorHandler, RetryConfig
from ._process import ProcessExecutor
from ._run import DEFAULT_MAX_IN_FLIGHT
from ._stage import Stage, StreamItemError, StreamTask
from ._tasks import BatchTask, SingleTask, Task, batch_task, single_task

__all__ = [
    "AsyncStream",
    "BatchTask",
    "CallTarget",
    "ConveyorError",
    "DEFAULT_MAX_IN_FLIGHT",
    "EndEvent",
    "ErrorHandler",
    "Event",
    "Executor",
    "InvalidRunError",
    "ItemErrorEvent",
    "LoggingErrorHandler",
    "Pipeline",
    "PipelineContext",
    "PipelineDefinitionError",
    "ProcessExecutor",
    "ResultEvent",
    "RetryConfig",
    "RunErrorEvent",
    "RunStats",
    "SingleTask",
    "Stage",
    "StreamConsumedError",
    "StreamItemError",
    "StreamTask",
    "Task",
    "ThreadExecutor",
    "WorkerLost",
    "as_pipeline",
    "batch_task",
    "describe_error",
    "get_current_context",
    "single_task",
]
