"""app.main: what the app says when it starts."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import httpx
import pytest
from pydantic import ValidationError

from app.core.config import Settings
from app.main import create_app
from tests.app.conftest import ClientFactory, LogCapture, app_client, free_port, make_settings
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


# -- CORS: CONVEYOR_CORS_ORIGINS ----------------------------------------------------------------

PAGE = "https://page.example"
PREFLIGHT = {
    "Origin": PAGE,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, last-event-id",
}


async def test_cors_preflight_is_answered_without_a_key(make_client: ClientFactory) -> None:
    async with make_client(cors_origins=[PAGE, "http://localhost:5173"], api_keys=["k"]) as client:
        answer = await client.options("/pipelines/quickstart/stream", headers=PREFLIGHT)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == PAGE
        assert "POST" in answer.headers["access-control-allow-methods"]
        allowed = answer.headers["access-control-allow-headers"].lower()
        assert {"authorization", "content-type", "last-event-id"} <= set(allowed.split(", "))
        other = await client.options(
            "/pipelines/quickstart/stream", headers={**PREFLIGHT, "Origin": "https://evil.example"}
        )
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers


async def test_cors_simple_request_and_errors_carry_the_headers(
    make_client: ClientFactory,
) -> None:
    async with make_client(cors_origins=[PAGE], api_keys=["k"]) as client:
        key = {"Authorization": "Bearer k", "Origin": PAGE}
        listed = await client.get("/pipelines", headers=key)
        assert listed.status_code == 200
        assert listed.headers["access-control-allow-origin"] == PAGE
        exposed = listed.headers["access-control-expose-headers"].lower().split(", ")
        assert "x-request-id" in exposed and "location" in exposed and "retry-after" in exposed
        refused = await client.get("/pipelines", headers={"Origin": PAGE})
        assert refused.status_code == 401  # the page can read why
        assert refused.headers["access-control-allow-origin"] == PAGE
        elsewhere = await client.get("/pipelines", headers={**key, "Origin": "https://x.example"})
        assert "access-control-allow-origin" not in elsewhere.headers


@pytest.mark.parametrize("accept", ["text/event-stream", "application/x-ndjson"])
async def test_cors_headers_on_streaming_responses(make_client: ClientFactory, accept: str) -> None:
    async with make_client(cors_origins=["*"]) as client:
        headers = {"Origin": PAGE, "Accept": accept}
        body = {"items": [1, 2, 3]}
        async with client.stream(
            "POST", "/pipelines/quickstart/stream", json=body, headers=headers
        ) as response:
            assert response.headers["access-control-allow-origin"] == "*"
            assert "x-request-id" in response.headers["access-control-expose-headers"].lower()
            text = "".join([chunk async for chunk in response.aiter_text()])
        assert '"status":"succeeded"' in text


async def test_no_cors_headers_unless_origins_are_set(client: httpx.AsyncClient) -> None:
    answer = await client.get("/pipelines", headers={"Origin": PAGE})
    assert "access-control-allow-origin" not in answer.headers
    preflight = await client.options("/pipelines/quickstart/stream", headers=PREFLIGHT)
    assert preflight.status_code == 405  # no CORS: OPTIONS is no route


@pytest.mark.parametrize("value", ["https://page.example/", "page.example", "https://a.b/path"])
def test_cors_origins_must_be_origins(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CONVEYOR_CORS_ORIGINS", f"https://ok.example, {value}")
    with pytest.raises(ValidationError, match="is not an origin"):
        Settings()
    monkeypatch.setenv("CONVEYOR_CORS_ORIGINS", "https://ok.example, *")
    assert Settings().cors_origins == ["https://ok.example", "*"]


# -- the garbage collector: CONVEYOR_GC_THRESHOLD ------------------------------------------------


@pytest.fixture
def _gc_thresholds() -> Iterator[tuple[int, int, int]]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield saved
    gc.set_threshold(*saved)


@pytest.mark.usefixtures("_gc_thresholds")
async def test_the_young_generation_threshold_is_set_when_the_app_starts() -> None:
    app = create_app(make_settings(gc_threshold=12_345))
    assert gc.get_threshold() == (700, 10, 10)  # building the app changes nothing
    async with app_client(app) as client:
        assert gc.get_threshold() == (12_345, 10, 10)
        assert (await client.get("/healthz")).status_code == 200
    assert Settings().gc_threshold == 10_000  # the default


@pytest.mark.usefixtures("_gc_thresholds")
async def test_a_zero_threshold_leaves_pythons_own() -> None:
    async with app_client(create_app(make_settings(gc_threshold=0))):
        assert gc.get_threshold() == (700, 10, 10)
    with pytest.raises(ValidationError):
        Settings(gc_threshold=-1)
