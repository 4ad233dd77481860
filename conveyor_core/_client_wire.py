"""Reading the service's event streams: `text/event-stream` or NDJSON bytes to event dicts.

Either way an event comes out shaped as an NDJSON line of DESIGN.md: the JSON object with its
`"type"`. The SSE parser follows the WHATWG rules the client needs (fields `event`, `data`, `id`;
comments such as pings are skipped; any of CRLF, LF, CR ends a line; an event only counts once
its blank line arrives, so an event cut off by a dropped connection is never delivered).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ServerSentEvent", "iter_events", "iter_lines", "iter_sse"]

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(slots=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    _data: list[str] = field(default_factory=list, repr=False)


async def iter_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """Decoded lines without their line ends; a last line without an end is dropped.

    Only the text of each new chunk is searched, and a line's pieces are joined once it ends,
    so a long line that arrives in small pieces costs time linear in its length.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    pieces: list[str] = []  # the line read so far
    held = ""  # a CR that ended the last chunk: maybe the first half of a CRLF
    async for chunk in chunks:
        text = held + decoder.decode(chunk)
        held = ""
        if text.endswith("\r"):
            held, text = "\r", text[:-1]
        start = 0
        for match in _LINE_END.finditer(text):
            pieces.append(text[start : match.start()])
            yield "".join(pieces)
            pieces = []
            start = match.end()
        if start < len(text):
            pieces.append(text[start:])


async def iter_sse(chunks: AsyncIterable[bytes]) -> AsyncIterator[ServerSentEvent]:
    """The complete events of a `text/event-stream` body."""
    current = ServerSentEvent()
    async for line in iter_lines(chunks):
        if not line:
            if current._data:
                current.data = "\n".join(current._data)
                yield current
            current = ServerSentEvent()
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            current.event = value
        elif name == "data":
            current._data.append(value)
        elif name == "id" and "\0" not in value:
            current.id = value


async def iter_events(
    chunks: AsyncIterable[bytes], content_type: str
) -> AsyncIterator[dict[str, Any]]:
    """Event dicts (with `type`) from an SSE or an NDJSON response body."""
    if content_type.split(";")[0].strip().lower() == "text/event-stream":
        async for sse in iter_sse(chunks):
            yield {"type": sse.event, **json.loads(sse.data)}
    else:
        async for line in iter_lines(chunks):
            if line.strip():
                yield json.loads(line)
