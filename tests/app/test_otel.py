"""OpenTelemetry traces of the service, read from the SDK's in-memory exporter: the tree's
shape, names, attributes and links for stream, invoke, a job, a failed run and a remote stage;
and, without the OTEL_* variables, nothing of OpenTelemetry's SDK imported."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from app.main import create_app
from app.otel import OtelTracing
from conveyor_core import single_task
from conveyor_core.client import RemotePipeline
from tests.app.conftest import app_client, free_port, make_settings
from tests.app.wire import ndjson_events

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


class Traced:
    """An app whose spans go to an in-memory exporter."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracing = OtelTracing(self.provider)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, [span.name for span in self.spans()]
        return found[0]


@pytest.fixture
def traced() -> Traced:
    return Traced()


@pytest.fixture
async def client(traced: Traced) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(create_app(make_settings(), tracing=traced.tracing)) as client:
        yield client


def _parent(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in (span.attributes or {}).items()
    }


def _check_quickstart_tree(traced: Traced, http_name: str) -> ReadableSpan:
    """The tree of a quickstart run of 1..7: HTTP span > run > 13 stage calls, with links."""
    http = traced.one(http_name)
    assert http.kind is SpanKind.SERVER
    run = traced.one("run quickstart")
    assert _parent(run) == http.context.span_id
    assert run.context.trace_id == http.context.trace_id
    attrs = _attrs(run)
    assert attrs["conveyor.pipeline"] == "quickstart" and attrs["conveyor.mode"] == "ordered"
    assert (attrs["conveyor.inputs"], attrs["conveyor.results"]) == (7, 3)
    assert attrs["conveyor.status"] == "succeeded"
    assert [event.name for event in run.events] == ["first result"]
    assert run.status.status_code is StatusCode.UNSET

    calls = {name: traced.named(f"stage {name}") for name in ("multiply_by_two", "sum_batch")}
    add_ten = traced.named("stage add_ten")
    assert (len(calls["multiply_by_two"]), len(calls["sum_batch"]), len(add_ten)) == (7, 3, 3)
    for span in (*calls["multiply_by_two"], *calls["sum_batch"], *add_ten):
        assert _parent(span) == run.context.span_id
        assert run.start_time <= span.start_time <= span.end_time <= run.end_time  # type: ignore[operator]
        assert _attrs(span)["conveyor.outcome"] == "ok" and _attrs(span)["conveyor.attempt"] == 1
    by_id = {span.context.span_id: span for span in traced.spans()}
    for batch in calls["sum_batch"]:
        attrs = _attrs(batch)
        assert attrs["conveyor.stage.kind"] == "batch"
        assert attrs["conveyor.batch.size"] == len(attrs["conveyor.sources"])
        fed_by = [by_id[link.context.span_id] for link in batch.links]
        assert all(span.name == "stage multiply_by_two" for span in fed_by)
        assert (
            sorted(_attrs(span)["conveyor.sources"][0] for span in fed_by)
            == attrs["conveyor.sources"]
        )
    for span in add_ten:  # fed by the batch that made its item
        (link,) = span.links
        assert by_id[link.context.span_id].name == "stage sum_batch"
    return run


async def test_stream_trace_joins_an_incoming_traceparent(
    client: httpx.AsyncClient, traced: Traced
) -> None:
    response = await client.post(
        "/pipelines/quickstart/stream",
        json={"items": [1, 2, 3, 4, 5, 6, 7]},
        headers={"traceparent": TRACEPARENT},
    )
    assert [e["type"] for e in ndjson_events(response.text)][-1] == "end"
    run = _check_quickstart_tree(traced, "POST /pipelines/{name}/stream")
    http = traced.one("POST /pipelines/{name}/stream")
    assert format(http.context.trace_id, "032x") == TRACE_ID
    assert format(_parent(http) or 0, "016x") == PARENT_ID
    assert format(run.context.trace_id, "032x") == TRACE_ID
    # not one span per chunk of the stream; no stage events on the wire for all that
    assert not [span for span in traced.spans() if span.name.endswith(" send")]
    assert "stage" not in {e["type"] for e in ndjson_events(response.text)}


async def test_invoke_trace(client: httpx.AsyncClient, traced: Traced) -> None:
    response = await client.post(
        "/pipelines/quickstart/invoke", json={"items": [1, 2, 3, 4, 5, 6, 7]}
    )
    assert response.json()["results"] == [22, 40, 24]
    run = _check_quickstart_tree(traced, "POST /pipelines/{name}/invoke")
    assert _attrs(run)["conveyor.run.kind"] == "invoke"
    assert traced.one("POST /pipelines/{name}/invoke").context.trace_id != int(TRACE_ID, 16)


async def test_job_run_span_outlives_the_post_and_links_to_it(
    client: httpx.AsyncClient, traced: Traced
) -> None:
    response = await client.post("/pipelines/timeline/jobs", json={"items": [0.2, 0.1]})
    job_id = response.json()["job_id"]
    await client.get(f"/jobs/{job_id}/events")  # to the end
    for _ in range(100):
        if traced.named("run timeline"):
            break
        await asyncio.sleep(0.02)
    post = traced.one("POST /pipelines/{name}/jobs")
    run = traced.one("run timeline")
    assert _parent(run) == post.context.span_id
    assert run.context.trace_id == post.context.trace_id
    (link,) = run.links
    assert link.context.span_id == post.context.span_id
    assert (link.attributes or {})["conveyor.link"] == "submitted by"
    assert run.end_time > post.end_time  # type: ignore[operator]
    assert _attrs(run)["conveyor.run.kind"] == "job" and _attrs(run)["conveyor.results"] == 2
    stages = traced.named("stage wait")
    assert len(stages) == 2 and all(_parent(s) == run.context.span_id for s in stages)


