"""A public module's __all__ lists exactly what it exports, alphabetically."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

import conveyor
import conveyor_core

# what each module of conveyor-streaming 1.2.1 exports (its own __all__)
EARLIER = {
    "conveyor.stream": ["AsyncStream"],
    "conveyor.tasks": ["BaseTask", "SingleTask", "BatchTask"],
    "conveyor.pipeline": ["Pipeline"],
    "conveyor.decorators": ["single_task", "batch_task"],
    "conveyor.error_handling": [
        "ErrorAction",
        "RetryConfig",
        "ErrorHandler",
        "LoggingErrorHandler",
    ],
    "conveyor.context": [
        "PipelineContext",
        "ExecutionMode",
        "get_current_context",
        "set_current_context",
        "ContextManager",
        "with_context",
    ],
}
EARLIER["conveyor"] = [name for names in EARLIER.values() for name in names]  # all of them


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
    for name in (
        "_base_task",
        "_context",
        "_decorators",
        "_executors",
        "_errors",
        "_events",
        "_pipeline",
        "_policy",
        "_process",
        "_ray_replica",
        "_remote",
        "_run",
        "_stage",
        "_tasks",
    ):
        module = importlib.import_module(f"conveyor_core.{name}")
        assert all(hasattr(module, n) for n in module.__all__)


@pytest.mark.parametrize("name", sorted(EARLIER))
def test_conveyor_modules_export_what_the_earlier_ones_did(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    assert set(EARLIER[name]) <= set(module.__all__)
    assert all(getattr(module, n) is getattr(conveyor_core, n) for n in module.__all__)
    if name != "conveyor":
        assert module.__all__ == sorted(EARLIER[name])  # thin: those names, nothing more
    public = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and not isinstance(v, ModuleType)
    }
    assert public - set(module.__all__) == set(), "exported but not in __all__"
