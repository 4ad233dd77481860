"""A full-duplex HTTP/1.1 POST: read the response while the request body is still being sent.

httpx (like most clients) sends the whole request body before it reads the response, so a
pipeline stage that uploads its items as they come and must see results before the upload ends
needs this: h11 speaks the protocol, one task writes the body in chunks, the caller reads the
response. The request says `Expect: 100-continue`, so a service that refuses it answers before
any of the body is sent. If the body's iterator raises, the connection is aborted and the reader
re-raises that error as itself; leaving the context cancels the writer and closes the connection.
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

_HIGH_WATER = 256 * 1024  # bytes read ahead of the caller before the socket is paused


class _Connection(asyncio.Protocol):
    """A socket with a read buffer that outlives write errors, and write flow control.

    (asyncio's StreamReader drops what it buffered once a write fails; a service that answers
    early and closes, while the upload is still going, must still be read to the end.)
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._data = bytearray()
        self._closed = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._data += data
        self._readable.set()
        if len(self._data) > _HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._closed = True
        self._readable.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._readable.set()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    async def read(self) -> bytes:
        """What has arrived, waiting for something; b"" once the connection is closed."""
        while not self._data and not self._closed:
            self._readable.clear()
            await self._readable.wait()
        data = bytes(self._data)
        self._data.clear()
        if self.transport is not None and not self._closed:
            self.transport.resume_reading()
        return data

    async def write(self, data: bytes) -> None:
        if self._closed or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        self.transport.write(data)
        await self._writable.wait()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class DuplexResponse:
    """The response of `duplex_post`: status and headers at once, the body as it arrives."""

    def __init__(
        self,
        conn: h11.Connection,
        sock: _Connection,
        response: h11.Response,
        upload: asyncio.Task[None] | None,
    ) -> None:
        self._conn = conn
        self._sock = sock
        self._upload = upload
        self.status_code = response.status_code
        self.headers: dict[str, str] = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in response.headers
        }

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        while True:
            event = await _next_event(self._conn, self._sock, self._upload)
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
    continue_timeout: float = 1.0,
) -> AsyncIterator[DuplexResponse]:
    """POST `body` (chunked) to `url` and yield the response once its head arrives."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    try:
        _, sock = await asyncio.wait_for(
            loop.create_connection(
                _Connection, host, port, ssl=ssl.create_default_context() if secure else None
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
        "expect": "100-continue",
        **{name.lower(): value for name, value in headers.items()},
    }
    upload: asyncio.Task[None] | None = None
    try:
        request = h11.Request(method="POST", target=target, headers=list(head.items()))
        try:
            await sock.write(conn.send(request))
            # A service refusing the request (401, 404, 422...) answers before reading the body;
            # uploading meanwhile could make its close reset the connection and lose the answer.
            event = await asyncio.wait_for(_next_event(conn, sock, None), continue_timeout)
        except TimeoutError:  # a server that ignores `Expect`: upload anyway
            event = None
        except OSError as exc:
            raise ServiceConnectionError(f"connection to {host}:{port} lost: {exc!r}") from exc
        if not isinstance(event, h11.Response) or event.status_code < 300:
            # 100 Continue, no word in time, or a response that streams while it reads
            upload = asyncio.create_task(_send_body(conn, sock, body))
        while not isinstance(event, h11.Response):
            if isinstance(event, h11.ConnectionClosed):
                raise ServiceConnectionError("the service closed the connection before answering")
            event = await _next_event(conn, sock, upload)
        yield DuplexResponse(conn, sock, event, upload)
    finally:
        sock.abort()
        if upload is not None:
            upload.cancel()
            await asyncio.wait({upload})  # unlike `suppress(BaseException)`, keeps our own cancel
            if not upload.cancelled():
                upload.exception()  # the reader has reported it already; mark it retrieved


async def _send_body(conn: h11.Connection, sock: _Connection, body: AsyncIterable[bytes]) -> None:
    """Send the request body; if `body` itself raises, abort the connection and re-raise."""
    try:
        async for chunk in body:
            if chunk:
                await sock.write(conn.send(h11.Data(data=chunk)))
        await sock.write(conn.send(h11.EndOfMessage()))
    except (OSError, h11.LocalProtocolError):
        return  # the service went away or has answered in full: the reader sees it
    except Exception:
        sock.abort()  # wakes the reader, which re-raises this error
        raise


async def _next_event(
    conn: h11.Connection, sock: _Connection, upload: asyncio.Task[None] | None
) -> h11.Event | type[h11.PAUSED]:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ServiceConnectionError(f"bad response from the service: {exc}") from exc
        if event is not h11.NEED_DATA:
            return cast(h11.Event | type[h11.PAUSED], event)
        data = await sock.read()
        if not data:
            _raise_upload_error(upload)
        try:
            conn.receive_data(data)
        except h11.RemoteProtocolError as exc:
            raise ServiceConnectionError(f"bad response from the service: {exc}") from exc


def _raise_upload_error(upload: asyncio.Task[None] | None) -> None:
    """If the upload stopped because its items raised, raise that error here."""
    if (
        upload is not None
        and upload.done()
        and not upload.cancelled()
        and upload.exception() is not None
    ):
        raise upload.exception()  # type: ignore[misc]
