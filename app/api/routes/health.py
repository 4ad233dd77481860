"""Liveness and readiness: open to all, even with API keys set; GET or HEAD."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..deps import ServicesDep

router = APIRouter(tags=["health"])

PING_TIMEOUT_S = 2.0


@router.get("/healthz")
@router.head("/healthz", include_in_schema=False)  # what load balancers and probes often send
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "the job store cannot be reached"}})
@router.head("/readyz", include_in_schema=False)
async def readyz(services: ServicesDep) -> JSONResponse:
    """Readiness: the job store answers."""
    store = type(services.store).__name__
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            await services.store.ping()
    except Exception as exc:
        reason = "no answer within 2 s" if isinstance(exc, TimeoutError) else str(exc)
        detail = f"job store unavailable: {reason or type(exc).__name__}"
        return JSONResponse({"status": "unavailable", "store": store, "detail": detail}, 503)
    return JSONResponse({"status": "ready", "store": store})
