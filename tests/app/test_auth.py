"""API keys: every route but /healthz, /readyz and the playground answers 401 without one."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi.routing import APIRoute

from app.api.routes import docs, health, jobs, metrics, pipelines, playground
from app.main import create_app
from tests.app.conftest import app_client, make_settings

KEYS = ["key-one", "key-two"]
OPEN = {"/healthz", "/readyz", "/"}


@pytest.fixture
async def keyed() -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(create_app(make_settings(api_keys=KEYS))) as client:
        yield client


def _routes() -> list[tuple[str, str]]:
    """Every route of every router the app includes."""
    out = []
    routers = (health, pipelines, jobs, metrics, docs, playground)
    for route in (r for module in routers for r in module.router.routes):
        if isinstance(route, APIRoute):
            path = re.sub(r"\{name\}", "quickstart", route.path)
            path = re.sub(r"\{job_id\}", "some-job", path)
            out += [(method, path) for method in sorted(route.methods - {"HEAD"})]
    return out


ROUTES = _routes()


def test_every_route_is_listed() -> None:
    paths = {path for _, path in ROUTES}
    assert {
        "/pipelines",
        "/pipelines/quickstart/stream",
        "/jobs/some-job/events",
        "/metrics",
        "/openapi.json",
        "/docs",
    } <= paths


@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if r[1] not in OPEN])
async def test_closed_routes_need_a_key(keyed: httpx.AsyncClient, method: str, path: str) -> None:
    body = {"items": [1]} if method == "POST" else None
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "key-one"},
        {"Authorization": "Basic a2V5LW9uZQ=="},
    ):
        response = await keyed.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (path, headers)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "API key" in response.json()["detail"]
    for key in KEYS:
        response = await keyed.request(
            method, path, json=body, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code != 401, path


@pytest.mark.parametrize("path", sorted(OPEN))
async def test_open_routes(keyed: httpx.AsyncClient, path: str) -> None:
    response = await keyed.get(path)
    assert response.status_code != 401
    if path != "/":
        assert response.status_code == 200


async def test_static_files_are_open(keyed: httpx.AsyncClient) -> None:
    response = await keyed.get("/static/does-not-exist.js")
    assert response.status_code == 404


async def test_no_keys_no_auth(client: httpx.AsyncClient) -> None:
    assert (await client.get("/pipelines")).status_code == 200
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/docs")).status_code == 200