async def test_failed_run(client: httpx.AsyncClient, traced: Traced) -> None:
    response = await client.post("/pipelines/fragile/invoke", json={"items": [1, 2, 3]})
    assert response.json()["status"] == "failed"
    run = traced.one("run fragile")
    assert run.status.status_code is StatusCode.ERROR
    assert "three is not allowed" in (run.status.description or "")
    assert _attrs(run)["conveyor.status"] == "failed"
    failed = [
        span
        for span in traced.named("stage fragile")
        if _attrs(span)["conveyor.outcome"] == "error"
    ]
    assert len(failed) == 1 and _attrs(failed[0])["conveyor.sources"] == [2]
    assert failed[0].status.status_code is StatusCode.ERROR
    (exception,) = failed[0].events
    assert exception.name == "exception"
    assert (exception.attributes or {})["exception.type"] == "ValueError"


async def test_retries_are_spans_of_their_own(client: httpx.AsyncClient, traced: Traced) -> None:
    await client.post("/pipelines/error_handling/invoke", json={"items": [1, 2, 3, 4]})
    retried = [s for s in traced.spans() if _attrs(s).get("conveyor.outcome") == "retry"]
    assert retried
    for span in retried:  # a retry is no failure of the run; its error is an event
        assert span.status.status_code is StatusCode.UNSET
        assert [event.name for event in span.events] == ["exception"]


async def test_tasks_run_under_the_run_span(client: httpx.AsyncClient, traced: Traced) -> None:
    response = await client.post("/pipelines/span_probe/invoke", json={"items": [1]})
    (seen,) = response.json()["results"]
    run = traced.one("run span_probe")
    assert seen == {
        "trace_id": format(run.context.trace_id, "032x"),
        "span_id": format(run.context.span_id, "016x"),
    }


@contextlib.asynccontextmanager
async def _served(traced: Traced) -> AsyncIterator[str]:
    """The app served by uvicorn in this event loop (a RemotePipeline needs a real socket)."""
    port = free_port()
    app = create_app(make_settings(), tracing=traced.tracing)
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@single_task
async def plus_one(x: int) -> int:
    return x + 1


async def test_remote_stage_spans_join_the_callers_trace(traced: Traced) -> None:
    caller = Traced()
    tracer = caller.provider.get_tracer("test")
    async with _served(traced) as url:
        pipeline = plus_one | RemotePipeline(url, "quickstart")
        with tracer.start_as_current_span("caller") as span:
            results = [value async for value in pipeline(range(7))]
    assert results == [22, 40, 24]
    context = span.get_span_context()
    http = traced.one("POST /pipelines/{name}/stream")
    assert http.context.trace_id == context.trace_id
    assert _parent(http) == context.span_id
    run = traced.one("run quickstart")
    assert run.context.trace_id == context.trace_id
    assert len(traced.named("stage multiply_by_two")) == 7


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CONVEYOR_"))}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


RUN_ONCE = """
import asyncio, json, sys
import httpx
from app.main import create_app

async def main():
    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.post("/pipelines/quickstart/invoke", json={"items": [1, 2, 3]})
            assert r.json()["results"] == [22], r.text
    import conveyor_core.client  # noqa: F401  (the client too)

asyncio.run(main())
# FastAPI (0.16x) imports the OpenTelemetry API itself, and redis-py (8.x) the SDK's metrics
# when the SDK is installed: what matters is that the trace SDK, the instrumentation, the
# exporters and our own app.otel are not
OURS = (
    "opentelemetry.sdk.trace",
    "opentelemetry.instrumentation",
    "opentelemetry.exporter",
    "app.otel",
    "conveyor_service.otel",
)
print(json.dumps(sorted(m for m in sys.modules if m.startswith(OURS))))
"""


def test_without_the_variables_nothing_is_imported() -> None:
    done = _python(RUN_ONCE)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
    done = _python(RUN_ONCE, OTEL_TRACES_EXPORTER="none", OTEL_SERVICE_NAME="x")
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_the_variables_turn_it_on() -> None:
    done = _python(RUN_ONCE, OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="conveyor-test")
    assert done.returncode == 0, done.stderr
    assert "opentelemetry.sdk.trace" in done.stdout.splitlines()[-1]
    # the console exporter prints each span as JSON when the app's lifespan ends
    assert '"name": "run quickstart"' in done.stdout
    assert '"service.name": "conveyor-test"' in done.stdout
    done = _python(RUN_ONCE, OTEL_TRACES_EXPORTER="console", OTEL_SDK_DISABLED="true")
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_an_unknown_exporter_is_said_and_skipped() -> None:
    done = _python(RUN_ONCE, OTEL_TRACES_EXPORTER="nonesuch")
    assert done.returncode == 0, done.stderr
    assert "no exporter 'nonesuch' is installed" in done.stderr


async def test_the_client_sends_traceparent() -> None:
    from conveyor_core.client import ConveyorClient

    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("traceparent"))
        return httpx.Response(200, json={"status": "succeeded", "results": [1]})

    tracer = Traced().provider.get_tracer("test")
    async with ConveyorClient("http://svc", transport=httpx.MockTransport(handler)) as client:
        await client.invoke("echo", [1])  # no current span: nothing to send
        with tracer.start_as_current_span("caller") as span:
            await client.invoke("echo", [1])
    context = span.get_span_context()
    assert seen[0] is None
    assert (seen[1] or "").startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
