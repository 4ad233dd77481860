"""The full-duplex upload under `RemotePipeline`, against a minimal ASGI app in this process.

The app answers `/pipelines/echo/stream` by echoing each NDJSON line as an SSE `result` the moment
the line arrives, so these tests see whether responses flow while the upload is still going.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from conveyor_core import single_task
from conveyor_core.client import ConveyorClient, RemotePipeline, UnauthorizedError

Scope = dict[str, Any]


async def echo_app(scope: Scope, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    if scope["path"] != "/pipelines/echo/stream":
        await receive()
        body = json.dumps({"detail": "Missing or invalid API key"}).encode()
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": body})
        return
    head = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": head})
    seq, buffer, more = 0, b"", True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        buffer += message.get("body", b"")
        more = message.get("more_body", False)
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            data = {"seq": seq, "value": json.loads(line), "sources": [seq]}
            frame = f"id: {seq}\r\nevent: result\r\ndata: {json.dumps(data)}\r\n\r\n"
            await send({"type": "http.response.body", "body": frame.encode(), "more_body": True})
            seq += 1
    end = {"seq": seq, "status": "succeeded", "stats": {"inputs": seq}}
    frame = f"id: {seq}\r\nevent: end\r\ndata: {json.dumps(end)}\r\n\r\n"
    await send({"type": "http.response.body", "body": frame.encode()})


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    config = uvicorn.Config(echo_app, host="127.0.0.1", port=0, lifespan="off", log_level="error")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(1000):
        if server.started:
            break
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@single_task
async def plus_one(x: int) -> int:
    return x + 1


async def test_results_flow_back_while_the_upload_goes_on(echo_url: str) -> None:
    uploaded: list[int] = []

    async def source() -> AsyncIterator[int]:
        for item in range(5):
            uploaded.append(item)
            yield item
            await asyncio.sleep(0.2)

    seen: list[tuple[Any, int]] = []
    async for value in (plus_one | RemotePipeline(echo_url, "echo"))(source()):
        seen.append((value, len(uploaded)))
    assert [value for value, _ in seen] == [1, 2, 3, 4, 5]
    assert seen[0][1] < 5, "the first result came only after the whole upload"


async def test_sources_map_back_to_the_run_input(echo_url: str) -> None:
    @single_task
    async def drop_odd(x: int) -> int | None:
        return None if x % 2 else x

    pipeline = drop_odd | RemotePipeline(echo_url, "echo")
    events = [e async for e in pipeline.events([0, 1, 2, 3, 4])]
    assert [(e.value, e.sources) for e in events if e.type == "result"] == [
        (0, [0]),
        (2, [2]),
        (4, [4]),
    ]


async def test_an_error_of_the_source_reaches_the_caller_as_itself(echo_url: str) -> None:
    async def source() -> AsyncIterator[int]:
        yield 1
        await asyncio.sleep(0.05)
        raise LookupError("source broke")

    async with ConveyorClient(echo_url) as client:
        seen: list[Any] = []
        with pytest.raises(LookupError, match="source broke"):
            async for value in client.stream("echo", source()):
                seen.append(value)
    assert seen == [1]


async def test_an_error_status_is_raised_before_the_upload_ends(echo_url: str) -> None:
    never = asyncio.Event()

    async def endless() -> AsyncIterator[int]:
        yield 1
        await never.wait()

    async with ConveyorClient(echo_url) as client:
        with pytest.raises(UnauthorizedError):
            await asyncio.wait_for(anext(aiter(client.stream("locked", endless()))), 5)
