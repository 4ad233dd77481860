"""Streaming responses: a run's events to the client, as SSE or NDJSON, with backpressure.

Both kinds race three things in one task group, and the first to finish cancels the others:
sending the events, watching `receive` for the client's disconnect, and (SSE) the keep-alive
ping. Between the run and the socket wait at most `COALESCE` events, and at most about
`buffer_bytes` of them (CONVEYOR_STREAM_BUFFER_BYTES; what is waiting when the socket takes more
goes out in one write), so a slow reader slows the run; a send that waits
longer than `send_timeout` (a frozen client) ends the response. Ending the response, for any
reason, closes the events iterator, which cancels the run and waits for its calls to stop.

When the service begins to shut down (`Shutdown.begun`, set as soon as the server is told to
stop), a stream does not wait for the server to cut it: a run's stream closes the run
(cancelling it) and sends its `end` with status `cancelled`; a job follower lets the local jobs
end first (it then gets their `end`, `cancelled`), and a follower of a job running on another
replica ends without `end` (the job goes on; the client resumes elsewhere with Last-Event-ID).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .encoding import NDJSON, ndjson_line, sse_message
from .jobs.store import StoreUnavailable
from .peer import cut

__all__ = [
    "NDJSONResponse",
    "SSEResponse",
    "Shutdown",
    "closing",
    "event_response",
    "until_disconnect",
]

log = logging.getLogger("conveyor.service.http")

Events = AsyncGenerator[dict[str, Any], None]
T = TypeVar("T")

COALESCE = 64  # events at most in one write, and waiting between the run and the socket
BUFFER_BYTES = 1 << 20  # and the bytes of them waiting, past the first (a setting's default)
SHUTDOWN_GRACE_S = 5.0  # at shutdown, how long sse-starlette lets a stream end by itself


@dataclass(frozen=True, slots=True)
class Shutdown:
    """How a stream ends once the service begins to shut down."""

    begun: asyncio.Event
    """Set when the server has been told to stop (`conveyor serve`: at SIGTERM or Ctrl+C)."""
    cancel: Callable[[], None] | None = None
    """Ends the stream's run early, with the run's own `end` (status `cancelled`), which the
    stream then sends; None: the stream is closed without an `end` (a follower of a job)."""
    settle: Callable[[], Awaitable[None]] | None = None
    """Awaited before the stream is closed (a follower: the local jobs write their `end`)."""


async def _framed(
    events: Events,
    frame: Callable[[dict[str, Any]], bytes],
    shutdown: Shutdown | None = None,
    buffer_bytes: int = BUFFER_BYTES,
) -> AsyncGenerator[bytes, None]:
    """The framed events; those already waiting when the socket takes more go out together.

    A producer task pulls the run into a queue of `COALESCE` events; each chunk sent joins
    what the queue holds at that moment. Memory stays bounded by the queue, and a slow reader
    still stops the run once the queue is full. At shutdown, a watcher cancels the run (which
    then ends with its own `end`, sent like any event), or, for a follower, the producer.
    """
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(COALESCE)
    queued = 0  # bytes in the queue
    room = asyncio.Condition()  # notified as the queue is emptied
    pulling = True  # the producer is taking events (and may be cancelled for the shutdown)
    stopped = False  # the shutdown cancelled the producer
    consuming = True

    async def produce() -> None:
        nonlocal pulling
        tail: list[bytes | BaseException | None] = [None]  # queued after the events
        pending = None
        try:
            async with aclosing(events):
                async for event in events:
                    pending = frame(event)
                    await put(pending)
                    pending = None
        except asyncio.CancelledError:
            if not stopped:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            tail = [*([] if pending is None else [pending]), None]  # the event being queued
        except Exception as exc:  # handed to the consumer, raised there
            tail = [exc]
        finally:
            pulling = False
        for item in tail:
            if not consuming:
                return
            await put(item)

    async def put(item: bytes | BaseException | None) -> None:
        nonlocal queued
        if isinstance(item, bytes):
            async with room:
                await room.wait_for(lambda: queued < buffer_bytes)
            queued += len(item)
        await queue.put(item)

    async def watch(shutdown: Shutdown) -> None:
        nonlocal stopped
        await shutdown.begun.wait()
        if shutdown.settle is not None:
            await shutdown.settle()
        if shutdown.cancel is not None:
            shutdown.cancel()  # the run's own end follows
        elif pulling:
            stopped = True
            producer.cancel()

    producer = asyncio.create_task(produce())
    watcher = None if shutdown is None else asyncio.create_task(watch(shutdown))
    try:
        done = False
        while not done:
            chunks = [await queue.get()]
            while not queue.empty() and len(chunks) < COALESCE:
                chunks.append(queue.get_nowait())
            queued -= sum(len(c) for c in chunks if isinstance(c, bytes))
            async with room:
                room.notify_all()
            if isinstance(chunks[-1], BaseException):
                raise chunks[-1]
            done = chunks[-1] is None
            data = b"".join(c for c in chunks if isinstance(c, bytes))
            if data:
                yield data
    finally:
        consuming = False
        producer.cancel()
        if watcher is not None:
            watcher.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.wait({producer} if watcher is None else {producer, watcher})


class NDJSONResponse(Response):
    """`application/x-ndjson`: one wire event per line, ended by the client's disconnect too."""

    media_type = NDJSON

    def __init__(
        self,
        events: Events,
        *,
        send_timeout: float,
        headers: dict[str, str] | None = None,
        shutdown: Shutdown | None = None,
        buffer_bytes: int = BUFFER_BYTES,
    ) -> None:
        self.events = events
        self.send_timeout = send_timeout
        self.shutdown = shutdown
        self.buffer_bytes = buffer_bytes
        self.status_code = 200
        self.background = None
        self.init_headers(
            {"Cache-Control": "no-store", "X-Accel-Buffering": "no", **(headers or {})}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tg:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(watch_disconnect)
            try:
                await self._stream(send)
            except TimeoutError:
                log.warning("a client stopped reading for %ss: stream ended", self.send_timeout)
                await _end_cut(receive, send)
            tg.cancel_scope.cancel()

    async def _stream(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async with aclosing(
            _framed(self.events, ndjson_line, self.shutdown, self.buffer_bytes)
        ) as lines:
            async for line in lines:
                with anyio.fail_after(self.send_timeout):
                    await send({"type": "http.response.body", "body": line, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class SSEResponse(EventSourceResponse):
    """`text/event-stream` through sse-starlette: `id` the seq, `event` the type, pings.

    sse-starlette notices uvicorn's shutdown too, and then cancels the stream, here only after
    `SHUTDOWN_GRACE_S`, so that the stream ends the service's way first (with its `end`).
    """

    def __init__(
        self,
        events: Events,
        *,
        ping: float,
        send_timeout: float,
        headers: dict[str, str] | None = None,
        shutdown: Shutdown | None = None,
        buffer_bytes: int = BUFFER_BYTES,
    ) -> None:
        super().__init__(
            _framed(events, sse_message, shutdown, buffer_bytes),
            ping=ping,
            send_timeout=send_timeout,
            sep="\n",
            headers=headers,
            shutdown_grace_period=SHUTDOWN_GRACE_S,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            log.warning("a client stopped reading for %ss: stream ended", self.send_timeout)
            await _end_cut(receive, send)


async def _end_cut(receive: Receive, send: Send) -> None:
    """End a response whose client takes nothing: drop the connection, so that the server sees
    a disconnect instead of a response left unfinished (uvicorn logs that as an error); under
    a server whose connection cannot be reached, the response's end, if it goes out soon."""
    if not await cut(receive):
        with anyio.move_on_after(1.0):
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def event_response(
    events: Events,
    *,
    sse: bool,
    ping: float,
    send_timeout: float,
    headers: dict[str, str] | None = None,
    shutdown: Shutdown | None = None,
    buffer_bytes: int = BUFFER_BYTES,
) -> Response:
    """SSE or NDJSON for the same events."""
    options: dict[str, Any] = {"headers": headers, "shutdown": shutdown}
    options.update(send_timeout=send_timeout, buffer_bytes=buffer_bytes)
    if sse:
        return SSEResponse(events, ping=ping, **options)
    return NDJSONResponse(events, **options)


async def closing(events: AsyncIterator[dict[str, Any]], what: str = "events") -> Events:
    """`events` as a generator whose closing closes `events` too (a job store's follower).

    A store that stays unavailable longer than a follower rides through ends the stream there,
    without `end` (the client resumes with Last-Event-ID), with a warning instead of an error
    raised into the server.
    """
    try:
        async for event in events:
            yield event
    except StoreUnavailable as exc:
        log.warning("%s: the job store stayed unavailable (%s): stream closed", what, exc)
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


async def until_disconnect(
    request: Request,
    work: Awaitable[T],
    *,
    stop: asyncio.Event | None = None,
    on_stop: Callable[[], None] | None = None,
) -> T | None:
    """Await `work` unless the client disconnects first: then cancel it and return None. When
    `stop` is set (the service shuts down), `on_stop()` is called and `work` goes on to its
    end (a run cancelled through the engine ends soon, with its own `end`); without `on_stop`
    it is cancelled too.

    Only for requests whose body has been read: the watcher consumes `receive`.
    """
    result: T | None = None
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        async def watch_stop(stop: asyncio.Event) -> None:
            await stop.wait()
            if on_stop is None:
                tg.cancel_scope.cancel()
            else:
                on_stop()

        tg.start_soon(watch)
        if stop is not None:
            tg.start_soon(watch_stop, stop)
        result = await work
        tg.cancel_scope.cancel()
    return result
