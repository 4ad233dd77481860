"""The deployment files: docker-compose.yml against the compose specification's JSON schema, and
the Dockerfile's start command and environment exercised the way a container runs them."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import check_jsonschema
import httpx
import jsonschema
import pytest
import yaml

from app.core.config import Settings
from tests.app.conftest import ROOT, free_port, stop_server, wait_healthy

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
    assert any(k == "RUN" and "pip install --no-deps ." in a for k, a in dockerfile)
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


def _copied(dockerfile: list[tuple[str, str]]) -> list[tuple[int, list[str]]]:
    """(position, sources) of each COPY."""
    return [(i, a.split()[:-1]) for i, (k, a) in enumerate(dockerfile) if k == "COPY"]


def test_dockerfile_installs_the_dependencies_before_the_code(
    dockerfile: list[tuple[str, str]], tmp_path: Path
) -> None:
    """A layer of dependencies read from pyproject.toml alone, then the code: a change of the
    code does not reinstall them. The dependency step is run here on the real pyproject."""
    copies = _copied(dockerfile)
    assert copies[0][1] == ["pyproject.toml"]
    code_at = min(i for i, sources in copies if {"app", "conveyor_core"} & set(sources))
    runs = [(i, a) for i, (k, a) in enumerate(dockerfile) if k == "RUN"]
    deps = [(i, a) for i, a in runs if "pip install -r" in a]
    assert len(deps) == 1 and copies[0][0] < deps[0][0] < code_at
    code = [a for i, a in runs if i > code_at]
    assert code == ["pip install --no-deps . && pip check"]  # nothing more, and nothing missed
    needed = {"README.md", "LICENSE", "conveyor_core", "conveyor", "app"}  # what the build reads
    assert needed <= {s for _, sources in copies for s in sources}

    step = deps[0][1].split(" > ")[0]  # the `python -c ...` that writes the requirements
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    argv = shlex.split(step)
    assert argv[:2] == ["python", "-c"]
    written = subprocess.run(
        [sys.executable, "-c", argv[2]], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert written == project["dependencies"] + project["optional-dependencies"]["service"]
    assert not any("conveyor" in requirement for requirement in written)


# -- one's own pipelines in the image ------------------------------------------------------------

EXAMPLE = ROOT / "examples" / "docker"
IMAGE = "conveyor-streaming"  # the tag the Dockerfile's comment and the compose file give


def _serve_as_container(
    env: dict[str, str], command: list[str], cwd: Path, tmp_path: Path
) -> tuple[str, subprocess.Popen[bytes], Path]:
    bin_dir = str(Path(sys.executable).parent)
    port = free_port()
    environ = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith("CONVEYOR_") and k != "PYTHONPATH"
        },
        **env,
        "CONVEYOR_PORT": str(port),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }
    log = tmp_path / "container.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=environ, cwd=cwd, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process, log)
    return url, process, log


def _assert_serves_the_example(url: str) -> None:
    names = [p["name"] for p in httpx.get(f"{url}/pipelines").json()]
    assert "shout" in names and "quickstart" in names
    answer = httpx.post(f"{url}/pipelines/shout/invoke", json={"items": ["hi", "you", "there"]})
    assert answer.json()["results"] == ["HI! YOU!", "THERE!"]


def _image(dockerfile: list[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    env: dict[str, str] = {}
    for keyword, args in dockerfile:
        if keyword == "ENV":
            env.update(env_pairs(args))
    return env, exec_form(next(args for keyword, args in dockerfile if keyword == "CMD"))


def test_an_image_from_the_service_image_serves_its_own_pipelines(
    dockerfile: list[tuple[str, str]], tmp_path: Path
) -> None:
    """examples/docker/Dockerfile (`FROM` the service's image, `COPY` a package, set
    CONVEYOR_PIPELINES), played here: its WORKDIR and COPY in a folder standing for the
    container's root, then the base image's CMD with both images' ENV."""
    mine = parse_dockerfile((EXAMPLE / "Dockerfile").read_text())
    assert mine[0] == ("FROM", IMAGE)
    assert "CMD" not in [k for k, _ in mine]  # the service's own command runs
    assert {k for k, _ in mine} <= {"FROM", "WORKDIR", "COPY", "ENV"}
    root = tmp_path / "root"
    workdir = Path("/")
    for keyword, args in mine:
        if keyword == "WORKDIR":
            workdir = workdir / args
            (root / workdir.relative_to("/")).mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            source, target = args.split()
            shutil.copytree(EXAMPLE / source, root / (workdir / target).relative_to("/"))
    base_env, command = _image(dockerfile)
    env = {**base_env, **_image([*mine, ("CMD", json.dumps(command))])[0]}
    assert env["CONVEYOR_PIPELINES"] == "mypkg.pipelines"
    url, process, _ = _serve_as_container(env, command, root / workdir.relative_to("/"), tmp_path)
    try:
        _assert_serves_the_example(url)
    finally:
        stop_server(process)


