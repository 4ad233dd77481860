"""What `conveyor serve` asks of uvicorn against slow and numerous clients.

uvicorn offers a cap on concurrent connections (`limit_concurrency`: a request beyond it gets
503) and a keep-alive timeout between requests, but no deadline for a request's headers: a
client sending them a byte at a time holds its connection forever. `HeaderDeadline` adds one to
uvicorn's httptools protocol (what `uvicorn[standard]` runs): a connection whose request
headers are not complete `header_timeout_s` after it opened (or after its request began, on a
kept-alive connection) is closed. Request bodies get their deadline in the app
(`CONVEYOR_BODY_TIMEOUT_S`, app.api.deps.read_body).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .core.config import Settings

__all__ = ["HeaderDeadline", "server_options"]

log = logging.getLogger("conveyor.service.http")


class HeaderDeadline(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request headers are late."""

    header_timeout_s = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_header_timer()

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        log.info(
            "a client sent no complete request headers within %ss: connection closed",
            self.header_timeout_s,
            extra={"client": (self.client or [None])[0]},
        )
        self.transport.close()


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.Config options for the connection limits of `settings`."""
    protocol = type(
        "HeaderDeadline", (HeaderDeadline,), {"header_timeout_s": settings.header_timeout_s}
    )
    return {
        "http": protocol,
        "limit_concurrency": settings.max_connections,
        "timeout_keep_alive": settings.keep_alive_s,
    }
