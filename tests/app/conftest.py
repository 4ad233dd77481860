"""Fixtures of the service tests: apps in process (httpx over ASGI) and real uvicorn processes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.core.logging import JsonFormatter
from app.main import create_app
from tests.app.redis_server import redis_prefix, redis_url  # noqa: F401 - shared fixtures

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_PIPELINES = "tests.app.svc_pipelines"
ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture(autouse=True)
def _no_conveyor_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process apps see only the settings a test gives them."""
    for name in list(os.environ):
        if name.startswith("CONVEYOR_"):
            monkeypatch.delenv(name)


def make_settings(**overrides: Any) -> Settings:
    overrides.setdefault("pipelines", [FIXTURE_PIPELINES])
    return Settings(**overrides)


@asynccontextmanager
async def app_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client over the ASGI app, inside its lifespan."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture
def make_client() -> ClientFactory:
    """`async with make_client(max_items=3) as client:` an app built with those settings."""

    def factory(**overrides: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        return app_client(create_app(make_settings(**overrides)))

    return factory


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as client:
        yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"the service exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        if time.monotonic() > deadline:
            pytest.fail(f"no /healthz within {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


@contextlib.contextmanager
def run_server(tmp_path: Path, *, command: list[str] | None = None, **env: str) -> Iterator[str]:
    """`conveyor serve` (or `command`) on a free loopback port; its base URL once healthy."""
    with server_process(tmp_path, command=command, **env) as (url, _, _):
        yield url


@contextlib.contextmanager
def server_process(
    tmp_path: Path, *, command: list[str] | None = None, **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """As `run_server`, with the process and its log file too."""
    url, process, log = start_server(tmp_path, command=command, **env)
    try:
        wait_healthy(url, process, log)
        yield url, process, log
    finally:
        stop_server(process)


def start_server(
    tmp_path: Path, *, command: list[str] | None = None, **env: str
) -> tuple[str, subprocess.Popen[bytes], Path]:
    """Start `conveyor serve` (or `command`) on a free loopback port; don't wait for it."""
    port = free_port()
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")},
        "PYTHONPATH": str(ROOT),
        "CONVEYOR_HOST": "127.0.0.1",
        "CONVEYOR_PORT": str(port),
        "CONVEYOR_PIPELINES": FIXTURE_PIPELINES,
        **env,
    }
    log = tmp_path / f"server-{port}.log"
    command = command or [sys.executable, "-m", "app.cli", "serve"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=out, stderr=out)
    return f"http://127.0.0.1:{port}", process, log


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Terminate, and kill if it takes longer than 15 s."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real service for the end-to-end tests: SSE pings every 0.2 s."""
    with run_server(tmp_path_factory.mktemp("server"), CONVEYOR_SSE_PING_S="0.2") as url:
        yield url


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return 0.0


class LogCapture(logging.Handler):
    """The service's log records, as the JSON lines it writes."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, object]] = []
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def captured() -> Iterator[LogCapture]:
    """Captures what the `conveyor` loggers write during a test."""
    handler = LogCapture()
    logger = logging.getLogger("conveyor")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
