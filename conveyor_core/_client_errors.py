"""The errors `conveyor_core.client` raises.

```
ConveyorError                    conveyor_core's base error
 ├── ServiceError                the service answered with an error status (.status, .message)
 │    ├── UnauthorizedError      401: no API key, or a wrong one
 │    ├── NotFoundError          404: unknown pipeline or job
 │    ├── PayloadTooLargeError   413: more items than the service accepts in one request
 │    ├── InvalidInputError      422: malformed body, or items that fail the input schema
 │    └── TooManyJobsError       429: too many running jobs (.retry_after)
 ├── ServiceConnectionError      the service is unreachable, or a stream broke before its `end`
 └── RemoteRunError              a remote run failed: its `error` event (.stage, .error)
```
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from conveyor_core._errors import ConveyorError

__all__ = [
    "InvalidInputError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RemoteRunError",
    "ServiceConnectionError",
    "ServiceError",
    "TooManyJobsError",
    "UnauthorizedError",
    "error_from_response",
]


class ServiceError(ConveyorError):
    """Raised when the service answers with an error status; subclasses name the common ones."""

    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.detail = detail  # the body's `detail` as the service sent it (str, list or dict)


class UnauthorizedError(ServiceError):
    """Raised on 401: the service has API keys and the request carried none or a wrong one."""


class NotFoundError(ServiceError):
    """Raised on 404: the pipeline or the job does not exist (or the job has expired)."""


class PayloadTooLargeError(ServiceError):
    """Raised on 413: the request holds more items than the service's limit."""


class InvalidInputError(ServiceError):
    """Raised on 422: a malformed body, or items that fail the pipeline's input schema."""


class TooManyJobsError(ServiceError):
    """Raised on 429: the service runs as many jobs as it may; retry after `retry_after` s."""

    def __init__(
        self, status: int, message: str, detail: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(status, message, detail)
        self.retry_after = retry_after


class ServiceConnectionError(ConveyorError):
    """Raised when the service cannot be reached, or a stream ends before its `end` event
    (for a job's events, only once the reconnection attempts are spent)."""


class RemoteRunError(ConveyorError):
    """Raised when a remote run fails: carries its `error` event's `stage` and `error`."""

    def __init__(self, stage: str | None, error: str, pipeline: str | None = None) -> None:
        where = f" in stage {stage!r}" if stage else ""
        of = f"{pipeline!r} " if pipeline else ""
        super().__init__(f"remote run {of}failed{where}: {error}")
        self.stage = stage
        self.error = error  # "ValueError: the message", as the service reported it
        self.pipeline = pipeline


_BY_STATUS: dict[int, type[ServiceError]] = {
    401: UnauthorizedError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    422: InvalidInputError,
}


def error_from_response(status: int, headers: Mapping[str, str], body: bytes) -> ServiceError:
    """The typed error for an error response (`headers` keys lower-case or case-insensitive)."""
    detail: Any
    try:
        payload = json.loads(body)
        detail = payload.get("detail", payload) if isinstance(payload, dict) else payload
    except ValueError:
        detail = body.decode("utf-8", "replace").strip()
    message = detail if isinstance(detail, str) else json.dumps(detail)
    if status == 429:
        return TooManyJobsError(status, message, detail, _seconds(headers.get("retry-after")))
    return _BY_STATUS.get(status, ServiceError)(status, message, detail)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
