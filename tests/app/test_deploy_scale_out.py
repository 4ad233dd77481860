"""The scaled-out deployment: docker-compose.yml wires Redis, three replicas and nginx together,
and deploy/nginx.conf streams SSE and NDJSON unbuffered.

No Docker engine runs here. When an `nginx` binary is at hand (`CONVEYOR_TEST_NGINX`, else on
PATH), the load balancer test runs deploy/nginx.conf itself in front of two real replicas sharing
one Redis, with only the Docker-specific lines rewritten (the upstream servers, the listen
address, Docker's DNS resolver).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from app.core.config import Settings
from tests.app.conftest import ROOT, free_port
from tests.app.redis_server import with_prefix
from tests.app.replicas import replicas
from tests.app.wire import DuplexUpload, assert_run_shape, iter_sse

NGINX_CONF = ROOT / "deploy" / "nginx.conf"
NGINX = os.environ.get("CONVEYOR_TEST_NGINX") or shutil.which("nginx")
SSE = {"Accept": "text/event-stream"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def _directives(text: str) -> list[str]:
    """nginx directives, one per statement, comments dropped, whitespace collapsed."""
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return [" ".join(part.split()) for part in re.split(r"[;{}]", code) if part.strip()]


def test_redis_replicas_and_load_balancer_are_wired(compose: dict[str, Any]) -> None:
    services = compose["services"]
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == {"redis", "conveyor", "lb"}  # the ray profile adds Ray nodes
    redis = services["redis"]
    assert "redis-cli" in redis["healthcheck"]["test"] and "ping" in redis["healthcheck"]["test"]
    assert "--appendonly" in redis["command"]  # running jobs survive a Redis restart

    app = services["conveyor"]
    assert app["deploy"]["replicas"] == 3
    assert app["depends_on"] == {"redis": {"condition": "service_healthy"}}
    env = app["environment"]
    assert env["CONVEYOR_REDIS_URL"].startswith("redis://redis:6379")
    assert float(env["CONVEYOR_JOB_LEASE_S"]) > 0
    known = {f"CONVEYOR_{name.upper()}" for name in Settings.model_fields}
    assert set(env) - {"RAY_ADDRESS"} <= known  # RAY_ADDRESS: Ray's own, for the ray profile
    assert "ports" not in app and "container_name" not in app  # replicas publish nothing

    lb = services["lb"]
    assert lb["image"].startswith("nginx:")
    assert lb["depends_on"] == {"conveyor": {"condition": "service_healthy"}}
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in lb["volumes"]
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert published == ["8000:8000"]  # one published port: the load balancer's


def test_nginx_conf_streams_through_to_every_replica() -> None:
    directives = _directives(NGINX_CONF.read_text())
    for expected in (
        "server conveyor:8000 resolve max_fails=1 fail_timeout=5s",
        "listen 8000",
        "proxy_pass http://conveyor",
        "proxy_http_version 1.1",
        'proxy_set_header Connection ""',
        "proxy_buffering off",
        "proxy_request_buffering off",
        "proxy_cache off",
        "gzip off",
        "resolver 127.0.0.11 valid=10s ipv6=off",
    ):
        assert expected in directives, expected
    timeout = next(d for d in directives if d.startswith("proxy_read_timeout"))
    assert timeout == "proxy_read_timeout 1h"  # far longer than CONVEYOR_SSE_PING_S
    assert not any("non_idempotent" in d for d in directives)  # a POST is never sent twice


def _local_conf(tmp_path: Path, listen: int, upstreams: list[str]) -> Path:
    """deploy/nginx.conf for loopback: Docker's names and DNS swapped for local addresses."""
    text = NGINX_CONF.read_text()
    servers = "\n".join(f"        server {u} max_fails=1 fail_timeout=5s;" for u in upstreams)
    text = re.sub(r"^\s*server conveyor:8000 .*;$", servers, text, count=1, flags=re.M)
    text = re.sub(r"^\s*resolver .*;$", "", text, count=1, flags=re.M)
    text = text.replace("listen 8000;", f"listen 127.0.0.1:{listen};")
    text = text.replace("access_log /dev/stdout;", f"access_log {tmp_path}/access.log;")
    text = text.replace("error_log /dev/stderr warn;", f"error_log {tmp_path}/error.log warn;")
    temp = "".join(
        f"\n    {kind}_temp_path {tmp_path}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {", "http {" + temp, 1)
    head = f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log warn;\n"
    if os.geteuid() == 0:
        head += "user root;\n"  # workers may use the test's temporary directory
    conf = tmp_path / "nginx.conf"
    conf.write_text(head + text)
    return conf


