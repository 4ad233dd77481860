"""A full-duplex HTTP/1.1 POST: read the response while the request body is still being sent.

httpx (like most clients) sends the whole request body before it reads the response, so a
pipeline stage that uploads its items as they come and must see results before the upload ends
needs this: h11 speaks the protocol, one task writes the body in chunks, the caller reads the
response. If the body's iterator raises, the connection is aborted and the reader re-raises
that error as itself; leaving the context cancels the writer and closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import cast
from urllib.parse import urlsplit

import h11

from conveyor_core._client_errors import ServiceConnectionError

__all__ = ["DuplexResponse", "duplex_post"]

_READ_SIZE = 65536


class DuplexResponse:
    """The response of `duplex_post`: status and headers at once, the body as it arrives."""

    def __init__(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        response: h11.Response,
        upload: asyncio.Task[None],
    ) -> None:
        self._conn = conn
        self._reader = reader
        self._upload = upload
        self.status_code = response.status_code
        self.headers: dict[str, str] = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in response.headers
        }

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        while True:
            event = await _next_event(self._conn, self._reader, self._upload)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise ServiceConnectionError("the service closed the connection mid-response")

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_bytes()])


@contextlib.asynccontextmanager
async def duplex_post(
    url: str,
    headers: Mapping[str, str],
    body: AsyncIterable[bytes],
    *,
    connect_timeout: float | None = 10.0,
) -> AsyncIterator[DuplexResponse]:
    """POST `body` (chunked) to `url` and yield the response once its head arrives."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=ssl.create_default_context() if secure else None
            ),
            connect_timeout,
        )
    except (OSError, TimeoutError) as exc:
        raise ServiceConnectionError(f"cannot connect to {host}:{port}: {exc!r}") from exc
    conn = h11.Connection(h11.CLIENT)
    head = {
        "host": parts.netloc,
        "user-agent": "conveyor-client",
        "transfer-encoding": "chunked",
        "connection": "close",
        **{name.lower(): value for name, value in headers.items()},
    }
    writer.write(conn.send(h11.Request(method="POST", target=target, headers=list(head.items()))))
    upload = asyncio.create_task(_send_body(conn, writer, body))
    try:
        while True:
            event = await _next_event(conn, reader, upload)
            if isinstance(event, h11.Response):
                break
            if isinstance(event, h11.ConnectionClosed):
                raise ServiceConnectionError("the service closed the connection before answering")
        yield DuplexResponse(conn, reader, event, upload)
    finally:
        upload.cancel()
        with contextlib.suppress(BaseException):
            await upload
        writer.transport.abort()


async def _send_body(
    conn: h11.Connection, writer: asyncio.StreamWriter, body: AsyncIterable[bytes]
) -> None:
    """Write `body` as chunks; on an error of `body` itself, abort the connection and re-raise."""
    try:
        async for chunk in body:
            if chunk:
                writer.write(conn.send(h11.Data(data=chunk)))
                await writer.drain()
    except (OSError, h11.LocalProtocolError):
        return  # the service went away or has answered in full: the reader sees it
    except Exception:
        writer.transport.abort()  # wakes the reader, which re-raises this error
        raise
    with contextlib.suppress(OSError, h11.LocalProtocolError):
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()


async def _next_event(
    conn: h11.Connection, reader: asyncio.StreamReader, upload: asyncio.Task[None]
) -> h11.Event | type[h11.PAUSED]:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return cast(h11.Event | type[h11.PAUSED], event)
        try:
            data = await reader.read(_READ_SIZE)
        except OSError as exc:
            _raise_upload_error(upload)
            raise ServiceConnectionError(f"connection to the service lost: {exc!r}") from exc
        if not data:
            _raise_upload_error(upload)
        try:
            conn.receive_data(data)
        except h11.RemoteProtocolError as exc:
            raise ServiceConnectionError(f"bad response from the service: {exc}") from exc


def _raise_upload_error(upload: asyncio.Task[None]) -> None:
    """If the upload stopped because its items raised, raise that error here."""
    if upload.done() and not upload.cancelled() and upload.exception() is not None:
        raise upload.exception()  # type: ignore[misc]
