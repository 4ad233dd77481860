"""app.upload: NDJSON lines to items, however the body is cut into chunks; the upload response
answers `Expect: 100-continue` (a real uvicorn process and a raw socket)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.responses import Response
from starlette.types import Message

from app.pipelines.schema import ItemType
from app.upload import BadLine, BodyChannel, UploadResponse, ndjson_items
from tests.app.conftest import run_server
from tests.app.wire import DuplexUpload

INT = ItemType(int, where="test")
ANY = ItemType(Any, where="test")


async def _chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _items(
    parts: list[bytes],
    item_type: ItemType = INT,
    max_items: int = 100,
    max_line_bytes: int = 1 << 20,
    max_bytes: int = 1 << 30,
) -> list[Any]:
    items = ndjson_items(
        _chunks(parts),
        item_type,
        max_items=max_items,
        max_line_bytes=max_line_bytes,
        max_bytes=max_bytes,
    )
    return [item async for item in items]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=5,
)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(json_values, max_size=8), cuts=st.lists(st.integers(0, 400), max_size=6))
async def test_any_chunking_gives_the_same_items(values: list[Any], cuts: list[int]) -> None:
    body = b"".join(json.dumps(v).encode() + b"\n" for v in values)
    points = sorted({c % (len(body) + 1) for c in cuts})
    parts = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert await _items(parts, ANY) == values


async def test_blank_lines_crlf_and_a_last_line_without_newline() -> None:
    assert await _items([b"1\r\n\n  \n2\n3"]) == [1, 2, 3]


async def test_items_are_validated_strictly() -> None:
    with pytest.raises(BadLine, match=r"^line 2 \(item 1\): Input should be a valid integer"):
        await _items([b'1\n"2"\n'])


async def test_malformed_json_names_the_line() -> None:
    with pytest.raises(BadLine, match=r"^line 3: malformed JSON"):
        await _items([b"1\n\n{nope\n"], ANY)


async def test_item_limit() -> None:
    assert await _items([b"1\n2\n"], max_items=2) == [1, 2]
    with pytest.raises(BadLine, match=r"^line 3: more than 2 items"):
        await _items([b"1\n2\n3\n"], max_items=2)


async def test_line_and_upload_limits() -> None:
    assert await _items([b"12", b"34\n5\n"], max_line_bytes=4) == [1234, 5]
    with pytest.raises(BadLine, match=r"^line 2: longer than 4 bytes \(CONVEYOR_MAX_ITEM_BYTES\)"):
        await _items([b"1\n12", b"345\n"], max_line_bytes=4)
    with pytest.raises(BadLine, match=r"^line 1: longer than 4 bytes"):
        await _items([b"12345\n"], max_line_bytes=4)
    assert await _items([b"1\n2\n", b"3\n"], max_bytes=6) == [1, 2, 3]
    with pytest.raises(BadLine, match=r"^line 3: the upload is larger than 5 bytes"):
        await _items([b"1\n2\n", b"3\n"], max_bytes=5)


async def test_a_long_line_in_small_pieces_takes_linear_time() -> None:
    """16 MB in 2 KB pieces: joining the pending line again at each piece (what this did)
    copies about 64 GB; linear assembly takes milliseconds. The bound is very generous."""
    line = b'"' + b"x" * (16 << 20) + b'"'
    parts = [line[i : i + 2048] for i in range(0, len(line), 2048)] + [b"\n"]
    started = time.perf_counter()
    items = await _items(parts, ANY, max_line_bytes=32 << 20)
    assert len(items) == 1 and len(items[0]) == 16 << 20
    assert time.perf_counter() - started < 5


async def test_items_come_before_the_body_ends() -> None:
    received: list[Any] = []

    async def body() -> AsyncIterator[bytes]:
        yield b"1\n2"
        assert received == [1]  # the first item was handed on before more was read
        yield b"\n"

    async for item in ndjson_items(body(), INT, max_items=10, max_line_bytes=99, max_bytes=99):
        received.append(item)
    assert received == [1, 2]


async def test_the_response_starts_after_the_first_receive() -> None:
    """A server sends `100 Continue` when the app first calls `receive`, and only while no
    response has started: the upload's first `receive` comes before its response starts."""
    log: list[str] = []
    body = BodyChannel()

    async def receive() -> Message:
        log.append("receive")
        if log.count("receive") == 1:
            await asyncio.sleep(0.05)
            return {"type": "http.request", "body": b"1\n", "more_body": False}
        await asyncio.sleep(30)
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        log.append(message["type"])

    class Inner(Response):
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            chunks = [chunk async for chunk in body.chunks()]
            await send({"type": "http.response.body", "body": b"".join(chunks)})

    await asyncio.wait_for(UploadResponse(Inner(), body)({}, receive, send), 5)
    assert log[:2] == ["receive", "http.response.start"]


async def test_expect_100_continue_then_results_while_uploading(server: str) -> None:
    """`curl -N -T -` asks `Expect: 100-continue` and holds its body back until it gets the
    `100 Continue` (or a second passes): the server answers at once, and each result comes
    back before the next line is sent."""
    headers = {"Content-Type": "application/x-ndjson", "Expect": "100-continue"}
    path = "/pipelines/echo/stream"
    async with DuplexUpload(server, path, headers) as upload:
        # no body sent yet: a server that started its response before reading would answer
        # `200 OK` here and never `100 Continue`, and curl would hold its body back a second
        interim = await asyncio.wait_for(upload.read_interim(), 5)
        assert interim == "HTTP/1.1 100 Continue"
        await upload.send(b"1\n")
        await asyncio.wait_for(upload.read_head(), 10)
        assert upload.status == 200
        for n in (1, 2, 3):
            if n > 1:
                await upload.send(b"%d\n" % n)
            event = json.loads(await asyncio.wait_for(upload.read_line(), 10))
            assert event == {"type": "result", "seq": n - 1, "value": n, "sources": [n - 1]}
        await upload.end()
        end = json.loads(await asyncio.wait_for(upload.read_line(), 10))
        assert end["type"] == "end" and end["stats"]["inputs"] == 3


def _runs_in_progress(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        float(value)
        for value in re.findall(r"^conveyor_runs_in_progress\{[^}]*\} (\S+)$", text, re.M)
    )


def test_a_client_leaving_a_backpressured_upload_cancels_its_run(tmp_path: Path) -> None:
    """The run is behind (its calls sleep 30 s), so the upload is not read further and the
    server does not hear the socket close; the run is cancelled within a second all the same.
    A raw socket that never reads: its close resets the connection, as a client's does when it
    leaves with unread data (a killed process too)."""
    with run_server(tmp_path) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            head = "POST /pipelines/sleepy/stream HTTP/1.1\r\nHost: x\r\n"
            head += "Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
            sock.sendall(head.encode())
            sock.settimeout(0.5)
            lines = b"30\n" * 20_000
            with contextlib.suppress(TimeoutError):
                for _ in range(1000):  # until the server stops reading (backpressure)
                    sock.sendall(b"%x\r\n%s\r\n" % (len(lines), lines))
            deadline = time.monotonic() + 10
            while _runs_in_progress(url) != 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _runs_in_progress(url) == 1
        closed = time.monotonic()
        while _runs_in_progress(url) and time.monotonic() - closed < 10:
            time.sleep(0.05)
        assert _runs_in_progress(url) == 0
        assert time.monotonic() - closed < 3  # within a second, with a margin for a busy machine
