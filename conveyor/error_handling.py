"""conveyor-streaming 1.2.1's `conveyor.error_handling`."""

from conveyor_core import ErrorAction, ErrorHandler, LoggingErrorHandler, RetryConfig

__all__ = ["ErrorAction", "ErrorHandler", "LoggingErrorHandler", "RetryConfig"]
