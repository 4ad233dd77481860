"""Dependencies of the routes, as `Annotated` aliases: the app's services, the API key check,
the pipeline named in the path, the run request body and its items."""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPBearer
from starlette.requests import ClientDisconnect

from ..core.config import Settings
from ..errors import BodyTimeout, BodyTooLarge, ClientLeft, TooManyItems, Unauthorized
from ..jobs import JobRunner, JobStore
from ..metrics import Metrics
from ..pipelines import PipelineEntry, Registry
from ..telemetry import Tracing
from .body import parse_run_body
from .models import Mode, RunRequest

__all__ = [
    "ApiKey",
    "EntryDep",
    "ModeQuery",
    "RunRequestDep",
    "Services",
    "ServicesDep",
    "TraceQuery",
    "key_matches",
    "services_of",
    "validated_items",
]


@dataclass(frozen=True, slots=True)
class Services:
    """What `create_app` builds once and every request uses."""

    settings: Settings
    registry: Registry
    store: JobStore
    runner: JobRunner
    metrics: Metrics
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the service begins to shut down: runs and streams end (see app.streaming)."""
    tracing: Tracing | None = None
    """OpenTelemetry, when the OTEL_* variables ask for it (app.telemetry)."""


# Every dependency here is `async def`: FastAPI runs a plain `def` one in its worker threads, a
# thread hop per dependency and request. Each is also one node of FastAPI's dependency graph, so
# they take what they need from the request rather than from one another.


def services_of(request: Request) -> Services:
    """What `create_app` built, from the request's app."""
    services: Services = request.app.state.services
    return services


async def get_services(request: Request) -> Services:
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]


class ApiKeyBearer(HTTPBearer):
    """401 unless the request carries `Authorization: Bearer <key>` (when keys are set).

    FastAPI's `HTTPBearer`, so that OpenAPI declares the scheme, with the check in its own call:
    one dependency instead of the scheme, the services and the check."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        keys = services_of(request).settings.api_keys
        if not keys:
            return
        credentials = await super().__call__(request)
        if not key_matches(keys, credentials.credentials if credentials else ""):
            raise Unauthorized("missing or invalid API key: send Authorization: Bearer <key>")


def key_matches(keys: list[str], given: str) -> bool:
    """True when `given` is one of `keys` (compared in constant time)."""
    data = given.encode()
    return any(hmac.compare_digest(data, key.encode()) for key in keys)


ApiKey = Depends(
    ApiKeyBearer(
        auto_error=False,
        scheme_name="HTTPBearer",
        description="one of CONVEYOR_API_KEYS, when it is set",
    )
)


async def get_entry(
    request: Request,
    name: Annotated[str, Path(description="a registered pipeline (GET /pipelines)")],
) -> PipelineEntry:
    """The pipeline named in the path, or 404."""
    return services_of(request).registry.entry(name)


EntryDep = Annotated[PipelineEntry, Depends(get_entry)]

TraceQuery = Annotated[
    bool,
    Query(description='true: add a `stage` event for every call (or "trace": true in the body)'),
]

ModeQuery = Annotated[
    Mode | None,
    Query(description="ordered (default) or as_completed; a body's mode takes precedence"),
]


async def read_body(request: Request, limit: int, timeout_s: float = 60.0) -> bytearray:
    """The request body, refused (413) past `limit` bytes: at once when its Content-Length says
    so, else as soon as that many bytes have arrived (nothing more is read); and refused (408)
    when it has not all arrived within `timeout_s`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()  # grown in place: no copy of the whole body at the end
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                body += chunk
    except TimeoutError:
        raise BodyTimeout(
            f"the request body did not arrive within {timeout_s}s (CONVEYOR_BODY_TIMEOUT_S): "
            f"{size} bytes came"
        ) from None
    except ClientDisconnect:
        raise ClientLeft(f"the client left after {size} bytes of its request body") from None
    return body


def _too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(
        f"the request body is larger than {limit} bytes (CONVEYOR_MAX_BODY_BYTES)", limit=limit
    )


async def get_run_request(request: Request) -> RunRequest:
    """The JSON body `{"items": [...], "mode": ...}`, whatever its Content-Type says."""
    settings = services_of(request).settings
    body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
    return await parse_run_body(
        body, max_items=settings.max_items, max_item_bytes=settings.max_item_bytes
    )


RunRequestDep = Annotated[RunRequest, Depends(get_run_request)]


async def validated_items(entry: PipelineEntry, items: list[Any], settings: Settings) -> list[Any]:
    """The items as the pipeline takes them: 413 over the limit, 422 off the schema."""
    if len(items) > settings.max_items:
        raise TooManyItems(
            f"{len(items)} items; the limit is {settings.max_items} per request",
            limit=settings.max_items,
        )
    return await entry.input.validate_many(items)
