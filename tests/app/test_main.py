"""app.main: what the app says when it starts."""

from __future__ import annotations

import pytest

from app.main import create_app
from tests.app.conftest import LogCapture, app_client, free_port, make_settings
from tests.app.redis_server import with_prefix


def _warnings(captured: LogCapture) -> list[str]:
    return [
        str(line["message"])
        for line in captured.lines
        if line["level"] == "warning" and line["logger"] == "conveyor.service"
    ]


async def test_start_up_warns_of_no_pipeline_and_an_unreachable_store(
    captured: LogCapture,
) -> None:
    port = free_port()
    closed = f"redis://127.0.0.1:{port}/0"  # nothing listens there
    app = create_app(make_settings(pipelines=[], builtin_pipelines=False, redis_url=closed))
    async with app_client(app) as client:
        assert (await client.get("/healthz")).status_code == 200  # it starts all the same
        assert (await client.get("/readyz")).status_code == 503
    warnings = _warnings(captured)
    assert any(w.startswith("no pipeline is registered") for w in warnings), warnings
    assert any(
        w.startswith("job store unavailable at start-up: ") and f"127.0.0.1:{port}" in w
        for w in warnings
    ), warnings


@pytest.mark.redis
async def test_no_start_up_warning_when_all_is_well(
    captured: LogCapture, redis_url: str, redis_prefix: str
) -> None:
    settings = make_settings(redis_url=with_prefix(redis_url, redis_prefix))
    async with app_client(create_app(settings)) as client:
        assert (await client.get("/readyz")).status_code == 200
    assert _warnings(captured) == []
