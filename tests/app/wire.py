"""Reading the service's wire formats the way clients do: SSE as a browser parses it, NDJSON,
and a full-duplex HTTP/1.1 upload (httpx sends a whole body before it reads the response)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class SSEMessage:
    """One dispatched SSE event, with the last event id in force (as `MessageEvent.lastEventId`)."""

    event: str
    data: str
    last_event_id: str

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SSEParser:
    """The WHATWG event-stream interpretation: fields, comments, multi-line data, ids."""

    last_event_id: str = ""
    retry: int | None = None
    comments: list[str] = field(default_factory=list)
    _event: str = ""
    _data: list[str] = field(default_factory=list)

    def feed_line(self, line: str) -> SSEMessage | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments.append(line[1:].lstrip())
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> SSEMessage | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SSEMessage(event or "message", "\n".join(data), self.last_event_id)


def split_lines(text: str) -> list[str]:
    """Lines ended by CRLF, LF or CR, as the event-stream grammar says."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def parse_sse(text: str) -> list[SSEMessage]:
    parser = SSEParser()
    messages = [parser.feed_line(line) for line in split_lines(text)]
    return [m for m in messages if m is not None]


async def iter_sse(
    lines: AsyncIterator[str], parser: SSEParser | None = None
) -> AsyncIterator[SSEMessage]:
    parser = parser or SSEParser()
    async for line in lines:
        message = parser.feed_line(line)
        if message is not None:
            yield message


def sse_events(text: str) -> list[dict[str, Any]]:
    """SSE messages as wire events: the data object plus `type` from `event:`; checks `id`."""
    out = []
    for message in parse_sse(text):
        event = {"type": message.event, **message.json()}
        assert message.last_event_id == str(event["seq"])
        out.append(event)
    return out


def ndjson_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_run_shape(events: Iterable[dict[str, Any]]) -> None:
    """seq 0, 1, 2, ... without gaps, one `end`, last."""
    events = list(events)
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events].count("end") == 1
    assert events[-1]["type"] == "end"


class DuplexUpload:
    """A chunked HTTP/1.1 POST over a raw socket: send body chunks and read response lines
    at the same time, as `curl -T -` does."""

    def __init__(self, url: str, path: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = path
        self.headers = headers
        self.status = 0
        self.response_headers: dict[str, str] = {}
        self._reader: asyncio.StreamReader
        self._writer: asyncio.StreamWriter
        self._buffer = b""

    async def __aenter__(self) -> DuplexUpload:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        head = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Transfer-Encoding: chunked",
            *(f"{k}: {v}" for k, v in self.headers.items()),
        ]
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        await self._writer.drain()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass

    async def send(self, data: bytes) -> None:
        self._writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await self._writer.drain()

    async def end(self) -> None:
        self._writer.write(b"0\r\n\r\n")
        await self._writer.drain()

    async def read_interim(self) -> str:
        """The status line of an interim (1xx) response, e.g. `HTTP/1.1 100 Continue`."""
        raw = await self._reader.readuntil(b"\r\n\r\n")
        status_line = raw.decode("latin-1").split("\r\n")[0]
        assert status_line.split()[1].startswith("1"), f"not an interim response: {status_line}"
        return status_line

    async def read_head(self) -> None:
        raw = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = raw.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                self.response_headers[name.strip().lower()] = value.strip()

    async def read_line(self) -> bytes:
        """The next line of the chunked response body (b"" at its end)."""
        while b"\n" not in self._buffer:
            size = int((await self._reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                return self._buffer
            self._buffer += await self._reader.readexactly(size)
            await self._reader.readexactly(2)
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"
