"""How the service is installed: its code is the repository's `app/` folder, installed as
`conveyor_service` so that it never shadows a user's own `app` package (ARCHITECTURE.md), and
`uvicorn app.main:app` still serves from the repository."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import httpx

from tests.app.conftest import ROOT, free_port, stop_server, wait_healthy

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
INSTALLED_AS = {"app": "conveyor_service"}  # folder -> importable name once installed


def _packages_on_disk() -> set[str]:
    found = set()
    for top in ("conveyor_core", "conveyor", "app"):
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT).parts
            found.add(".".join((INSTALLED_AS.get(parts[0], parts[0]), *parts[1:])))
    return found


def test_every_package_folder_is_installed_under_its_name() -> None:
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"conveyor_service": "app"}
    assert set(setuptools["packages"]) == _packages_on_disk()
    assert "app" not in setuptools["packages"]  # a top-level `app` would shadow the user's


def test_the_service_imports_itself_relatively() -> None:
    """Inside app/, `from app.x import y` would tie the code to the folder's name (and break
    once installed as conveyor_service): every import of the service's own modules is relative."""
    offenders = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if any(n == "app" or n.startswith(("app.", "conveyor_service")) for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_the_console_script_runs_the_installed_service() -> None:
    assert PYPROJECT["project"]["scripts"] == {"conveyor": "conveyor_service.cli:main"}
    (script,) = entry_points(group="console_scripts", name="conveyor")
    assert script.value == "conveyor_service.cli:main"
    assert script.load().__module__ == "conveyor_service.cli"


def test_uvicorn_app_main_app_serves_from_the_repository(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "uvicorn.log"
    uvicorn = Path(sys.executable).parent / "uvicorn"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(uvicorn), "app.main:app", "--port", str(port)],
            cwd=ROOT,
            env={"PATH": str(uvicorn.parent)},
            stdout=out,
            stderr=out,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, log)
        assert httpx.post(f"{url}/pipelines/quickstart/invoke", json={"items": [1, 2, 3]}).json()[
            "results"
        ] == [22]
        assert httpx.get(f"{url}/").status_code == 200  # the playground's files are found too
        assert httpx.get(f"{url}/static/app.js").status_code == 200
    finally:
        stop_server(process)