@pytest.fixture
def nginx_in_front(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> Iterator[tuple[str, list[str]]]:
    if NGINX is None:
        pytest.skip("no nginx binary (set CONVEYOR_TEST_NGINX to run the load balancer test)")
    env = {"CONVEYOR_REDIS_URL": with_prefix(redis_url, redis_prefix)}
    with replicas(tmp_path, 2, **env) as started:
        port = free_port()
        upstreams = [r.url.removeprefix("http://") for r in started]
        conf = _local_conf(tmp_path, port, upstreams)
        command = [NGINX, "-p", str(tmp_path), "-c", str(conf)]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr
        process = subprocess.Popen([*command, "-g", "daemon off;"], stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            yield url, [r.url for r in started]
        finally:
            process.terminate()
            process.wait(10)


@pytest.mark.redis
async def test_sse_through_nginx_is_live_and_resumes_on_any_replica(
    nginx_in_front: tuple[str, list[str]],
) -> None:
    url, _ = nginx_in_front
    items = [0.2, 0.4, 0.6, 0.8, 3.0]
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        submitted = await http.post("/pipelines/timeline/jobs", json={"items": items})
        assert submitted.status_code == 202
        job_id = submitted.json()["job_id"]
        started = time.monotonic()
        first: list[dict[str, Any]] = []
        arrivals: list[float] = []
        async with http.stream("GET", f"/jobs/{job_id}/events", headers=SSE) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            async for message in iter_sse(response.aiter_lines()):
                first.append({"type": message.event, **message.json()})
                arrivals.append(time.monotonic() - started)
                if len(first) == 2:
                    break
        # unbuffered: the first results arrived while the job still had seconds to go
        assert arrivals[0] < 2.0, arrivals
        rest: list[dict[str, Any]] = []
        headers = {**SSE, "Last-Event-ID": str(first[-1]["seq"])}
        for _ in range(3):  # reconnections: round robin lands them on both replicas
            rest = []
            async with http.stream("GET", f"/jobs/{job_id}/events", headers=headers) as response:
                async for message in iter_sse(response.aiter_lines()):
                    rest.append({"type": message.event, **message.json()})
        events = first + rest
        assert_run_shape(events)
        assert [e["value"] for e in events if e["type"] == "result"] == items
        for _ in range(4):
            assert (await http.get(f"/jobs/{job_id}")).json()["status"] == "succeeded"


@pytest.mark.redis
@pytest.mark.parametrize("expect", [False, True], ids=["plain", "expect-100-continue"])
async def test_ndjson_upload_streams_through_nginx(
    nginx_in_front: tuple[str, list[str]], expect: bool
) -> None:
    """Results come back through nginx while the upload is still going (`curl -T -` asks
    `Expect: 100-continue` first: nginx answers it)."""
    url, _ = nginx_in_front
    headers = {"Content-Type": "application/x-ndjson", "Accept": "application/x-ndjson"}
    if expect:
        headers["Expect"] = "100-continue"
    async with DuplexUpload(url, "/pipelines/echo/stream", headers) as upload:
        if expect:
            assert await asyncio.wait_for(upload.read_interim(), 5) == "HTTP/1.1 100 Continue"
        await upload.send(b'{"n": 1}\n')
        await upload.read_head()
        assert upload.status == 200
        first = json.loads(await asyncio.wait_for(upload.read_line(), 10))
        assert first == {"type": "result", "seq": 0, "value": {"n": 1}, "sources": [0]}
        await upload.send(b"2\n")
        second = json.loads(await asyncio.wait_for(upload.read_line(), 10))
        assert second["value"] == 2
        await upload.end()
        end = json.loads(await asyncio.wait_for(upload.read_line(), 10))
        assert end["type"] == "end" and end["stats"]["inputs"] == 2
