"""Benchmarks of the Redis job store: `python benchmarks/redis_store.py` (under a minute).

1. Throughput: a job of N trivial results, run by the service's JobRunner and followed through
   the job store in the same process, events per second with the Redis store against the
   in-memory store (best of `--repeat`). Target: the Redis store at least half as fast.
2. Fan-out: 200 followers of one job at once, half on each of two replicas (two `conveyor serve`
   processes sharing one Redis), the job started on the first. Every follower must receive every
   event; the delay of each delivery is the follower's clock at arrival minus the time the
   result was made (the `stamp` pipeline of benchmarks/stamp_pipelines.py yields `time.time()`);
   p50 / p99 / max over all deliveries.

Redis: `--redis-url`, else CONVEYOR_TEST_REDIS_URL, else redis://127.0.0.1:6379/0; everything
is written under a fresh key prefix and deleted afterwards. The followers read NDJSON over
plain sockets (an HTTP client library would cost more CPU than the servers). Figures depend on
the machine: here the client, two servers and Redis share its cores.
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
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.jobs.memory import MemoryJobStore  # noqa: E402
from app.jobs.redis import RedisJobStore  # noqa: E402
from app.jobs.runner import JobRunner  # noqa: E402
from app.jobs.store import JobStore  # noqa: E402
from app.metrics import Metrics  # noqa: E402
from app.pipelines import PipelineEntry  # noqa: E402
from conveyor_core import single_task  # noqa: E402

# -- 1. throughput -------------------------------------------------------------------------------


@single_task
async def increment(x: int) -> int:
    """Adds one."""
    return x + 1


async def follow_job(store: JobStore, events: int) -> float:
    """Events per second of one job, from submission to its `end` reaching a follower."""
    runner = JobRunner(store, Metrics(), max_running=10, lease_s=5)
    entry = PipelineEntry.build("increment", increment)
    started = time.perf_counter()
    record = await runner.submit(entry, list(range(events)), "ordered")
    received = [event async for event in store.events(record.job_id)]
    elapsed = time.perf_counter() - started
    await runner.aclose()
    assert [e["seq"] for e in received] == list(range(events + 1)), "lost or repeated events"
    return len(received) / elapsed


async def throughput(url: str, prefix: str, events: int, repeat: int) -> dict[str, Any]:
    memory, redis_ = [], []
    for _ in range(repeat):
        memory.append(await follow_job(MemoryJobStore(), events))
        store = RedisJobStore(url, prefix=prefix)
        try:
            redis_.append(await follow_job(store, events))
        finally:
            await store.close()
    best_memory, best_redis = max(memory), max(redis_)
    return {
        "events": events,
        "memory_events_per_s": round(best_memory),
        "redis_events_per_s": round(best_redis),
        "redis_vs_memory": round(best_redis / best_memory, 3),
    }


# -- 2. fan-out over two replicas ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_replica(url: str, log: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")},
        "PYTHONPATH": str(ROOT),
        "CONVEYOR_PORT": str(port),
        "CONVEYOR_REDIS_URL": url,
        "CONVEYOR_PIPELINES": "benchmarks.stamp_pipelines",
        "CONVEYOR_LOG_LEVEL": "warning",
    }
    with log.open("wb") as out:
        command = [sys.executable, "-m", "app.cli", "serve"]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return base, process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the replica did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)


async def follow_ndjson(base: str, path: str) -> list[tuple[dict[str, Any], float]]:
    """GET `path` as NDJSON over a plain socket: each event with the wall-clock time it arrived."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/x-ndjson\r\n\r\n"
    writer.write(request.encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n", 1)[0], head
    assert b"chunked" in head.lower(), head
    received: list[tuple[dict[str, Any], float]] = []
    buffer = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        if size == 0:
            break
        chunk = await reader.readexactly(size + 2)
        now = time.time()
        *lines, buffer = (buffer + chunk[:-2]).split(b"\n")
        received += [(json.loads(line), now) for line in lines if line]
    writer.close()
    return received


async def fan_out(url: str, followers: int, events: int, period: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as logs:
        started: list[tuple[str, subprocess.Popen[bytes]]] = []
        try:
            for name in "ab":
                started.append(start_replica(url, Path(logs) / f"{name}.log"))
            (a, _), (b, _) = started
            streams = await _follow_job(a, b, followers, events, period)
        finally:
            for _, process in started:
                process.terminate()
            for _, process in started:
                process.wait(15)
    return {"events_per_s": round(1 / period), **_delays(streams, events)}


async def _follow_job(
    a: str, b: str, followers: int, events: int, period: float
) -> list[list[tuple[dict[str, Any], float]]]:
    lead = 3.0  # time for the followers to connect before the first result
    items = [round(lead + k * period, 4) for k in range(events)]
    async with httpx.AsyncClient(timeout=30) as http:
        body = {"items": items, "mode": "as_completed"}
        response = await http.post(f"{a}/pipelines/stamp/jobs", json=body)
        response.raise_for_status()
        job_id = response.json()["job_id"]
    path = f"/jobs/{job_id}/events"
    return await asyncio.gather(*(follow_ndjson((a, b)[n % 2], path) for n in range(followers)))


def _delays(streams: list[list[tuple[dict[str, Any], float]]], events: int) -> dict[str, Any]:
    followers = len(streams)
    complete = 0
    delays: list[float] = []
    by_replica: dict[str, list[float]] = {"owner": [], "other": []}
    for n, stream in enumerate(streams):
        seqs = [event["seq"] for event, _ in stream]
        if seqs == list(range(events + 1)) and stream[-1][0]["type"] == "end":
            complete += 1
        mine = [(at - event["value"]) * 1000 for event, at in stream if event["type"] == "result"]
        delays += mine
        by_replica["owner" if n % 2 == 0 else "other"] += mine
    percentiles = statistics.quantiles(delays, n=100)
    return {
        "followers": followers,
        "events": events,
        "complete_followers": complete,
        "deliveries": len(delays),
        "delay_ms_p50": round(statistics.median(delays), 2),
        "delay_ms_p99": round(percentiles[98], 2),
        "delay_ms_max": round(max(delays), 2),
        "delay_ms_p50_on_owner": round(statistics.median(by_replica["owner"]), 2),
        "delay_ms_p50_on_other": round(statistics.median(by_replica["other"]), 2),
    }


# -- main ------------------------------------------------------------------------------------------


def with_prefix(url: str, prefix: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}prefix={prefix}"


def clean(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    default_url = os.environ.get("CONVEYOR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    parser.add_argument("--redis-url", default=default_url)
    parser.add_argument("--events", type=int, default=50_000, help="events of the throughput job")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--followers", type=int, default=200)
    parser.add_argument("--fan-events", type=int, default=300, help="events of the fan-out job")
    parser.add_argument("--period", type=float, default=0.02, help="seconds between its events")
    parser.add_argument("--only", choices=["throughput", "fan-out"])
    parser.add_argument("--json", type=Path, help="also write the figures there")
    args = parser.parse_args()

    prefix = f"conveyor-bench:{uuid.uuid4().hex[:8]}:"
    figures: dict[str, Any] = {}
    try:
        if args.only in (None, "throughput"):
            figures["throughput"] = asyncio.run(
                throughput(args.redis_url, prefix, args.events, args.repeat)
            )
            print("throughput:", json.dumps(figures["throughput"]), flush=True)
        if args.only in (None, "fan-out"):
            url = with_prefix(args.redis_url, prefix)
            figures["fan_out"] = asyncio.run(
                fan_out(url, args.followers, args.fan_events, args.period)
            )
            print("fan-out:", json.dumps(figures["fan_out"]), flush=True)
    finally:
        clean(args.redis_url, prefix)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
