"""The event-stream parsers of the client, fed chunk by chunk as a socket would."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from conveyor_core._client_wire import iter_events, iter_lines, iter_sse


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


SSE = (
    ": ping - 2024-01-01\r\n\r\n"
    'id: 0\r\nevent: result\r\ndata: {"seq": 0, "value": "é", "sources": [0]}\r\n\r\n'
    'id: 1\nevent: end\ndata: {"seq": 1, "status": "succeeded",\ndata: "stats": {}}\n\n'
).encode()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
async def test_sse_events_survive_any_chunking(size: int) -> None:
    events = [e async for e in iter_events(_chunks(SSE, size), "text/event-stream; charset=utf-8")]
    assert events == [
        {"type": "result", "seq": 0, "value": "é", "sources": [0]},
        {"type": "end", "seq": 1, "status": "succeeded", "stats": {}},
    ]


async def test_sse_keeps_ids_and_drops_an_event_cut_before_its_blank_line() -> None:
    cut = b'id: 4\nevent: result\ndata: {"seq": 4}\n\nid: 5\nevent: result\ndata: {"seq": 5}\n'
    events = [e async for e in iter_sse(_chunks(cut, 5))]
    assert [(e.id, e.event, e.data) for e in events] == [("4", "result", '{"seq": 4}')]


async def test_lines_split_on_cr_lf_and_crlf_across_chunks() -> None:
    lines = [line async for line in iter_lines(_chunks(b"a\r\nb\rc\nd\r", 1))]
    assert lines == ["a", "b", "c"]  # "d\r" may be half of a CRLF: held back at the cut


async def test_ndjson_lines() -> None:
    body = (
        b'{"type": "result", "seq": 0, "value": 1, "sources": [0]}\n\n{"type": "end", "seq": 1}\n'
    )
    events = [e async for e in iter_events(_chunks(body, 4), "application/x-ndjson")]
    assert [e["type"] for e in events] == ["result", "end"]


async def test_a_long_line_in_small_pieces_takes_linear_time() -> None:
    """16 MB in 2 KB pieces: searching the whole pending line again at each piece (what this
    did) scans about 64 GB; searching each piece once takes milliseconds. A generous bound."""
    line = b"x" * (16 << 20) + b"\r\nnext\r"
    started = time.perf_counter()
    lines = [text async for text in iter_lines(_chunks(line, 2048))]
    assert [len(text) for text in lines] == [16 << 20]
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("size", [1, 2, 3, 5])
async def test_line_ends_across_every_cut(size: int) -> None:
    data = b"a\r\n\r\nbb\r\rc\n\nd\r\ne"
    lines = [line async for line in iter_lines(_chunks(data, size))]
    assert lines == ["a", "", "bb", "", "c", "", "d"]
