"""app.api.handlers and the request context: an unexpected error is a traceable 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from tests.app.conftest import LogCapture, make_settings, metric


@pytest.fixture
async def broken() -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The service plus one route that raises (what a bug anywhere would do)."""
    app = create_app(make_settings())

    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom)
    async with app.router.lifespan_context(app):
        # raise_app_exceptions=False: what a server does (answer or close), not re-raise
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, client


async def test_a_500_carries_the_request_id(
    broken: tuple[FastAPI, httpx.AsyncClient], captured: LogCapture
) -> None:
    _, client = broken
    response = await client.get("/boom", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error", "request_id": "req-500"}
    assert response.headers["x-request-id"] == "req-500"
    made = await client.get("/boom")
    assert made.json()["request_id"] == made.headers["x-request-id"]
    assert len(made.headers["x-request-id"]) == 32
    mine = [line for line in captured.lines if line.get("request_id") == "req-500"]
    error = next(line for line in mine if line["message"] == "unexpected error")
    assert "RuntimeError: a bug" in str(error["exc_info"])
    access = next(line for line in mine if line["message"] == "request")
    assert access["status"] == 500 and access["route"] == "/boom"


async def test_a_500_is_counted_as_500(broken: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = broken
    for _ in range(2):
        assert (await client.get("/boom")).status_code == 500
    text = (await client.get("/metrics")).text
    http = "conveyor_http_requests_total"
    assert metric(text, http, method="GET", route="/boom", status="500") == 2
    assert metric(text, http, method="GET", route="/boom", status="499") == 0
