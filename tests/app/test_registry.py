"""The registry: built-in pipelines, user modules from CONVEYOR_PIPELINES, clear errors."""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from app.core.config import Settings
from app.errors import PipelineNotFound, RegistryError
from app.main import create_app
from app.pipelines import PipelineEntry, Registry
from conveyor_core import single_task
from tests.app.conftest import ROOT


@single_task
async def double(x: int) -> int:
    """Doubles."""
    return 2 * x


@pytest.fixture
def module() -> Iterator[types.ModuleType]:
    """A throwaway module `svc_user_pipelines` the test fills in."""
    mod = types.ModuleType("svc_user_pipelines")
    sys.modules[mod.__name__] = mod
    yield mod
    del sys.modules[mod.__name__]


def test_builtin_only() -> None:
    registry = Registry.load()
    assert list(registry) == [
        "quickstart",
        "filtering",
        "multi_batch",
        "error_handling",
        "timeline",
        "rag",
    ]
    assert all(entry.example for entry in registry.values())
    with pytest.raises(PipelineNotFound):
        registry.entry("nope")
    assert list(Registry.load(builtin=False)) == []


def test_user_module(module: types.ModuleType) -> None:
    module.PIPELINES = {"double": double, "twice": double | double, "quickstart": double}
    module.EXAMPLES = {"double": [1, 2]}
    registry = Registry.load([module.__name__])
    assert registry["double"].description == "Doubles."
    assert registry["double"].example == [1, 2]
    assert [s["name"] for s in registry["twice"].stages()] == ["double", "double"]
    assert registry["quickstart"].pipeline.stages[0] is double  # a module may replace a built-in


@pytest.mark.parametrize(
    ("pipelines", "examples", "message"),
    [
        (None, None, "must define PIPELINES: dict[str, Pipeline | task], found NoneType"),
        ([double], None, "found list"),
        ({"bad name": double}, None, "invalid pipeline name 'bad name'"),
        ({"x": lambda x: x}, None, "'x' is not a pipeline or task"),
        ({"x": double}, {"x": 3}, "the example of 'x' must be a list"),
        ({"x": double}, [1], "EXAMPLES must be a dict"),
    ],
)
def test_bad_modules(module: types.ModuleType, pipelines: Any, examples: Any, message: str) -> None:
    if pipelines is not None:
        module.PIPELINES = pipelines
    if examples is not None:
        module.EXAMPLES = examples
    with pytest.raises(RegistryError, match="svc_user_pipelines") as caught:
        Registry.load([module.__name__])
    assert message in str(caught.value)


def test_unimportable_module() -> None:
    with pytest.raises(RegistryError) as caught:
        create_app(Settings(pipelines=["no_such_package.pipelines"]))
    assert str(caught.value) == (
        "CONVEYOR_PIPELINES: cannot import 'no_such_package.pipelines': "
        "ModuleNotFoundError: No module named 'no_such_package'"
    )


def test_two_modules_defining_one_name(module: types.ModuleType) -> None:
    module.PIPELINES = {"double": double}
    with pytest.raises(RegistryError, match="defined by both"):
        Registry.load([module.__name__, module.__name__])


async def test_unschemable_annotation_accepts_any_json() -> None:
    class Opaque:
        pass

    @single_task
    async def take(x: Opaque) -> Opaque:
        return x

    entry = PipelineEntry.build("opaque", take)
    assert entry.input.schema == {} and not entry.input.validates
    assert await entry.input.validate_many([1, "a"]) == [1, "a"]


def test_cli_reports_a_bad_module_and_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve"],
        env={"CONVEYOR_PIPELINES": "no_such_package.pipelines", "PATH": ""},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "conveyor: CONVEYOR_PIPELINES: cannot import 'no_such_package.pipelines': "
        "ModuleNotFoundError: No module named 'no_such_package'"
    )


def test_cli_reports_bad_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve"],
        env={"CONVEYOR_MAX_ITEMS": "zero", "PATH": ""},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("conveyor: invalid settings: CONVEYOR_MAX_ITEMS: ")


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_API_KEYS", " a , b,")
    monkeypatch.setenv("CONVEYOR_PIPELINES", "x.y,z")
    monkeypatch.setenv("CONVEYOR_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("CONVEYOR_REDIS_URL", "")
    monkeypatch.setenv("CONVEYOR_SSE_PING_S", "2.5")
    settings = Settings()
    assert settings.api_keys == ["a", "b"] and settings.pipelines == ["x.y", "z"]
    assert settings.log_level == "debug" and settings.redis_url is None
    assert settings.sse_ping_s == 2.5
    assert "a" not in repr(settings.api_keys) or "api_keys" not in repr(settings)


def test_settings_defaults() -> None:
    settings = Settings()
    assert (settings.host, settings.port, settings.max_items, settings.max_running_jobs) == (
        "127.0.0.1",
        8000,
        10_000,
        100,
    )
    assert (settings.job_ttl_s, settings.sse_ping_s, settings.job_lease_s) == (3600, 15, 5)
    assert settings.api_keys == [] and settings.redis_url is None and settings.log_level == "info"


def test_the_default_store_is_in_memory() -> None:
    from app.jobs import MemoryJobStore, create_store

    assert isinstance(create_store(Settings()), MemoryJobStore)


def test_max_in_flight_setting_bounds_pipelines_that_set_none(
    module: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor_core import Pipeline

    module.PIPELINES = {"own": Pipeline(double, max_in_flight=3), "plain": double}  # type: ignore[attr-defined]
    monkeypatch.setenv("CONVEYOR_MAX_IN_FLIGHT", "64")
    settings = Settings()
    assert settings.max_in_flight == 64
    registry = Registry.load(
        ["svc_user_pipelines"], builtin=True, max_in_flight=settings.max_in_flight
    )
    assert registry.entry("plain").pipeline.max_in_flight == 64
    assert registry.entry("quickstart").pipeline.max_in_flight == 64
    assert registry.entry("own").pipeline.max_in_flight == 3
    assert Registry.load(builtin=True).entry("quickstart").pipeline.max_in_flight is None
    monkeypatch.setenv("CONVEYOR_MAX_IN_FLIGHT", "0")
    with pytest.raises(ValueError):
        Settings()
