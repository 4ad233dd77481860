"""How long a large JSON body holds other clients up: `python benchmarks/body_stall.py`.

One `conveyor serve` process (the default settings). While curl posts a large body to
`/pipelines/quickstart/invoke` (which takes integers: each body here is refused, 413 or 422,
once decoded as far as it needs to be), another asks `/healthz` every 5 ms; the
figure is the worst `/healthz` latency during the post (the stall every other client of the
process sees), with the post's status and time and the server's peak memory (VmHWM). Bodies:

- the attack of issue 11: 60 MB of `0,` (30 million tiny items, far over CONVEYOR_MAX_ITEMS);
- a legitimate body near the limits: 10,000 items of 6 KB strings (60 MB);
- one dense item just under CONVEYOR_MAX_ITEM_BYTES (1 MiB of small numbers), 40 of them.

Client and server share the machine; figures vary with its load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


BODIES = {
    "attack: 60 MB of 0,": lambda: b'{"items": [' + b"0," * 30_000_000 + b"0]}",
    "10,000 items of 6 KB strings": lambda: (
        b'{"items": [' + b",".join([b'"' + b"x" * 6000 + b'"'] * 10_000) + b"]}"
    ),
    "40 dense items of 1 MB": lambda: (
        b'{"items": [' + b",".join([b"[" + b"0," * 500_000 + b"0]"] * 40) + b"]}"
    ),
}


async def _one(base: str, pid: int, name: str, body: bytes) -> None:
    worst = 0.0
    done = asyncio.Event()

    async def probe() -> None:
        nonlocal worst
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            while not done.is_set():
                started = time.perf_counter()
                await client.get("/healthz")
                worst = max(worst, time.perf_counter() - started)
                await asyncio.sleep(0.005)

    prober = asyncio.create_task(probe())
    await asyncio.sleep(0.2)
    worst = 0.0
    with tempfile.NamedTemporaryFile(suffix=".json") as file:
        file.write(body)
        file.flush()
        # curl posts it: a client in this process would stall the probe itself
        command = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect:"]
        command += ["--data-binary", f"@{file.name}", f"{base}/pipelines/quickstart/invoke"]
        started = time.perf_counter()
        curl = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
        status = (await curl.communicate())[0].decode()
        seconds = time.perf_counter() - started
    done.set()
    await prober
    print(
        f"{name}: {status} in {seconds:.2f} s; worst /healthz during it "
        f"{worst * 1000:.0f} ms; server peak RSS {_peak_rss_mb(pid):.0f} MB"
    )


def _serve() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "CONVEYOR_PORT": str(port), "CONVEYOR_LOG_LEVEL": "warning"}
    env["PYTHONPATH"] = str(ROOT)
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve"], env=env)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{base}/healthz")
            break
        except httpx.TransportError:
            time.sleep(0.05)
    return server, base


def main(rounds: int) -> None:
    for name, make in BODIES.items():
        body = make()
        for _ in range(rounds):
            server, base = _serve()
            try:
                asyncio.run(_one(base, server.pid, name, body))
            finally:
                server.terminate()
                server.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args().rounds)
