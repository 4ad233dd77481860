"""Errors the service answers with, and the JSON bodies they become.

    ServiceError (ConveyorError)        base: an HTTP status, a message, extra body fields
    ├── Unauthorized                    401: no or wrong `Authorization: Bearer <key>`
    ├── PipelineNotFound                404: no pipeline of that name
    ├── JobNotFound                     404: no such job, or it expired
    ├── TooManyItems                    413: more items than CONVEYOR_MAX_ITEMS
    ├── BodyTooLarge                    413: a JSON body over CONVEYOR_MAX_BODY_BYTES
    ├── ItemTooLarge                    413: an item over CONVEYOR_MAX_ITEM_BYTES
    ├── InvalidInput                    422: malformed JSON, a bad field, items off the schema
    ├── BodyTimeout                     408: a JSON body slower than CONVEYOR_BODY_TIMEOUT_S
    ├── ClientLeft                      499: the client left before its request body was read
    ├── TooManyJobs                     429: CONVEYOR_MAX_RUNNING_JOBS jobs run (Retry-After)
    └── Unavailable                     503: the job store cannot be reached
    RegistryError (ConveyorError)       startup: a pipelines module cannot be served

Every error body is `{"detail": "<message>", ...}`; 422 adds `errors` (and `positions`, the
0-based indices of the offending items, when items are at fault).
"""

from __future__ import annotations

from typing import Any

from conveyor_core import ConveyorError

__all__ = [
    "BodyTimeout",
    "BodyTooLarge",
    "ClientLeft",
    "InvalidInput",
    "ItemTooLarge",
    "JobNotFound",
    "PipelineNotFound",
    "RegistryError",
    "ServiceError",
    "TooManyItems",
    "TooManyJobs",
    "Unauthorized",
    "Unavailable",
]

RETRY_AFTER_S = 2  # what a 429 asks a client to wait, in seconds


class RegistryError(ConveyorError):
    """A pipelines module named by CONVEYOR_PIPELINES cannot be imported or served."""


class ServiceError(ConveyorError):
    """An error answered with `status_code` and a JSON body."""

    status_code = 500

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @property
    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, **self.extra}


class Unauthorized(ServiceError):
    """No valid API key in `Authorization: Bearer <key>`."""

    status_code = 401

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class PipelineNotFound(ServiceError):
    """No pipeline is registered under the name."""

    status_code = 404


class JobNotFound(ServiceError):
    """No job has the id, or it has expired."""

    status_code = 404


class TooManyItems(ServiceError):
    """The request carries more items than CONVEYOR_MAX_ITEMS."""

    status_code = 413


class BodyTooLarge(ServiceError):
    """The JSON request body is larger than CONVEYOR_MAX_BODY_BYTES."""

    status_code = 413


class ItemTooLarge(ServiceError):
    """An item of a JSON body is larger than CONVEYOR_MAX_ITEM_BYTES."""

    status_code = 413


class InvalidInput(ServiceError):
    """Malformed JSON, a bad field or parameter, or items that fail the input schema."""

    status_code = 422


class BodyTimeout(ServiceError):
    """The JSON request body did not arrive within CONVEYOR_BODY_TIMEOUT_S (a slow client)."""

    status_code = 408

    @property
    def headers(self) -> dict[str, str]:
        return {"Connection": "close"}


class ClientLeft(ServiceError):
    """The client closed the connection in the middle of its request body: nobody to answer.

    Not a server error: the request is logged (one info line) and counted with status 499, as
    nginx does, and the response goes nowhere.
    """

    status_code = 499


class TooManyJobs(ServiceError):
    """CONVEYOR_MAX_RUNNING_JOBS jobs are running already."""

    status_code = 429

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_S)}


class Unavailable(ServiceError):
    """The job store cannot be reached."""

    status_code = 503
