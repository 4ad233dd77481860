"""NDJSON uploads: the items of a request body, one JSON value per line, read as they arrive.

The upload is a stream: an item enters the pipeline as soon as its line is complete, while the
rest of the body is still coming. A line the service cannot take ends the run the way a source
error does: an `error` event with `"stage": null` whose `error` names the line, then `end` with
status `failed`. Results of earlier lines already sent stay sent; the work still in flight for
earlier lines is cancelled with the run.

    BadLine: line 3: malformed JSON: expected value at line 1 column 1
    BadLine: line 4 (item 3): Input should be a valid integer
    BadLine: line 10001: more than 10000 items (CONVEYOR_MAX_ITEMS)
    BadLine: line 7: longer than 1048576 bytes (CONVEYOR_MAX_ITEM_BYTES)
    BadLine: line 12: the upload is larger than 268435456 bytes (CONVEYOR_MAX_UPLOAD_BYTES)

Blank lines are skipped (they still count in line numbers); `\\r\\n` endings are accepted.
Lines are assembled in time linear in their length, however small the pieces they arrive in;
a long line's buffer is let go as soon as the line is complete.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from .peer import client_gone, transport_of
from .pipelines.schema import ItemType

__all__ = ["BadLine", "BodyChannel", "UploadResponse", "ndjson_items"]

PROBE_S = 0.25  # while the run does not take the next chunk, how often the client is looked for


class BadLine(ValueError):
    """A line of an NDJSON upload is not a valid item (reported in the run's `error` event)."""


class BodyChannel:
    """Hands request body chunks from the ASGI `receive` pump to the line parser, one at a time.

    The pump waits until the parser has taken a chunk before it receives the next, so a pipeline
    that pulls slowly slows the upload instead of buffering it.
    """

    def __init__(self) -> None:
        self.sender: MemoryObjectSendStream[bytes]
        self.receiver: MemoryObjectReceiveStream[bytes]
        self.sender, self.receiver = anyio.create_memory_object_stream[bytes](0)

    async def chunks(self) -> AsyncIterator[bytes]:
        with self.receiver:
            async for chunk in self.receiver:
                yield chunk


async def ndjson_items(
    chunks: AsyncIterator[bytes],
    item_type: ItemType,
    *,
    max_items: int,
    max_line_bytes: int,
    max_bytes: int,
) -> AsyncIterator[Any]:
    """Validated items, one per non-blank line, as the lines complete."""
    pending = bytearray()  # the start of a line that goes on in the next chunks
    line_no = position = total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise BadLine(
                f"line {line_no + 1}: the upload is larger than {max_bytes} bytes "
                "(CONVEYOR_MAX_UPLOAD_BYTES)"
            )
        start = 0
        while (newline := chunk.find(b"\n", start)) >= 0:  # only the new bytes are searched
            line_no += 1
            if pending:
                pending += chunk[start:newline]
                line, pending = bytes(pending), bytearray()
            else:
                line = chunk[start:newline]
            start = newline + 1
            if len(line) > max_line_bytes:
                raise BadLine(f"line {line_no}: longer than {max_line_bytes} bytes{_LIMIT}")
            if line.strip():
                yield _item(line, line_no, position, item_type, max_items)
                position += 1
        if len(pending) + len(chunk) - start > max_line_bytes:
            raise BadLine(f"line {line_no + 1}: longer than {max_line_bytes} bytes{_LIMIT}")
        pending += chunk[start:]
    if pending.strip():
        yield _item(bytes(pending), line_no + 1, position, item_type, max_items)


_LIMIT = " (CONVEYOR_MAX_ITEM_BYTES)"


def _item(line: bytes, line_no: int, position: int, item_type: ItemType, max_items: int) -> Any:
    if position >= max_items:
        raise BadLine(f"line {line_no}: more than {max_items} items (CONVEYOR_MAX_ITEMS)")
    try:
        return item_type.validate_line(line)
    except ValueError as exc:
        where = (
            f"line {line_no}"
            if str(exc).startswith("malformed")
            else (f"line {line_no} (item {position})")
        )
        raise BadLine(f"{where}: {exc}") from None


class UploadResponse(Response):
    """Runs a streaming response while the request body is still arriving.

    A streaming response watches `receive` for the client's disconnect, which would swallow
    body chunks. This wrapper owns `receive`: body chunks go to `channel` (the pipeline's source
    reads them), and the inner response sees only the disconnect.

    The response starts once the first body message has arrived: a server answers a client's
    `Expect: 100-continue` (what `curl -T -` sends) when the app first calls `receive`, and
    only while no response has started. Starting first would leave curl holding its upload
    back (a second, then the whole body at once).

    While the run does not take the next chunk (it is behind: backpressure), the body is not
    read, so `receive` cannot tell of a disconnect; the connection's socket is asked instead,
    every `PROBE_S` (`app.peer.client_gone`), and a client gone cancels the run as a
    disconnect does.
    """

    def __init__(self, inner: Response, body: BodyChannel) -> None:
        self.inner = inner
        self.channel = body
        self.status_code = inner.status_code
        self.background = None
        self.raw_headers = inner.raw_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = anyio.Event()

        async def inner_receive() -> Message:
            await disconnected.wait()
            return {"type": "http.disconnect"}

        inner_receive.transport = transport_of(receive)  # type: ignore[attr-defined]

        received = anyio.Event()  # the first body message (or the disconnect) has arrived
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._pump, receive, disconnected, received)
            await received.wait()
            if not disconnected.is_set():
                await self.inner(scope, inner_receive, send)
            tg.cancel_scope.cancel()

    async def _pump(
        self, receive: Receive, disconnected: anyio.Event, received: anyio.Event
    ) -> None:
        gone = client_gone(receive)
        with self.channel.sender as sender:
            while True:
                message = await receive()
                received.set()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    return
                chunk = message.get("body", b"")
                if chunk:
                    try:
                        while True:
                            with anyio.move_on_after(PROBE_S if gone else None) as waiting:
                                await sender.send(chunk)
                            if not waiting.cancelled_caught:
                                break
                            if gone is not None and gone():
                                disconnected.set()
                                return
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                        pass  # the run stopped reading: drain the rest of the body
                if not message.get("more_body", False):
                    break
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected.set()
