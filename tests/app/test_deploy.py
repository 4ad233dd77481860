"""The deployment files: docker-compose.yml against the compose specification's JSON schema, and
the Dockerfile's start command and environment exercised the way a container runs them."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import check_jsonschema
import httpx
import jsonschema
import pytest
import yaml

from app.core.config import Settings
from tests.app.conftest import ROOT, free_port, wait_healthy

COMPOSE_SCHEMA = (
    Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
)


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def env_pairs(arguments: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(arguments))


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = list(validator_class(schema).iter_errors(compose))
    assert errors == []
    broken = {**compose, "services": {"conveyor": {"ports": "8000"}}}
    assert list(validator_class(schema).iter_errors(broken))  # the schema does bite


def test_compose_file_with_check_jsonschema() -> None:
    tool = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(tool), "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_service_agrees_with_the_image(
    compose: dict[str, Any], dockerfile: list[tuple[str, str]]
) -> None:
    service = compose["services"]["conveyor"]
    env = service["environment"]
    known = {f"CONVEYOR_{name.upper()}" for name in Settings.model_fields}
    assert set(env) - {"RAY_ADDRESS"} <= known
    assert service["expose"] == [env["CONVEYOR_PORT"]]  # replicas: the load balancer publishes
    cmd = next(args for keyword, args in dockerfile if keyword == "CMD")
    assert service["command"] == exec_form(cmd)
    assert service["build"]["dockerfile"] == "Dockerfile"
    assert "/healthz" in " ".join(service["healthcheck"]["test"])


def test_dockerfile_shape(dockerfile: list[tuple[str, str]]) -> None:
    keywords = [keyword for keyword, _ in dockerfile]
    assert dockerfile[0] == ("FROM", "python:3.11-slim")
    assert ("ARG", "EXTRAS=service") in dockerfile
    assert any(k == "RUN" and 'pip install ".[${EXTRAS}]"' in a for k, a in dockerfile)
    users = [args for keyword, args in dockerfile if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    env = {}
    for keyword, args in dockerfile:
        if keyword == "ENV":
            env.update(env_pairs(args))
    assert env["CONVEYOR_HOST"] == "0.0.0.0"
    assert "HEALTHCHECK" in keywords and "CMD" in keywords
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_the_container_start_command_serves(
    dockerfile: list[tuple[str, str]], tmp_path: Path
) -> None:
    """Start the service as the image's CMD with the image's ENV (the port remapped, as
    `docker run -e CONVEYOR_PORT=...` would), then run the image's HEALTHCHECK against it."""
    env: dict[str, str] = {}
    for keyword, args in dockerfile:
        if keyword == "ENV":
            env.update(env_pairs(args))
    command = exec_form(next(args for keyword, args in dockerfile if keyword == "CMD"))
    health = next(args for keyword, args in dockerfile if keyword == "HEALTHCHECK")
    health_command = exec_form(health.split(" CMD ", 1)[1])

    bin_dir = str(Path(sys.executable).parent)
    assert shutil.which(command[0], path=bin_dir), "the console script is installed"
    port = free_port()
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")},
        **env,
        "CONVEYOR_PORT": str(port),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }
    log = tmp_path / "container.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=environ, cwd=tmp_path, stdout=out, stderr=out)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, log)
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        pipelines = httpx.get(f"{url}/pipelines").json()
        assert "quickstart" in [p["name"] for p in pipelines]
        result = subprocess.run(health_command, env=environ, timeout=10, check=False)
        assert result.returncode == 0
        # the log is JSON lines, and says where it listens
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        assert any(f"0.0.0.0:{port}" in line["message"] for line in lines)
    finally:
        process.send_signal(signal.SIGTERM)  # what `docker stop` sends
        assert process.wait(20) in (0, -signal.SIGTERM)  # uvicorn re-raises it when done
    assert "Application shutdown complete" in log.read_text()
    failing = subprocess.run(
        health_command,
        env={**environ, "CONVEYOR_PORT": str(free_port())},
        timeout=10,
        capture_output=True,
        check=False,
    )
    assert failing.returncode != 0  # the health check does fail when nothing answers


def test_compose_ray_profile(compose: dict[str, Any]) -> None:
    """`docker compose --env-file deploy/ray.env --profile ray up`: a Ray head and a worker from
    the service's image built with the ray extra, and the replicas joining the head's client
    port."""
    services = compose["services"]
    assert {name for name, s in services.items() if "ray" in s.get("profiles", [])} == {
        "ray-head",
        "ray-worker",
    }
    assert "profiles" not in services["conveyor"]  # the replicas run in every profile
    settings = dict(
        line.split("=", 1)
        for line in (ROOT / "deploy" / "ray.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    extras = set(settings["CONVEYOR_EXTRAS"].split(","))
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert extras == {"service", "ray"} and "\nray = [" in pyproject
    head, worker = services["ray-head"], services["ray-worker"]
    for service in (head, worker, services["conveyor"]):
        assert service["image"] == "conveyor-streaming:latest"
        assert service["build"]["args"] == {"EXTRAS": "${CONVEYOR_EXTRAS:-service}"}
    assert services["conveyor"]["environment"]["RAY_ADDRESS"] == "${RAY_ADDRESS:-}"
    host, port = settings["RAY_ADDRESS"].removeprefix("ray://").split(":")
    assert host == "ray-head" and port in head["expose"]
    assert f"--ray-client-server-port={port}" in head["command"]
    assert worker["command"][:2] == ["ray", "start"]
    assert "--address=ray-head:6379" in worker["command"]
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"
