"""Service processes for the scale-out tests: `conveyor serve` replicas on free loopback ports."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.app.conftest import start_server, stop_server, wait_healthy

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
            url, process, log = start_server(tmp_path, **{"CONVEYOR_SSE_PING_S": "1", **env})
            started.append(Replica(url, process, log))
        for replica in started:
            wait_healthy(replica.url, replica.process, replica.log)
        yield started
    finally:
        for replica in started:
            if replica.process.poll() is None:
                replica.process.terminate()
        for replica in started:
            stop_server(replica.process)
