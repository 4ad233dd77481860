"""Structured logs: one JSON object per line, each with the request id of the request it serves.

`RequestContext` (pure ASGI middleware, so streaming responses pass through untouched) takes the
request id from `X-Request-ID` or makes one, echoes it in the response, logs one `request` line
when the response ends (streams included) and counts the request in the metrics. An exception
that reaches it before the response has started (a bug) is logged with the request id and
answered there, inside the request's context: a 500 that carries the id (body and header), is
counted and logged as 500.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..metrics import Metrics

__all__ = ["JsonFormatter", "RequestContext", "configure_logging", "request_id"]

request_id: ContextVar[str | None] = ContextVar("conveyor_request_id", default=None)

_VALID_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
SERVICE_LOGGER = "conveyor"


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", "request_id", ...extra fields}` per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid is not None:
            entry["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    """JSON lines on stderr for the `conveyor` loggers (engine's `conveyor_core` included)."""
    for name in (SERVICE_LOGGER, "conveyor_core"):
        logger = logging.getLogger(name)
        logger.setLevel(level.upper())
        if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
            handler = logging.StreamHandler()
            handler.setFormatter(JsonFormatter())
            logger.addHandler(handler)
        logger.propagate = False


class RequestContext:
    """Request id, access log line and HTTP metrics around every request."""

    def __init__(
        self, app: ASGIApp, metrics: Metrics, internal_error: Callable[[str], Response]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.internal_error = internal_error  # the 500 response, given the request id
        self.log = logging.getLogger("conveyor.service.http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_id(scope) or uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if status:  # the response has started: the server can only cut it
                self.log.error("unexpected error while responding", exc_info=exc)
                raise
            self.log.error("unexpected error", exc_info=exc)
            await self.internal_error(rid)(scope, receive, send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - started)
            request_id.reset(token)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = scope["method"]
        self.metrics.http_requests.labels(method, route, str(status or 499)).inc()
        self.metrics.http_duration.labels(method, route).observe(seconds)
        if not self.log.isEnabledFor(logging.INFO):  # the line's fields cost more than a check
            return
        self.log.info(
            "request",
            extra={
                "method": method,
                "path": scope["path"],
                "route": route,
                "status": status or None,
                "duration_ms": round(seconds * 1000, 3),
                "client": (scope.get("client") or [None])[0],
            },
        )


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1").strip()
            return text if _VALID_ID.match(text) else None
    return None
