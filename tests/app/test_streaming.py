"""app.streaming: how a stream ends when the service begins to shut down."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import httpx

from app.main import begin_shutdown, create_app
from app.streaming import Shutdown, _framed
from tests.app.conftest import app_client, make_settings
from tests.app.wire import assert_run_shape, ndjson_events


def _frame(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode() + b"\n"


async def _events(count: int, closed: list[bool]) -> AsyncGenerator[dict[str, Any], None]:
    """`count` results at once, then a wait that only a cancellation ends."""
    try:
        for seq in range(count):
            yield {"type": "result", "seq": seq, "value": seq}
        await asyncio.Event().wait()
    finally:
        closed.append(True)


def _end(seq: int) -> dict[str, Any]:
    return {"type": "end", "seq": seq, "status": "cancelled"}


async def _read(framed: AsyncGenerator[bytes, None]) -> list[dict[str, Any]]:
    async with aclosing(framed):
        return [json.loads(line) async for chunk in framed for line in chunk.splitlines()]


async def test_a_stream_ends_with_its_last_event_at_shutdown() -> None:
    begun, closed = asyncio.Event(), []
    reader = asyncio.create_task(
        _read(_framed(_events(2, closed), _frame, Shutdown(begun, last=_end)))
    )
    await asyncio.sleep(0.05)
    assert not reader.done()
    begun.set()
    events = await asyncio.wait_for(reader, 5)
    assert [e["type"] for e in events] == ["result", "result", "end"]
    assert_run_shape(events)
    assert closed == [True]  # the events were closed (a run: cancelled) before the end


async def test_a_full_queue_loses_no_event_at_shutdown() -> None:
    """Shutdown while the producer waits for room: the event it holds still goes out, and
    the last event follows it without a gap."""
    begun, closed = asyncio.Event(), []
    framed = _framed(_events(200, closed), _frame, Shutdown(begun, last=_end))
    first = await anext(framed)  # the producer now fills the queue and waits
    await asyncio.sleep(0.05)
    begun.set()
    await asyncio.sleep(0.05)
    rest = await asyncio.wait_for(_read(framed), 5)
    events = [json.loads(line) for line in first.splitlines()] + rest
    assert_run_shape(events)
    assert events[-1]["status"] == "cancelled" and closed == [True]


async def test_a_follower_settles_first_then_ends_without_an_event() -> None:
    begun, closed, settled = asyncio.Event(), [], asyncio.Event()
    reader = asyncio.create_task(
        _read(_framed(_events(1, closed), _frame, Shutdown(begun, settle=settled.wait)))
    )
    begun.set()
    await asyncio.sleep(0.05)
    assert not reader.done()  # waits for the settling (a follower: the local jobs' ends)
    settled.set()
    assert [e["seq"] for e in await asyncio.wait_for(reader, 5)] == [0]


async def test_a_stream_that_ended_is_not_touched_by_the_shutdown() -> None:
    async def finished() -> AsyncGenerator[dict[str, Any], None]:
        yield {"type": "result", "seq": 0, "value": 1}
        yield {"type": "end", "seq": 1, "status": "succeeded"}

    begun = asyncio.Event()
    begun.set()
    events = await _read(_framed(finished(), _frame, Shutdown(begun, last=_end)))
    assert [e["type"] for e in events] == ["result", "end"]
    assert events[-1]["status"] == "succeeded"


async def test_begin_shutdown_ends_streams_and_invokes_in_process() -> None:
    app = create_app(make_settings())
    async with app_client(app) as client:
        body = {"items": [0.01, 60]}

        async def stream() -> httpx.Response:
            return await client.post("/pipelines/sleepy/stream", json=body)

        tasks = [
            asyncio.create_task(stream()),
            asyncio.create_task(client.post("/pipelines/sleepy/invoke", json=body)),
        ]
        await asyncio.sleep(0.3)
        begin_shutdown(app)
        streamed, invoked = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    events = ndjson_events(streamed.text)
    assert_run_shape(events)
    assert [e["type"] for e in events] == ["result", "end"]
    assert events[-1]["status"] == "cancelled" and events[-1]["stats"]["results"] == 1
    assert invoked.json()["status"] == "cancelled" and invoked.json()["results"] == [0.01]


async def test_what_waits_for_a_slow_socket_is_bounded_in_bytes() -> None:
    """64 events of 100 KB would wait for a reader that takes nothing; at most about the
    buffer's bytes do (one event past it)."""
    pulled = 0

    async def big() -> AsyncGenerator[dict[str, Any], None]:
        nonlocal pulled
        for seq in range(200):
            pulled += 1
            yield {"type": "result", "seq": seq, "value": "x" * 100_000}

    framed = _framed(big(), _frame, buffer_bytes=300_000)
    first = await anext(framed)  # the reader takes one chunk, then nothing
    await asyncio.sleep(0.2)
    sent = first.count(b"\n")
    assert pulled - sent <= 300_000 // 100_000 + 1  # waiting: the buffer's worth, one held
    await framed.aclose()


async def test_the_stream_buffer_is_a_setting() -> None:
    from app.core.config import Settings

    assert Settings().stream_buffer_bytes == 1 << 20
    assert Settings(stream_buffer_bytes=10).stream_buffer_bytes == 10
