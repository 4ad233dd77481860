"""How errors become responses: `{"detail": ...}` bodies, never a bare 500 page.

A bug (any other exception) is answered by `RequestContext` (app.core.logging), inside the
request's context, with `internal_error`: a 500 with the request id in body and header.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..core.logging import request_id
from ..errors import ServiceError, TooManyJobs
from ..jobs.store import JobLimitReached, StoreUnavailable

__all__ = ["install_error_handlers", "internal_error"]

log = logging.getLogger("conveyor.service.http")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(JobLimitReached, _job_limit)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)


async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    return JSONResponse(exc.body(), exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    where = ", ".join(".".join(map(str, e["loc"])) for e in errors[:5])
    return JSONResponse({"detail": f"invalid request: {where}", "errors": errors}, 422)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"job store unavailable: {exc}"}, 503)


async def _job_limit(request: Request, exc: JobLimitReached) -> JSONResponse:
    error = TooManyJobs(f"too many running jobs: {exc}; retry later", limit=exc.limit)
    return JSONResponse(error.body(), error.status_code, headers=error.headers)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    body: dict[str, Any] = {"detail": exc.detail}
    return JSONResponse(body, exc.status_code, headers=exc.headers)


def internal_error(rid: str | None) -> JSONResponse:
    """The answer to a bug: a 500 with the request id (`RequestContext` sends it, and adds the
    `X-Request-ID` header as to every response)."""
    return JSONResponse({"detail": "internal error", "request_id": rid}, 500)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """Only what escapes `RequestContext` itself reaches this (it answers the rest)."""
    log.error("unexpected error", exc_info=exc)
    return internal_error(request_id.get())
