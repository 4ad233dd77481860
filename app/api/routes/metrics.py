"""Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from ..deps import ApiKey, ServicesDep

router = APIRouter(tags=["metrics"], dependencies=[ApiKey])


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(services: ServicesDep) -> Response:
    """Runs, results, item errors, stage latency and time to first result, in Prometheus format."""
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
