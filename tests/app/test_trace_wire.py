"""`stage` events on the wire (`?trace=true` or `"trace": true`) and the batch metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.app.conftest import ClientFactory, metric
from tests.app.wire import assert_run_shape, ndjson_events, sse_events

SEVEN = [1, 2, 3, 4, 5, 6, 7]
STAGE_KEYS = {
    "type",
    "seq",
    "stage",
    "kind",
    "sources",
    "attempt",
    "queued_s",
    "started_s",
    "ended_s",
    "outcome",
}


def _stages(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "stage"]


def _without_stages(events: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [
        (e["type"], e.get("value"), tuple(e.get("sources", ())))
        for e in events
        if e["type"] != "stage"
    ]


@pytest.mark.parametrize("how", ["query", "body"])
@pytest.mark.parametrize("sse", [False, True])
async def test_stream_traced(client: httpx.AsyncClient, how: str, sse: bool) -> None:
    body: dict[str, Any] = {"items": SEVEN}
    params = {}
    if how == "query":
        params["trace"] = "true"
    else:
        body["trace"] = True
    headers = {"accept": "text/event-stream"} if sse else {}
    response = await client.post(
        "/pipelines/quickstart/stream", json=body, params=params, headers=headers
    )
    assert response.status_code == 200
    events = sse_events(response.text) if sse else ndjson_events(response.text)
    assert_run_shape(events)  # stage events share the seq sequence: resume works unchanged
    stages = _stages(events)
    assert all(set(e) == STAGE_KEYS for e in stages)
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for event in stages:
        by_stage.setdefault(event["stage"], []).append(event)
    assert sorted(e["sources"][0] for e in by_stage["multiply_by_two"]) == list(range(7))
    batches = sorted(by_stage["sum_batch"], key=lambda e: e["sources"])
    assert [e["sources"] for e in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    assert all(e["kind"] == "batch" for e in batches)
    assert len(by_stage["add_ten"]) == 3
    for event in stages:
        assert event["attempt"] == 1 and event["outcome"] == "ok"
        assert 0 <= event["queued_s"] <= event["started_s"] <= event["ended_s"]
    # a result comes after the stage events of the calls that made it
    results = [e for e in events if e["type"] == "result"]
    last_add_ten = max(e["seq"] for e in by_stage["add_ten"])
    assert results[-1]["seq"] > last_add_ten
    # the same run untraced has the same other events
    plain = await client.post("/pipelines/quickstart/stream", json={"items": SEVEN})
    assert _without_stages(ndjson_events(plain.text))[:-1] == _without_stages(events)[:-1]


async def test_untraced_runs_have_no_stage_events(client: httpx.AsyncClient) -> None:
    for params in ({}, {"trace": "false"}):
        response = await client.post(
            "/pipelines/quickstart/stream", json={"items": SEVEN}, params=params
        )
        assert not _stages(ndjson_events(response.text))
    response = await client.post("/pipelines/quickstart/invoke", json={"items": SEVEN})
    assert "stages" not in response.json()


async def test_trace_must_be_a_boolean(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/pipelines/quickstart/stream", json={"items": SEVEN, "trace": "yes"}
    )
    assert response.status_code == 422
    assert "trace" in response.text
    response = await client.post(
        "/pipelines/quickstart/invoke", json={"items": SEVEN}, params={"trace": "maybe"}
    )
    assert response.status_code == 422


async def test_retries_give_an_event_per_attempt(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/pipelines/error_handling/invoke", json={"items": [1, 2, 3, 4], "trace": True}
    )
    body = response.json()
    assert body["status"] == "succeeded"
    stages = body["stages"]
    retried = [e for e in stages if e["outcome"] == "retry"]
    assert retried, stages
    for event in retried:  # the next attempt of the same call follows it
        later = [
            e
            for e in stages
            if e["stage"] == event["stage"]
            and e["sources"] == event["sources"]
            and e["attempt"] == event["attempt"] + 1
        ]
        assert len(later) == 1
        assert later[0]["queued_s"] >= event["ended_s"] - 1e-6
    assert [e["seq"] for e in stages] == sorted(e["seq"] for e in stages)


async def test_ndjson_upload_traced(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/pipelines/quickstart/stream?trace=true",
        content=b"1\n2\n3\n",
        headers={"content-type": "application/x-ndjson"},
    )
    events = ndjson_events(response.text)
    assert_run_shape(events)
    assert {e["stage"] for e in _stages(events)} == {"multiply_by_two", "sum_batch", "add_ten"}


async def test_job_traced_replays_its_stage_events(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/pipelines/quickstart/jobs", json={"items": SEVEN}, params={"trace": "true"}
    )
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    events = ndjson_events((await client.get(f"/jobs/{job_id}/events")).text)
    assert_run_shape(events)
    stages = _stages(events)
    assert len(stages) == 7 + 3 + 3
    resumed = ndjson_events((await client.get(f"/jobs/{job_id}/events?after=5")).text)
    assert resumed == events[6:]


async def test_batch_and_queue_metrics(make_client: ClientFactory) -> None:
    async with make_client() as client:
        await client.post("/pipelines/quickstart/invoke", json={"items": SEVEN})
        text = (await client.get("/metrics")).text
    labels = {"pipeline": "quickstart", "stage": "sum_batch"}
    assert metric(text, "conveyor_batch_size_count", **labels) == 3
    assert metric(text, "conveyor_batch_size_sum", **labels) == 7
    assert metric(text, "conveyor_batch_size_bucket", le="2.0", **labels) == 1  # [6]
    # every call's wait in its queue, batch or not (untraced runs too)
    assert metric(text, "conveyor_stage_queue_seconds_count", **labels) == 3
    single = {"pipeline": "quickstart", "stage": "multiply_by_two"}
    assert metric(text, "conveyor_stage_queue_seconds_count", **single) == 7
    assert metric(text, "conveyor_batch_size_count", **single) == 0
    assert metric(text, "conveyor_stage_latency_seconds_count", **single) == 7


async def test_items_in_flight_gauge(make_client: ClientFactory) -> None:
    async with make_client() as client:
        stream = asyncio.create_task(
            client.post("/pipelines/sleepy/invoke", json={"items": [0.5, 0.5, 0.5]})
        )
        seen = 0.0
        for _ in range(100):
            await asyncio.sleep(0.02)
            text = (await client.get("/metrics")).text
            seen = metric(text, "conveyor_items_in_flight", pipeline="sleepy")
            if seen:
                break
        assert seen == 3
        assert (await stream).json()["status"] == "succeeded"
        text = (await client.get("/metrics")).text
        assert metric(text, "conveyor_items_in_flight", pipeline="sleepy") == 0
