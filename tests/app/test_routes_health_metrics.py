"""/healthz, /readyz, /metrics, request ids and structured logs, the playground mount."""

from __future__ import annotations

import httpx
import pytest

from app.api.routes import playground
from tests.app.conftest import ClientFactory, LogCapture, metric


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "store": "MemoryJobStore"}


async def test_health_routes_answer_head(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Load balancers and uptime checks often probe with HEAD."""
    from app.jobs.store import StoreUnavailable

    for path in ("/healthz", "/readyz"):
        response = await client.head(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == "application/json"

    async def down() -> None:
        raise StoreUnavailable("connection refused")

    store = client._transport.app.state.services.store  # type: ignore[attr-defined]
    monkeypatch.setattr(store, "ping", down)
    assert (await client.head("/readyz")).status_code == 503


async def test_readyz_503_when_the_store_is_down(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.jobs.store import StoreUnavailable

    async def down() -> None:
        raise StoreUnavailable("connection refused")

    store = client._transport.app.state.services.store  # type: ignore[attr-defined]
    monkeypatch.setattr(store, "ping", down)
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["detail"] == "job store unavailable"


async def test_readyz_tells_why_only_to_the_log_and_to_a_key_holder(
    make_client: ClientFactory, captured: LogCapture
) -> None:
    """A Redis URL's user, host, port and database are not for anyone who asks."""
    url = "redis://admin:secret@127.0.0.1:1/7"
    async with make_client(redis_url=url, api_keys=["k"]) as client:
        anyone = await client.get("/readyz")
        holder = await client.get("/readyz", headers={"Authorization": "Bearer k"})
        wrong = await client.get("/readyz", headers={"Authorization": "Bearer nope"})
    assert anyone.status_code == holder.status_code == wrong.status_code == 503
    for response in (anyone, wrong):
        assert response.json()["detail"] == "job store unavailable"
        assert not any(part in response.text for part in ("admin", "127.0.0.1", ":1/", "/7"))
    assert "127.0.0.1:1/7" in holder.json()["detail"] and "secret" not in holder.text
    logged = [line["message"] for line in captured.lines if line["level"] == "warning"]
    assert any("127.0.0.1:1/7" in str(message) for message in logged)


async def test_job_routes_503_when_the_store_is_down(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.jobs.store import StoreUnavailable

    async def down(*args: object, **kwargs: object) -> None:
        raise StoreUnavailable("connection refused")

    store = client._transport.app.state.services.store  # type: ignore[attr-defined]
    monkeypatch.setattr(store, "get", down)
    monkeypatch.setattr(store, "create", down)
    assert (await client.get("/jobs/x")).status_code == 503
    response = await client.post("/pipelines/echo/jobs", json={"items": [1]})
    assert response.status_code == 503
    assert "job store unavailable" in response.json()["detail"]


async def test_metrics(client: httpx.AsyncClient) -> None:
    await client.post("/pipelines/quickstart/invoke", json={"items": [1, 2, 3, 4, 5, 6, 7]})
    await client.post("/pipelines/fragile/stream", json={"items": [1, 2, 3, 4]})
    items = [1, 2, -1, 3, 4, 5, 6, 7, 8, 13, 14, 15]
    await client.post("/pipelines/error_handling/invoke", json={"items": items})
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    runs = "conveyor_runs_total"
    assert metric(text, runs, pipeline="quickstart", kind="invoke", status="succeeded") == 1
    assert metric(text, runs, pipeline="fragile", kind="stream", status="failed") == 1
    assert metric(text, "conveyor_results_total", pipeline="quickstart") == 3
    assert metric(text, "conveyor_inputs_total", pipeline="quickstart") == 7
    errors = "conveyor_item_errors_total"
    assert (
        metric(text, errors, pipeline="error_handling", stage="flaky_call", action="skip_item") == 1
    )
    assert metric(text, errors, pipeline="error_handling", action="handled") == 2
    assert metric(text, "conveyor_run_errors_total", pipeline="fragile", stage="fragile") == 1
    latency = "conveyor_stage_latency_seconds_count"
    assert metric(text, latency, pipeline="quickstart", stage="multiply_by_two") == 7
    assert metric(text, latency, pipeline="quickstart", stage="sum_batch") == 3
    first = "conveyor_time_to_first_result_seconds_count"
    assert metric(text, first, pipeline="quickstart", kind="invoke") == 1
    assert metric(text, "conveyor_runs_in_progress", pipeline="quickstart", kind="invoke") == 0
    http = "conveyor_http_requests_total"
    assert metric(text, http, method="POST", route="/pipelines/{name}/invoke", status="200") == 2
    assert "process_cpu_seconds_total" in text or "python_info" in text


async def test_request_id(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.get("/healthz")
    assert len(made.headers["x-request-id"]) == 32
    bad = await client.get("/healthz", headers={"X-Request-ID": "no spaces allowed"})
    assert bad.headers["x-request-id"] != "no spaces allowed"


async def test_structured_logs_carry_the_request_id(
    client: httpx.AsyncClient, captured: LogCapture
) -> None:
    await client.post(
        "/pipelines/quickstart/stream", json={"items": [1]}, headers={"X-Request-ID": "req-7"}
    )
    mine = [line for line in captured.lines if line.get("request_id") == "req-7"]
    run = next(line for line in mine if line["message"] == "run ended")
    assert run["pipeline"] == "quickstart" and run["status"] == "succeeded"
    request = next(line for line in mine if line["message"] == "request")
    assert request["route"] == "/pipelines/{name}/stream" and request["status"] == 200
    assert isinstance(request["duration_ms"], float)


async def test_playground_page_when_present(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    if (playground.STATIC_DIR / "index.html").is_file():
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
    else:
        assert response.status_code == 404


async def test_playground_missing_is_404(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setattr(playground, "STATIC_DIR", tmp_path)
    response = await client.get("/")
    assert response.status_code == 404


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    assert (await client.get("/nowhere")).json() == {"detail": "Not Found"}
    assert (await client.put("/pipelines")).status_code == 405
