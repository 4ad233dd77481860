"""A client of Conveyor services: `ConveyorClient`, its `Job` handles, `RemotePipeline`.

Needs the `client` extra (`pip install "conveyor-streaming-core[client]"`):

    async with ConveyorClient("http://127.0.0.1:8000", api_key="...") as client:
        async for value in client.stream("quickstart", [1, 2, 3, 4, 5, 6, 7]):
            print(value)

Errors of the service arrive as `ServiceError` subclasses; a failed run as `RemoteRunError`.
"""

from __future__ import annotations

try:  # the `client` extra: say which one is missing rather than fail deep inside an import
    import h11  # noqa: F401
    import httpx  # noqa: F401
except ImportError as exc:
    raise ModuleNotFoundError(
        f"conveyor_core.client needs the 'client' extra, which provides {exc.name or 'httpx'}: "
        'pip install "conveyor-streaming-core[client]"',
        name=exc.name,
    ) from exc

from conveyor_core._client import ConveyorClient, Job, JobPage, Mode
from conveyor_core._client_errors import (
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    RemoteRunError,
    ServiceConnectionError,
    ServiceError,
    TooManyJobsError,
    UnauthorizedError,
)
from conveyor_core._client_remote import RemotePipeline

__all__ = [
    "ConveyorClient",
    "InvalidInputError",
    "Job",
    "JobPage",
    "Mode",
    "NotFoundError",
    "PayloadTooLargeError",
    "RemotePipeline",
    "RemoteRunError",
    "ServiceConnectionError",
    "ServiceError",
    "TooManyJobsError",
    "UnauthorizedError",
]
