"""Pipelines with Ray stages served by the app: listed with their executor, a remote error in
the `error` event as the task's own, and a job DELETE that stops the job's Ray calls."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from tests.app.conftest import app_client, make_settings
from tests.core.test_executors import LONG, assert_stopped, started

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(pipelines=["tests.ray.svc_ray_pipelines"], builtin_pipelines=False)
    async with app_client(create_app(settings)) as client:
        yield client


def lines(response: httpx.Response) -> list[dict[str, object]]:
    return [json.loads(line) for line in response.text.splitlines() if line]


async def test_ray_stages_are_listed_with_their_executor(client: httpx.AsyncClient) -> None:
    entries = {entry["name"]: entry for entry in (await client.get("/pipelines")).json()}
    assert [stage.get("executor") for stage in entries["ray_square"]["stages"]] == [
        "ray-actors x2",
        None,
    ]
    response = await client.post("/pipelines/ray_square/invoke", json={"items": [1, 2, 3]})
    assert response.json()["results"] == [1, 16, 81]


async def test_a_remote_error_reaches_the_error_event_as_the_tasks_own(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/pipelines/ray_fragile/stream", json={"items": [0, 1, 2, 3]})
    events = lines(response)
    error, end = events[-2], events[-1]
    assert error == {
        "type": "error",
        "seq": error["seq"],
        "stage": "raise_value_error",
        "error": "ValueError: bad item 2",
    }
    assert (end["type"], end["status"]) == ("end", "failed")


async def test_a_job_delete_stops_its_ray_calls(client: httpx.AsyncClient, tmp_path: Path) -> None:
    items = [[LONG, str(tmp_path)], [LONG, str(tmp_path)]]
    accepted = await client.post("/pipelines/ray_ticking/jobs", json={"items": items})
    assert accepted.status_code == 202
    job = accepted.json()["job_id"]
    await asyncio.wait_for(started(tmp_path, 2), 60)
    cancelled_at = time.time()
    assert (await client.delete(f"/jobs/{job}")).status_code == 202
    events = lines(await client.get(f"/jobs/{job}/events", timeout=30))
    assert (events[-1]["type"], events[-1]["status"]) == ("end", "cancelled")
    await assert_stopped(tmp_path, cancelled_at)


async def test_the_example_ray_pipeline_serves() -> None:
    settings = make_settings(pipelines=["examples.ray_pipeline"], builtin_pipelines=False)
    async with app_client(create_app(settings)) as client:
        entry = (await client.get("/pipelines/ray_embed")).json()
        executors = [stage.get("executor") for stage in entry["stages"]]
        assert executors == [None, "ray-actors x2", "process", "ray-tasks", None]
        response = await client.post("/pipelines/ray_embed/invoke", json={"items": ["A b", "c"]})
    body = response.json()
    assert body["status"] == "succeeded"
    assert [result["text"] for result in body["results"]] == ["a b", "c"]
