"""app.cli: `conveyor serve` as a real process: its logs from the start, and a SIGTERM while
clients are connected."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.conftest import ROOT, free_port, metric, server_process, stop_server, wait_healthy
from tests.app.wire import assert_run_shape, iter_sse

SSE = {"Accept": "text/event-stream"}
ITEMS = {"items": [0.01, 60]}  # a first result at once, then a call that would take a minute


async def _ndjson(http: httpx.AsyncClient, method: str, path: str, **kw: Any) -> list[Any]:
    async with http.stream(method, path, **kw) as response:
        return [json.loads(line) async for line in response.aiter_lines() if line]


async def _sse(http: httpx.AsyncClient, method: str, path: str, **kw: Any) -> list[Any]:
    async with http.stream(method, path, headers=SSE, **kw) as response:
        return [{"type": m.event, **m.json()} async for m in iter_sse(response.aiter_lines())]


async def test_sigterm_ends_jobs_followers_and_streams_then_exits(tmp_path: Path) -> None:
    """At SIGTERM, a running job is cancelled and its followers get `end` (cancelled); an open
    /stream (SSE, NDJSON, an NDJSON upload) ends with `end` (cancelled), an /invoke answers
    `"status": "cancelled"`; the process exits at once instead of after uvicorn's 10 s."""
    with server_process(tmp_path, CONVEYOR_SSE_PING_S="0.2") as (url, process, log):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            job = (await http.post("/pipelines/sleepy/jobs", json=ITEMS)).json()
            upload = b"0.01\n60\n"
            clients = {
                "follower ndjson": _ndjson(http, "GET", job["events_url"]),
                "follower sse": _sse(http, "GET", job["events_url"]),
                "stream ndjson": _ndjson(http, "POST", "/pipelines/sleepy/stream", json=ITEMS),
                "stream sse": _sse(http, "POST", "/pipelines/sleepy/stream", json=ITEMS),
                "upload": _ndjson(
                    http,
                    "POST",
                    "/pipelines/sleepy/stream",
                    content=upload,
                    headers={"Content-Type": "application/x-ndjson"},
                ),
                "invoke": http.post("/pipelines/sleepy/invoke", json=ITEMS),
            }
            tasks = {name: asyncio.create_task(work) for name, work in clients.items()}
            deadline = time.monotonic() + 20
            while metric((await http.get("/metrics")).text, "svc_fixture_calls_in_flight") < 5:
                assert time.monotonic() < deadline, "the runs never got to their long call"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # the followers have caught up
            stopped_at = time.monotonic()
            process.send_signal(signal.SIGTERM)
            done = await asyncio.wait_for(asyncio.gather(*tasks.values()), 9)
            answers = dict(zip(tasks, done, strict=True))
        await asyncio.to_thread(process.wait, 9)
        exited_after = time.monotonic() - stopped_at
    text = log.read_text()
    for name in ("follower ndjson", "follower sse", "stream ndjson", "stream sse", "upload"):
        events = answers[name]
        assert_run_shape(events)
        assert events[0] == {"type": "result", "seq": 0, "value": 0.01, "sources": [0]}, name
        assert events[-1]["status"] == "cancelled", (name, events)
    invoked = answers["invoke"]
    assert invoked.status_code == 200
    assert invoked.json()["status"] == "cancelled" and invoked.json()["results"] == [0.01]
    assert exited_after < 5, f"the process took {exited_after:.1f} s to exit:\n{text[-3000:]}"
    assert "timeout graceful shutdown exceeded" not in text


OPAQUE = """
from conveyor_core import single_task


class Opaque:
    pass


@single_task
async def take(x: Opaque) -> Opaque:
    return x


PIPELINES = {"opaque": take}
"""


def test_startup_warnings_are_json_lines(tmp_path: Path) -> None:
    """Logging is configured before the registry loads: its warnings are JSON lines too."""
    (tmp_path / "opaque_pipelines.py").write_text(OPAQUE)
    path = f"{ROOT}{os.pathsep}{tmp_path}"
    with server_process(tmp_path, CONVEYOR_PIPELINES="opaque_pipelines", PYTHONPATH=path) as (
        _,
        _,
        log,
    ):
        pass
    lines = [line for line in log.read_text().splitlines() if "no JSON schema" in line]
    assert lines, log.read_text()
    for line in lines:
        entry = json.loads(line)
        assert entry["level"] == "warning" and entry["logger"] == "conveyor.service.registry"


