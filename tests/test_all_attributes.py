"""A public module's __all__ lists exactly what it exports, alphabetically."""

from __future__ import annotations

import importlib

import pytest

import conveyor
import conveyor_core


@pytest.mark.parametrize("module", [conveyor_core, conveyor])
def test_all_is_complete_and_importable(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(module, name), name
    public = {n for n in vars(conveyor_core) if not n.startswith("_")}
    submodules = {"client", "ray"}
    assert public - set(conveyor_core.__all__) - submodules == set()


def test_all_is_sorted() -> None:
    assert conveyor_core.__all__ == sorted(conveyor_core.__all__)


def test_private_modules_declare_all() -> None:
    names = ("_context", "_errors", "_events", "_executors", "_pipeline", "_policy", "_process")
    for name in (*names, "_ray_replica", "_remote", "_run", "_tasks"):
        module = importlib.import_module(f"conveyor_core.{name}")
        assert all(hasattr(module, n) for n in module.__all__)