def test_a_mounted_folder_of_pipelines(dockerfile: list[tuple[str, str]], tmp_path: Path) -> None:
    """The README's `docker run -v ... -w ... -e CONVEYOR_PIPELINES=...`, played here."""
    readme = (ROOT / "README.md").read_text().replace("\\\n", " ")
    line = next(x for x in readme.splitlines() if x.startswith("docker run") and " -v " in x)
    argv = shlex.split(line.replace("$PWD", str(EXAMPLE)))
    assert argv[-1] == IMAGE
    options = dict(zip(argv[2:-1:2], argv[3:-1:2], strict=True))
    assert set(options) == {"-p", "-v", "-w", "-e"}
    source, target, mode = options["-v"].split(":")
    assert mode == "ro" and Path(target).parent == Path(options["-w"])
    mounted = tmp_path / "root" / Path(target).relative_to("/")
    mounted.parent.mkdir(parents=True)
    mounted.symlink_to(source, target_is_directory=True)
    base_env, command = _image(dockerfile)
    env = {**base_env, **env_pairs(options["-e"])}
    url, process, _ = _serve_as_container(env, command, mounted.parent, tmp_path)
    try:
        _assert_serves_the_example(url)
    finally:
        stop_server(process)


# -- compose: how long each service waits for the ones it needs -----------------------------------


def _seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value):
        total += float(number) * units[unit]
    return total


def _start_wait(compose: dict[str, Any], name: str) -> float:
    """Seconds a service waits, beyond the services' own start times, before it starts: for
    each dependency it needs healthy, that one's own wait plus the delay of its first health
    check (`start_interval` while it starts, on Docker Engine 25+)."""
    waits = [0.0]
    for dependency, rule in compose["services"][name].get("depends_on", {}).items():
        if rule.get("condition") == "service_healthy":
            check = compose["services"][dependency]["healthcheck"]
            first = _seconds(check.get("start_interval", check["interval"]))
            waits.append(_start_wait(compose, dependency) + first)
    return max(waits)


def _awaited(compose: dict[str, Any], name: str) -> set[str]:
    """The services `name` waits to be healthy, directly or through another."""
    found: set[str] = set()
    for dependency, rule in compose["services"][name].get("depends_on", {}).items():
        if rule.get("condition") == "service_healthy":
            found |= {dependency, *_awaited(compose, dependency)}
    return found


def test_compose_health_waits_do_not_delay_the_start(compose: dict[str, Any]) -> None:
    assert _start_wait(compose, "lb") <= 3  # it was 5 + 15 s: Redis's interval, the replicas'
    assert _awaited(compose, "lb") == {"conveyor", "redis"}
    for name in ("lb", *_awaited(compose, "lb")):
        check = compose["services"][name]["healthcheck"]
        assert _seconds(check["start_interval"]) <= 1, name
        assert _seconds(check["start_period"]) >= 10, name  # slow starts are not failures
        assert _seconds(check["interval"]) >= 5, name  # and steady checks stay cheap


def test_the_published_port_is_said_to_be_open(compose: dict[str, Any]) -> None:
    text = " ".join((ROOT / "README.md").read_text().split())
    assert (
        "publishes the port on every interface of the host, and no API key is set by default"
        in text
    )
    assert "CONVEYOR_API_KEYS" not in compose["x-conveyor-environment"]  # indeed none is set


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
