"""A real Redis for the tests, and redis-server processes a test may stop and start.

`redis_url` (session): `CONVEYOR_TEST_REDIS_URL`, else 127.0.0.1:6379 when it answers, else a
redis-server started on a free port. `redis_prefix` (per test): a key prefix of its own, removed
afterwards, so that tests and parallel sessions sharing one Redis never see each other's jobs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

__all__ = ["RedisServer", "redis_prefix", "redis_url", "with_prefix"]

# Read at import: the service tests' autouse fixture clears CONVEYOR_* variables per test.
TEST_REDIS_URL = os.environ.get("CONVEYOR_TEST_REDIS_URL")
DEFAULT_URL = "redis://127.0.0.1:6379/0"
SESSION = uuid.uuid4().hex[:8]


def _answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server on a free loopback port, with an append-only file so that its data
    survives `stop()` then `start()` (a restart, as a real deployment's Redis would)."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("no Redis: set CONVEYOR_TEST_REDIS_URL or install redis-server")
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="conveyor-redis-"))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.dir), "--save", "", "--appendonly", "yes"]
        command += ["--appendfsync", "always", "--daemonize", "no", "--loglevel", "warning"]
        log = (self.dir / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while not _answers(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start:\n{(self.dir / 'redis.log').read_text()}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """SIGTERM: Redis flushes its append-only file and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def freeze(self) -> None:
        """SIGSTOP: Redis stops answering, and its connections stay open (not down: frozen)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.thaw()
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis every test of the session may use (never flushed: tests use their prefix)."""
    if TEST_REDIS_URL:
        if not _answers(TEST_REDIS_URL):
            pytest.fail(f"CONVEYOR_TEST_REDIS_URL={TEST_REDIS_URL} does not answer")
        yield TEST_REDIS_URL
    elif _answers(DEFAULT_URL):
        yield DEFAULT_URL
    else:
        server = RedisServer().start()
        try:
            yield server.url
        finally:
            server.close()


@pytest.fixture
def redis_prefix(redis_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A key prefix for this test alone; its keys are deleted afterwards."""
    prefix = f"conveyor-test:{SESSION}:{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass
    finally:
        client.close()


def with_prefix(url: str, prefix: str) -> str:
    """`url` with the store's `prefix` query parameter (what replicas of one test share)."""
    return f"{url}{'&' if '?' in url else '?'}prefix={prefix}"
