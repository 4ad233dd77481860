"""Streaming asyncio pipelines of single and batch tasks."""

import logging as _logging

from ._base_task import BaseTask
from ._context import (
    ContextManager,
    ExecutionMode,
    PipelineContext,
    get_current_context,
    set_current_context,
    with_context,
)
from ._decorators import batch_task, single_task
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
    StageEvent,
    describe_error,
)
from ._executors import CallTarget, Executor, ThreadExecutor
from ._pipeline import AsyncStream, Pipeline, RunEvents, as_pipeline
from ._policy import ErrorAction, ErrorHandler, LoggingErrorHandler, RetryConfig
from ._process import ProcessExecutor
from ._run import DEFAULT_MAX_IN_FLIGHT
from ._stage import Stage, StreamItemError, StreamTask
from ._tasks import BatchTask, SingleTask, Task

# a library logs, the application decides what is shown: nothing unless logging is configured
_logging.getLogger("conveyor_core").addHandler(_logging.NullHandler())

__all__ = [
    "AsyncStream",
    "BaseTask",
    "BatchTask",
    "CallTarget",
    "ContextManager",
    "ConveyorError",
    "DEFAULT_MAX_IN_FLIGHT",
    "EndEvent",
    "ErrorAction",
    "ErrorHandler",
    "Event",
    "ExecutionMode",
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
    "RunEvents",
    "RunStats",
    "SingleTask",
    "Stage",
    "StageEvent",
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
    "set_current_context",
    "single_task",
    "with_context",
]
