"""app.server and the body deadline: `conveyor serve` against slow and numerous clients, on a
real uvicorn process and raw sockets."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from app.core.config import Settings
from app.server import HeaderDeadline, server_options
from tests.app.conftest import run_server


def _connect(url: str) -> socket.socket:
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_headers_sent_a_byte_at_a_time_are_cut_off(tmp_path: Path) -> None:
    with run_server(tmp_path, CONVEYOR_HEADER_TIMEOUT_S="1") as url:
        with _connect(url) as slow:
            started = time.monotonic()
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # and never the rest
            assert _read_all(slow) == b""  # closed by the server
            assert 0.8 < time.monotonic() - started < 8
        with _connect(url) as kept:  # a kept-alive connection: each request has the deadline
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b'{"status":"ok"}'):  # the whole first response
                answer += kept.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200")
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHo")
            assert _read_all(kept) == b""


def test_a_body_slower_than_its_deadline_is_408(tmp_path: Path) -> None:
    with run_server(tmp_path, CONVEYOR_BODY_TIMEOUT_S="1") as url:
        with _connect(url) as slow:
            head = b"POST /pipelines/echo/invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            slow.sendall(head + b"\r\n" + b'{"items": [')
            started = time.monotonic()
            answer = _read_all(slow)
        assert answer.startswith(b"HTTP/1.1 408")
        assert b"CONVEYOR_BODY_TIMEOUT_S" in answer
        assert 0.8 < time.monotonic() - started < 8


def test_connections_beyond_the_cap_get_503(tmp_path: Path) -> None:
    with run_server(tmp_path, CONVEYOR_MAX_CONNECTIONS="3") as url:
        idle = [_connect(url) for _ in range(3)]
        try:
            time.sleep(0.3)
            assert httpx.get(f"{url}/healthz", timeout=5).status_code == 503
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.3)
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


def test_the_limits_are_settings() -> None:
    defaults = Settings()
    assert (defaults.max_connections, defaults.header_timeout_s) == (4096, 10.0)
    assert (defaults.body_timeout_s, defaults.keep_alive_s) == (60.0, 5)
    options = server_options(Settings(max_connections=7, header_timeout_s=3, keep_alive_s=2))
    assert options["limit_concurrency"] == 7 and options["timeout_keep_alive"] == 2
    assert issubclass(options["http"], HeaderDeadline) and options["http"].header_timeout_s == 3
