"""Liveness and readiness: open to all, even with API keys set; GET or HEAD.

An unavailable store is said to be so, and no more: why (a Redis URL holds its user, host, port
and database) goes to the log, and to a caller with a valid API key.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..deps import ServicesDep, key_matches

router = APIRouter(tags=["health"])
log = logging.getLogger("conveyor.service.http")

PING_TIMEOUT_S = 2.0


@router.get("/healthz")
@router.head("/healthz", include_in_schema=False)  # what load balancers and probes often send
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "the job store cannot be reached"}})
@router.head("/readyz", include_in_schema=False)
async def readyz(request: Request, services: ServicesDep) -> JSONResponse:
    """Readiness: the job store answers."""
    store = type(services.store).__name__
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            await services.store.ping()
    except Exception as exc:
        reason = "no answer within 2 s" if isinstance(exc, TimeoutError) else str(exc)
        reason = reason or type(exc).__name__
        log.warning("not ready: job store unavailable: %s", reason)
        detail = "job store unavailable"
        if _authenticated(request, services.settings.api_keys):
            detail += f": {reason}"
        return JSONResponse({"status": "unavailable", "store": store, "detail": detail}, 503)
    return JSONResponse({"status": "ready", "store": store})


def _authenticated(request: Request, keys: list[str]) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return bool(keys) and scheme.lower() == "bearer" and key_matches(keys, token.strip())
