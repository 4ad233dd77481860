"""Service processes for the scale-out tests: `conveyor serve` replicas on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.app.conftest import FIXTURE_PIPELINES, ROOT, free_port, wait_healthy

__all__ = ["Replica", "replicas"]


@dataclass
class Replica:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def replicas(tmp_path: Path, n: int, **env: str) -> Iterator[list[Replica]]:
    """`n` service processes with the same environment, each on its own free port."""
    started: list[Replica] = []
    try:
        for _ in range(n):
            port = free_port()
            environ = {
                **{k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")},
                "PYTHONPATH": str(ROOT),
                "CONVEYOR_HOST": "127.0.0.1",
                "CONVEYOR_PORT": str(port),
                "CONVEYOR_PIPELINES": FIXTURE_PIPELINES,
                "CONVEYOR_SSE_PING_S": "1",
                **env,
            }
            log = tmp_path / f"replica-{port}.log"
            with log.open("wb") as out:
                command = [sys.executable, "-m", "app.cli", "serve"]
                process = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=out, stderr=out)
            started.append(Replica(f"http://127.0.0.1:{port}", process, log))
        for replica in started:
            wait_healthy(replica.url, replica.process, replica.log)
        yield started
    finally:
        for replica in started:
            if replica.process.poll() is None:
                replica.process.terminate()
        for replica in started:
            try:
                replica.process.wait(15)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait()
