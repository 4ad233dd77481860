"""The Makefile: `make run` installs only what serving needs, `make test` everything."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _planned(target: str, venv: Path) -> list[str]:
    """The commands `make <target>` would run on a machine without the venv (`make -n`)."""
    if shutil.which("make") is None:
        pytest.skip("no make")
    # not the flags of a `make test` this may run under (they add "Entering directory" lines)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", target, f"VENV={venv}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.splitlines()


def test_make_run_installs_the_service_extra_only(tmp_path: Path) -> None:
    commands = _planned("run", tmp_path / "venv")
    installs = [c for c in commands if "pip install" in c and "--upgrade pip" not in c]
    assert installs == [f'{tmp_path / "venv"}/bin/python -m pip install -q -e ".[service]"']
    assert commands[-1] == f"{tmp_path / 'venv'}/bin/conveyor serve"


def test_make_test_installs_everything(tmp_path: Path) -> None:
    commands = _planned("test", tmp_path / "venv")
    installs = [c for c in commands if "pip install" in c and "--upgrade pip" not in c]
    assert installs == [f'{tmp_path / "venv"}/bin/python -m pip install -q -e ".[dev]"']
    assert any("pytest" in c for c in commands)


def test_after_make_test_make_run_installs_nothing(tmp_path: Path) -> None:
    """`.[dev]` includes `.[service]`, so the test install marks the service one done too."""
    venv = tmp_path / "venv"
    assert f"touch {venv}/.installed {venv}/.service" in _planned("test", venv)
    (venv / "bin").mkdir(parents=True)
    for done in ("bin/python", ".installed", ".service"):  # what `make test` leaves
        (venv / done).touch()
    assert _planned("run", venv) == [f"{venv}/bin/conveyor serve"]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    (itself,) = [r for r in extras["dev"] if r.startswith("conveyor-streaming-core[")]
    assert "service" in itself.split("[")[1].rstrip("]").split(",")
