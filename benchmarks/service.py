"""Benchmarks of the service: `python benchmarks/service.py` (about a minute).

1. Event throughput: results per second from a pipeline of one trivial task, streamed over SSE
   and over NDJSON, against a bare sse-starlette endpoint in the same process yielding the same
   number of events of the same shape. Target: at least half the bare endpoint's rate.
2. Concurrency: 500 clients at once, each streaming a 20-item `quickstart` run (SSE) from one
   service process: every client gets every event; p50 and p99 time to first event.
3. Overhead: time to the first result of a one-item run over HTTP on loopback against the same
   run in process. Target: under 5 ms added.

The server runs in a subprocess (`--serve PORT`): the real app from `create_app()`, plus a
`trivial` pipeline and the bare endpoint `/bare/sse?n=`. Figures depend on the machine; the
client and the server share its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

THROUGHPUT_EVENTS = 20_000
CLIENTS = 500
OVERHEAD_ROUNDS = 300


# -- the server ---------------------------------------------------------------------------------


def build_app() -> Any:
    from sse_starlette import EventSourceResponse

    from app.core.config import Settings
    from app.encoding import dumps
    from app.main import create_app
    from app.pipelines import PipelineEntry
    from conveyor_core import single_task

    @single_task
    async def increment(x: int) -> int:
        """Adds one."""
        return x + 1

    app = create_app(Settings(max_items=THROUGHPUT_EVENTS, log_level="warning", sse_ping_s=15))
    app.state.services.registry.add(PipelineEntry.build("trivial", increment))

    @app.get("/bare/sse", include_in_schema=False)
    async def bare_sse(n: int) -> EventSourceResponse:
        async def events() -> AsyncIterator[dict[str, Any]]:
            for i in range(n):
                data = dumps({"seq": i, "value": i + 1, "sources": [i]}).decode()
                yield {"id": str(i), "event": "result", "data": data}
            yield {"id": str(n), "event": "end", "data": dumps({"seq": n, "status": "succeeded"})}

        return EventSourceResponse(events(), ping=15, sep="\n")

    return app


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(
        build_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


# -- the client ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def count_events(
    client: httpx.AsyncClient, method: str, url: str, *, sse: bool, **kwargs: Any
) -> int:
    """Events in the response, counted from the raw bytes (messages or lines)."""
    separator = b"\n\n" if sse else b"\n"
    count, tail = 0, b""
    async with client.stream(method, url, **kwargs) as response:
        response.raise_for_status()
        async for chunk in response.aiter_raw():
            data = tail + chunk
            count += data.count(separator)
            tail = data[-1:] if sse else b""
    return count


async def throughput(base: str) -> dict[str, float]:
    n = THROUGHPUT_EVENTS
    body = {"items": list(range(n))}
    cases = {
        "bare sse-starlette": ("GET", f"{base}/bare/sse?n={n}", True, {}),
        "conveyor SSE": (
            "POST",
            f"{base}/pipelines/trivial/stream",
            True,
            {"json": body, "headers": {"Accept": "text/event-stream"}},
        ),
        "conveyor NDJSON": ("POST", f"{base}/pipelines/trivial/stream", False, {"json": body}),
    }
    rates: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=120) as client:
        for name, (method, url, sse, kwargs) in cases.items():
            best = 0.0
            for _ in range(3):
                started = time.perf_counter()
                events = await count_events(client, method, url, sse=sse, **kwargs)
                elapsed = time.perf_counter() - started
                assert events == n + 1, (name, events)
                best = max(best, n / elapsed)
            rates[name] = best
    return rates


async def raw_sse_post(base: str, path: str, body: bytes) -> tuple[float | None, int]:
    """POST with `Connection: close` over a bare socket (httpx costs the client more CPU than
    the server spends): (seconds to the first event, events received)."""
    host, port = base.removeprefix("http://").split(":")
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    first: float | None = None
    events, tail = 0, b""
    while chunk := await reader.read(65536):
        data = tail + chunk
        found = data.count(b"\n\n")  # chunk framing is \r\n: only SSE message ends match
        if found and first is None:
            first = time.perf_counter() - started
        events += found
        tail = data[-1:]
    writer.close()
    return first, events


async def concurrency(base: str) -> dict[str, float]:
    body = json.dumps({"items": list(range(1, 21))}).encode()
    expected = 7 + 1  # ceil(20 / 3) results, then end
    gate = asyncio.Event()

    async def one() -> tuple[float | None, int, float]:
        await gate.wait()
        started = time.perf_counter()
        first, events = await raw_sse_post(base, "/pipelines/quickstart/stream", body)
        return first, events, time.perf_counter() - started

    tasks = [asyncio.create_task(one()) for _ in range(CLIENTS)]
    await asyncio.sleep(0.1)
    wall = time.perf_counter()
    gate.set()
    outcomes = await asyncio.gather(*tasks)
    wall = time.perf_counter() - wall
    firsts = [first for first, _, _ in outcomes if first is not None]
    q = statistics.quantiles(firsts, n=100)
    return {
        "clients": CLIENTS,
        "complete": sum(events == expected for _, events, _ in outcomes),
        "first_p50_ms": q[49] * 1000,
        "first_p99_ms": q[98] * 1000,
        "total_p50_ms": statistics.median(total for _, _, total in outcomes) * 1000,
        "wall_s": wall,
    }


async def overhead(base: str) -> dict[str, float]:
    from app.main import create_app  # noqa: F401  (imports the engine as the server does)
    from conveyor_core import single_task

    @single_task
    async def increment(x: int) -> int:
        return x + 1

    pipeline = increment.as_pipeline()
    local: list[float] = []
    for _ in range(OVERHEAD_ROUNDS):
        started = time.perf_counter()
        events = pipeline.events([1])
        await anext(events)
        local.append(time.perf_counter() - started)
        await events.aclose()  # type: ignore[attr-defined]

    remote: list[float] = []
    async with httpx.AsyncClient(timeout=30) as client:
        url = f"{base}/pipelines/trivial/stream"
        for _ in range(OVERHEAD_ROUNDS):
            started = time.perf_counter()
            first: float | None = None
            async with client.stream("POST", url, json={"items": [1]}) as response:
                async for _line in response.aiter_lines():
                    if first is None:
                        first = time.perf_counter() - started
            assert first is not None
            remote.append(first)
    local_ms = statistics.median(local) * 1000
    remote_ms = statistics.median(remote) * 1000
    return {"in_process_ms": local_ms, "http_ms": remote_ms, "added_ms": remote_ms - local_ms}


async def run_all(base: str) -> None:
    print(f"== event throughput: {THROUGHPUT_EVENTS} results, best of 3 ==")
    rates = await throughput(base)
    bare = rates["bare sse-starlette"]
    for name, rate in rates.items():
        print(f"  {name:<20} {rate:>10,.0f} events/s   {rate / bare:5.2f} x bare")
    print(f"== concurrency: {CLIENTS} clients, 20-item quickstart over SSE ==")
    c = await concurrency(base)
    print(f"  complete with every event: {c['complete']}/{c['clients']}")
    print(f"  time to first event: p50 {c['first_p50_ms']:.1f} ms, p99 {c['first_p99_ms']:.1f} ms")
    print(
        f"  whole stream p50 {c['total_p50_ms']:.1f} ms; all {CLIENTS} done in {c['wall_s']:.2f} s"
    )
    print(f"== overhead: time to first result, median of {OVERHEAD_ROUNDS} ==")
    o = await overhead(base)
    print(
        f"  in process {o['in_process_ms']:.3f} ms, HTTP loopback {o['http_ms']:.3f} ms, "
        f"added {o['added_ms']:.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the benchmark server did not start")
            time.sleep(0.1)
        asyncio.run(run_all(base))
    finally:
        server.terminate()
        server.wait(15)


if __name__ == "__main__":
    main()
