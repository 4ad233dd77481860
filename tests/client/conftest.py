"""Real uvicorn processes serving the app (started as tests/app does), for the client's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.app.conftest import run_server

API_KEYS = ("key-one", "key-two")
PIPELINES = "tests.client.remote_pipelines"


@pytest.fixture(scope="session")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A service without API keys, with the built-in pipelines and tests/client's own."""
    with run_server(tmp_path_factory.mktemp("client"), CONVEYOR_PIPELINES=PIPELINES) as url:
        yield url


@pytest.fixture(scope="session")
def keyed_service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A service with API keys, 50 items per request and 2 running jobs at most."""
    with run_server(
        tmp_path_factory.mktemp("client-keyed"),
        CONVEYOR_PIPELINES=PIPELINES,
        CONVEYOR_API_KEYS=",".join(API_KEYS),
        CONVEYOR_MAX_ITEMS="50",
        CONVEYOR_MAX_RUNNING_JOBS="2",
    ) as url:
        yield url


@pytest.fixture(scope="session")
def api_keys() -> tuple[str, str]:
    return API_KEYS