# -- a user's project folder: `CONVEYOR_PIPELINES=... conveyor serve` run there ----------------

CONSOLE_SCRIPT = Path(sys.executable).parent / "conveyor"

USER_MODELS = """
from pydantic import BaseModel


class Order(BaseModel):
    sku: str
    quantity: int
"""

USER_PIPELINES = """
from conveyor_core import single_task

from {package}.models import Order  # an absolute import of the user's own package


@single_task
async def total(order: Order) -> dict:
    \"\"\"Counts the items of an order.\"\"\"
    return {{"sku": order.sku, "total": order.quantity * 2, "from": __name__}}


PIPELINES = {{"orders": total}}
"""


def _user_project(root: Path, package: str) -> Path:
    """A project folder holding the package `package` (models + pipelines), as a user has."""
    folder = root / "project"
    (folder / package).mkdir(parents=True)
    (folder / package / "__init__.py").write_text("")
    (folder / package / "models.py").write_text(USER_MODELS)
    (folder / package / "pipelines.py").write_text(USER_PIPELINES.format(package=package))
    return folder


def _user_environment(**env: str) -> dict[str, str]:
    """The environment of a shell in the user's folder: no PYTHONPATH, no CONVEYOR_* but ours."""
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_") and k != "PYTHONPATH"
    }
    return {**inherited, **env}


@pytest.mark.parametrize("package", ["mypkg", "app"])
def test_serve_imports_the_users_pipelines_from_the_working_directory(
    tmp_path: Path, package: str
) -> None:
    """`CONVEYOR_PIPELINES=mypkg.pipelines conveyor serve` in the user's folder, without
    PYTHONPATH, as the README shows; a package named `app` (the service's folder name in this
    repository) is the user's, not the service's."""
    folder = _user_project(tmp_path, package)
    port = free_port()
    env = _user_environment(
        CONVEYOR_PIPELINES=f"{package}.pipelines",
        CONVEYOR_PORT=str(port),
        CONVEYOR_HOST="127.0.0.1",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "serve"], cwd=folder, env=env, stdout=out, stderr=out
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, log)
        names = [p["name"] for p in httpx.get(f"{url}/pipelines").json()]
        assert "orders" in names and "quickstart" in names  # the user's and the built-in ones
        answer = httpx.post(
            f"{url}/pipelines/orders/invoke", json={"items": [{"sku": "a", "quantity": 3}]}
        ).json()
        assert answer["results"] == [{"sku": "a", "total": 6, "from": f"{package}.pipelines"}]
        refused = httpx.post(f"{url}/pipelines/orders/invoke", json={"items": [{"sku": "a"}]})
        assert refused.status_code == 422  # validated against the user's own model
    finally:
        stop_server(process)


def test_serve_names_a_missing_module_in_one_line(tmp_path: Path) -> None:
    """A module that is in no folder of the path (nor the working directory) stops the start
    with one line naming it."""
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "serve"],
        cwd=tmp_path,
        env=_user_environment(CONVEYOR_PIPELINES="nopkg.pipelines"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "conveyor: CONVEYOR_PIPELINES: cannot import 'nopkg.pipelines': "
        "ModuleNotFoundError: No module named 'nopkg'"
    ]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "CONVEYOR_REDIS_URL",
            "http://user:s3cret@x",
            "Redis URL must specify one of the following schemes (redis://, rediss://, unix://)",
        ),
        ("CONVEYOR_REDIS_URL", "redis://localhost:99999/0", "Port out of range 0-65535"),
        ("CONVEYOR_REDIS_URL", "redis://localhost/zero", "the database must be a number"),
        ("CONVEYOR_PORT", "http", "Input should be a valid integer"),
        ("CONVEYOR_API_KEYS", ",", "CONVEYOR_API_KEYS is set but holds no key"),
    ],
)
def test_a_bad_setting_is_one_line_without_traceback(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "serve"],
        cwd=tmp_path,
        env=_user_environment(**{variable: value}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"conveyor: invalid settings: {variable}: "), lines
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr  # values are not echoed: a URL may hold a password
