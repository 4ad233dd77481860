"""Benchmarks of the service: `python benchmarks/service.py` (about a minute).

1. Event throughput: results per second from a pipeline of one trivial task, streamed over SSE
   and over NDJSON, against a bare sse-starlette endpoint in the same process yielding the same
   number of events of the same shape. Target: at least half the bare endpoint's rate.
2. Concurrency: 500 clients at once, each streaming a 20-item `quickstart` run (SSE) from one
   service process: every client gets every event; p50 and p99 time to first event.
3. Overhead: time to the first result of a one-item run over HTTP on loopback against the same
   run in process. Target: under 5 ms added.
4. Crowd: 2,000 clients at once, each a 20-event SSE stream of a trivial pipeline, from a cheap
   raw-socket load generator in a process of its own (uvloop protocols: the server dominates),
   against the bare sse-starlette endpoint streaming the same 20 events and against the
   service, alternately: wall time and p99 time to first event of each, and their ratios.
   Target: at most 1.2x bare wall time and 1.3x bare p99 first event.

`--only crowd --repeat 5` runs one part several times; `--profile FILE` profiles the server
(cProfile, written when it stops) while it runs.

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
CROWD = 2_000
CROWD_EVENTS = 20


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


def serve(port: int, profile: str | None = None) -> None:
    import uvicorn

    def run() -> None:
        uvicorn.run(
            build_app(),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            backlog=4096,
        )

    if profile is None:
        run()
        return
    import cProfile
    import signal

    # uvicorn raises the SIGTERM it caught again once it has stopped: let that one return, so
    # that the profile is written
    signal.signal(signal.SIGTERM, lambda *_: None)
    profiler = cProfile.Profile()
    try:
        profiler.runcall(run)
    finally:
        profiler.dump_stats(profile)


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


# -- the crowd: a raw-socket load generator in a process of its own -------------------------------


def crowd_requests(port: int) -> dict[str, bytes]:
    """The two requests of the crowd: the bare endpoint's GET and the service's POST."""
    host = f"127.0.0.1:{port}"
    body = json.dumps({"items": list(range(CROWD_EVENTS))}).encode()
    bare = (
        f"GET /bare/sse?n={CROWD_EVENTS} HTTP/1.1\r\nHost: {host}\r\n"
        "Accept: text/event-stream\r\nConnection: close\r\n\r\n"
    ).encode()
    service = (
        f"POST /pipelines/trivial/stream HTTP/1.1\r\nHost: {host}\r\n"
        "Accept: text/event-stream\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    return {"bare": bare, "service": service}


class _CrowdClient(asyncio.Protocol):
    """One client: writes its request, counts SSE messages (`\\n\\n`) until the server closes."""

    def __init__(self, request: bytes, done: asyncio.Future[tuple[float | None, int]]) -> None:
        self.request, self.done = request, done
        self.started = time.perf_counter()
        self.first: float | None = None
        self.events, self.tail = 0, b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        data = self.tail + data
        found = data.count(b"\n\n")  # chunk framing is \r\n: only SSE message ends match
        if found and self.first is None:
            self.first = time.perf_counter() - self.started
        self.events += found
        self.tail = data[-1:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result((self.first, self.events))


async def _crowd(port: int, request: bytes, clients: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()

    async def one() -> tuple[float | None, int]:
        done: asyncio.Future[tuple[float | None, int]] = loop.create_future()
        client = _CrowdClient(request, done)
        try:
            await loop.create_connection(lambda: client, "127.0.0.1", port)
        except OSError:
            return None, 0
        return await done

    started = time.perf_counter()
    outcomes = await asyncio.gather(*(one() for _ in range(clients)))
    wall = time.perf_counter() - started
    firsts = sorted(first for first, _ in outcomes if first is not None)
    q = statistics.quantiles(firsts, n=100) if len(firsts) > 1 else [float("nan")] * 99
    return {
        "complete": sum(events == CROWD_EVENTS + 1 for _, events in outcomes),
        "wall_s": wall,
        "client_cpu_s": time.process_time(),
        "first_p50_ms": q[49] * 1000,
        "first_p99_ms": q[98] * 1000,
    }


def crowd_client(port: int, target: str, clients: int) -> None:
    """`--crowd-client PORT TARGET N`: one crowd; its figures as one JSON line on stdout."""
    import uvloop

    request = crowd_requests(port)[target]
    print(json.dumps(uvloop.run(_crowd(port, request, clients))))


SERVER_PID = 0  # the benchmark server's process, whose CPU time a crowd costs is read


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux: /proc), 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def crowd(port: int, target: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--crowd-client", str(port), target, str(CROWD)]
    before = cpu_seconds(SERVER_PID)
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    figures: dict[str, Any] = json.loads(result.stdout)
    figures["server_cpu_s"] = cpu_seconds(SERVER_PID) - before
    return figures


def run_crowd(port: int) -> dict[str, Any]:
    """The bare endpoint, then the service: one round, with the ratios."""
    bare, service = crowd(port, "bare"), crowd(port, "service")
    return {
        "bare": bare,
        "service": service,
        "wall_ratio": service["wall_s"] / bare["wall_s"],
        "p99_ratio": service["first_p99_ms"] / bare["first_p99_ms"],
        "cpu_ratio": service["server_cpu_s"] / max(bare["server_cpu_s"], 1e-9),
    }


def print_crowd(round_: dict[str, Any]) -> None:
    for name in ("bare", "service"):
        c = round_[name]
        print(
            f"  {name:<8} {c['complete']:>5}/{CROWD} complete, wall {c['wall_s']:.2f} s, "
            f"first event p50 {c['first_p50_ms']:.0f} ms, p99 {c['first_p99_ms']:.0f} ms; "
            f"CPU: server {c['server_cpu_s']:.2f} s, client {c['client_cpu_s']:.2f} s"
        )
    print(
        f"  service / bare: wall {round_['wall_ratio']:.2f}x, p99 {round_['p99_ratio']:.2f}x, "
        f"server CPU {round_['cpu_ratio']:.2f}x"
    )


async def run_throughput(base: str) -> None:
    print(f"== event throughput: {THROUGHPUT_EVENTS} results, best of 3 ==")
    rates = await throughput(base)
    bare = rates["bare sse-starlette"]
    for name, rate in rates.items():
        print(f"  {name:<20} {rate:>10,.0f} events/s   {rate / bare:5.2f} x bare")


async def run_concurrency(base: str) -> None:
    print(f"== concurrency: {CLIENTS} clients, 20-item quickstart over SSE ==")
    c = await concurrency(base)
    print(f"  complete with every event: {c['complete']}/{c['clients']}")
    print(f"  time to first event: p50 {c['first_p50_ms']:.1f} ms, p99 {c['first_p99_ms']:.1f} ms")
    print(
        f"  whole stream p50 {c['total_p50_ms']:.1f} ms; all {CLIENTS} done in {c['wall_s']:.2f} s"
    )


async def run_overhead(base: str) -> None:
    print(f"== overhead: time to first result, median of {OVERHEAD_ROUNDS} ==")
    o = await overhead(base)
    print(
        f"  in process {o['in_process_ms']:.3f} ms, HTTP loopback {o['http_ms']:.3f} ms, "
        f"added {o['added_ms']:.3f} ms"
    )


CROWD_ROUNDS: list[dict[str, Any]] = []


async def run_crowd_round(base: str) -> None:
    print(f"== crowd: {CROWD} clients at once, {CROWD_EVENTS}-event SSE streams ==")
    round_ = await asyncio.to_thread(run_crowd, int(base.rsplit(":", 1)[1]))
    CROWD_ROUNDS.append(round_)
    print_crowd(round_)


PARTS = {
    "throughput": run_throughput,
    "concurrency": run_concurrency,
    "overhead": run_overhead,
    "crowd": run_crowd_round,
}


async def run_all(base: str, parts: list[str], repeat: int) -> None:
    for _ in range(repeat):
        for part in parts:
            await PARTS[part](base)
    if len(CROWD_ROUNDS) > 1:

        def span(key: str, fmt: str) -> str:
            values = [r[key] for r in CROWD_ROUNDS]
            return f"{min(values):{fmt}}–{max(values):{fmt}}"

        print(f"== crowd, {len(CROWD_ROUNDS)} rounds: ranges ==")
        for name in ("bare", "service"):
            walls = [r[name]["wall_s"] for r in CROWD_ROUNDS]
            p99s = [r[name]["first_p99_ms"] for r in CROWD_ROUNDS]
            print(
                f"  {name:<8} wall {min(walls):.2f}–{max(walls):.2f} s, "
                f"p99 first event {min(p99s):.0f}–{max(p99s):.0f} ms"
            )
        print(
            f"  ratios: wall {span('wall_ratio', '.2f')}x, p99 {span('p99_ratio', '.2f')}x, "
            f"server CPU {span('cpu_ratio', '.2f')}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(PARTS), action="append", help="run only these")
    parser.add_argument("--repeat", type=int, default=1, help="run the parts this many times")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the server into FILE")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--crowd-client", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.profile)
        return
    if args.crowd_client:
        port, target, clients = args.crowd_client
        crowd_client(int(port), target, int(clients))
        return
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    command = [sys.executable, __file__, "--serve", str(port)]
    if args.profile:
        command += ["--profile", args.profile]
    server = subprocess.Popen(command, env=env)
    global SERVER_PID
    SERVER_PID = server.pid
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
        asyncio.run(run_all(base, args.only or list(PARTS), args.repeat))
    finally:
        server.terminate()
        server.wait(60)


if __name__ == "__main__":
    main()
