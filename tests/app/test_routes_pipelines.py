"""/pipelines: the registry, invoke, stream (JSON and NDJSON bodies), and every error code."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.main import create_app
from tests.app.conftest import ClientFactory, LogCapture, make_settings, metric
from tests.app.wire import assert_run_shape, ndjson_events, sse_events

BUILTIN = ["quickstart", "filtering", "multi_batch", "error_handling", "timeline", "rag"]
SEVEN = {"items": [1, 2, 3, 4, 5, 6, 7]}


async def test_list_pipelines(client: httpx.AsyncClient) -> None:
    response = await client.get("/pipelines")
    assert response.status_code == 200
    entries = {e["name"]: e for e in response.json()}
    assert list(entries)[: len(BUILTIN)] == BUILTIN
    assert {"echo", "sleepy", "greet"} <= set(entries)
    quickstart = entries["quickstart"]
    assert quickstart["description"].startswith("Doubles each number")
    assert quickstart["stages"] == [
        {"name": "multiply_by_two", "kind": "single"},
        {"name": "sum_batch", "kind": "batch", "max_size": 3, "min_size": 1, "max_wait": None},
        {"name": "add_ten", "kind": "single"},
    ]
    assert quickstart["input_schema"] == {"type": "integer"}
    assert quickstart["output_schema"] == {"type": "integer"}
    assert quickstart["example"] == [1, 2, 3, 4, 5, 6, 7]
    assert entries["echo"]["input_schema"] == {} and entries["echo"]["example"] is None
    greet = entries["greet"]
    assert greet["input_schema"]["required"] == ["name", "age"]
    assert greet["output_schema"]["title"] == "Greeting"
    assert greet["description"] == "Greets people given as objects."


async def test_get_one_and_unknown(client: httpx.AsyncClient) -> None:
    response = await client.get("/pipelines/timeline")
    assert response.status_code == 200 and response.json()["name"] == "timeline"
    for path in ("/pipelines/nope", "/pipelines/nope/invoke", "/pipelines/nope/stream"):
        method = "GET" if path == "/pipelines/nope" else "POST"
        response = await client.request(method, path, json=SEVEN)
        assert response.status_code == 404, path
        assert "nope" in response.json()["detail"]
    response = await client.post("/pipelines/nope/jobs", json=SEVEN)
    assert response.status_code == 404


async def test_invoke(client: httpx.AsyncClient) -> None:
    response = await client.post("/pipelines/quickstart/invoke", json=SEVEN)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "succeeded" and body["results"] == [22, 40, 24]
    assert body["stats"]["inputs"] == 7 and body["stats"]["results"] == 3
    assert body["item_errors"] == [] and body["error"] is None


async def test_invoke_without_json_content_type(client: httpx.AsyncClient) -> None:
    """`curl -d '{...}'` sends a form content type: the body is JSON all the same."""
    response = await client.post(
        "/pipelines/quickstart/invoke",
        content=b'{"items": [1, 2, 3]}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200 and response.json()["results"] == [22]


async def test_invoke_modes(client: httpx.AsyncClient) -> None:
    items = {"items": [0.3, 0.05, 0.15]}
    ordered = await client.post("/pipelines/timeline/invoke", json=items)
    assert ordered.json()["results"] == [0.3, 0.05, 0.15]
    body_mode = await client.post(
        "/pipelines/timeline/invoke", json={**items, "mode": "as_completed"}
    )
    assert body_mode.json()["results"] == [0.05, 0.15, 0.3]
    query_mode = await client.post("/pipelines/timeline/invoke?mode=as_completed", json=items)
    assert query_mode.json()["results"] == [0.05, 0.15, 0.3]


async def test_invoke_failed_run(client: httpx.AsyncClient) -> None:
    response = await client.post("/pipelines/fragile/invoke", json={"items": [1, 2, 3, 4]})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "failed"
    assert body["error"]["stage"] == "fragile"
    assert body["error"]["error"] == "ValueError: three is not allowed"


@pytest.mark.parametrize("route", ["invoke", "stream", "jobs"])
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"items": [1, 2', "malformed JSON"),
        (b"", "malformed JSON"),
        (b'{"items": 3}', "the body must be"),
        (b'{"item": [1]}', "the body must be"),
        (b'{"items": [1], "mode": "fastest"}', "the body must be"),
        (b"[1, 2, 3]", "the body must be"),
    ],
)
async def test_malformed_bodies_are_422(
    client: httpx.AsyncClient, route: str, body: bytes, fragment: str
) -> None:
    response = await client.post(f"/pipelines/quickstart/{route}", content=body)
    assert response.status_code == 422
    assert fragment in response.json()["detail"]
    assert response.json()["errors"]


@pytest.mark.parametrize("route", ["invoke", "stream", "jobs"])
async def test_items_off_the_schema_are_422_with_positions(
    client: httpx.AsyncClient, route: str
) -> None:
    response = await client.post(
        f"/pipelines/quickstart/{route}", json={"items": [1, "2", 3, None, 4.5, 6]}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["positions"] == [1, 3, 4]
    assert "positions [1, 3, 4]" in body["detail"]
    assert [e["position"] for e in body["errors"]] == [1, 3, 4]


async def test_model_items_report_the_field(client: httpx.AsyncClient) -> None:
    items = [{"name": "Ada", "age": 36}, {"name": "Bob"}, {"name": "Cy", "age": "old"}]
    response = await client.post("/pipelines/greet/invoke", json={"items": items})
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [(e["position"], e["loc"]) for e in errors] == [(1, ["age"]), (2, ["age"])]
    ok = await client.post("/pipelines/greet/invoke", json={"items": items[:1]})
    assert ok.json()["results"] == [{"text": "Hello Ada (36)"}]


@pytest.mark.parametrize("route", ["invoke", "stream", "jobs"])
async def test_too_many_items_is_413(make_client: ClientFactory, route: str) -> None:
    async with make_client(max_items=3) as client:
        response = await client.post(f"/pipelines/echo/{route}", json={"items": [1, 2, 3, 4]})
        assert response.status_code == 413
        assert response.json()["limit"] == 3
        allowed = await client.post(f"/pipelines/echo/{route}", json={"items": [1, 2, 3]})
        assert allowed.status_code in (200, 202)


async def test_invalid_mode_query_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/pipelines/quickstart/invoke?mode=fast", json=SEVEN)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "mode"]


async def test_stream_ndjson_by_default(client: httpx.AsyncClient) -> None:
    response = await client.post("/pipelines/quickstart/stream", json=SEVEN)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    events = ndjson_events(response.text)
    assert_run_shape(events)
    assert events[:3] == [
        {"type": "result", "seq": 0, "value": 22, "sources": [0, 1, 2]},
        {"type": "result", "seq": 1, "value": 40, "sources": [3, 4, 5]},
        {"type": "result", "seq": 2, "value": 24, "sources": [6]},
    ]
    assert events[3]["status"] == "succeeded"
    assert events[3]["stats"]["inputs"] == 7


async def test_stream_sse_gives_the_same_events(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/pipelines/quickstart/stream", json=SEVEN, headers={"Accept": "text/event-stream"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "id: 0\nevent: result\ndata: {" in response.text
    sse = sse_events(response.text)
    ndjson = ndjson_events((await client.post("/pipelines/quickstart/stream", json=SEVEN)).text)
    strip = [{k: v for k, v in e.items() if k != "stats"} for e in sse]
    assert strip == [{k: v for k, v in e.items() if k != "stats"} for e in ndjson]


async def test_stream_failed_run_sends_error_then_end(client: httpx.AsyncClient) -> None:
    response = await client.post("/pipelines/fragile/stream", json={"items": [1, 2, 3, 4]})
    events = ndjson_events(response.text)
    assert_run_shape(events)
    assert events[-2] == {
        "type": "error",
        "seq": len(events) - 2,
        "stage": "fragile",
        "error": "ValueError: three is not allowed",
    }
    assert events[-1]["status"] == "failed"


async def test_stream_item_errors(client: httpx.AsyncClient) -> None:
    items = [1, 2, -1, 3, 4, 5, 6, 7, 8, 13, 14, 15]
    response = await client.post("/pipelines/error_handling/stream", json={"items": items})
    events = ndjson_events(response.text)
    assert_run_shape(events)
    errors = sorted(
        (e["stage"], e["action"], tuple(e["sources"])) for e in events if e["type"] == "item_error"
    )
    assert errors == [
        ("business_rule", "handled", (7,)),
        ("business_rule", "handled", (10,)),
        ("flaky_call", "skip_item", (9,)),
        ("strict_batch", "skip_batch", (0, 1, 2)),
    ]
    assert events[-1]["stats"]["skipped"] == 2


NDJSON = {"Content-Type": "application/x-ndjson"}


async def test_ndjson_upload(client: httpx.AsyncClient) -> None:
    body = b"1\n2\n\n3\r\n4\n5\n6\n7"  # a blank line, a CRLF, no final newline
    response = await client.post("/pipelines/quickstart/stream", content=body, headers=NDJSON)
    events = ndjson_events(response.text)
    assert_run_shape(events)
    assert [e["value"] for e in events if e["type"] == "result"] == [22, 40, 24]
    assert events[-1]["stats"]["inputs"] == 7


async def test_ndjson_upload_with_put_as_curl_T_sends_it(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/pipelines/quickstart/stream", content=b"1\n2\n3\n", headers=NDJSON
    )
    events = ndjson_events(response.text)
    assert_run_shape(events)
    assert [e["value"] for e in events if e["type"] == "result"] == [22]
    openapi = (await client.get("/openapi.json")).json()
    assert set(openapi["paths"]["/pipelines/{name}/stream"]) == {"post"}


async def test_ndjson_upload_sse_and_mode(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/pipelines/timeline/stream?mode=as_completed",
        content=b"0.3\n0.05\n0.15\n",
        headers={**NDJSON, "Accept": "text/event-stream"},
    )
    events = sse_events(response.text)
    assert [e["value"] for e in events if e["type"] == "result"] == [0.05, 0.15, 0.3]
    assert [e["sources"] for e in events if e["type"] == "result"] == [[1], [2], [0]]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"1\n2\n{oops\n4\n", "BadLine: line 3: malformed JSON"),
        (b'1\n\n"2"\n', "BadLine: line 3 (item 1): Input should be a valid integer"),
        (b"1\n2\n3\n4\n", "BadLine: line 4: more than 3 items (CONVEYOR_MAX_ITEMS)"),
    ],
)
async def test_ndjson_upload_bad_line_fails_the_run(
    make_client: ClientFactory, body: bytes, error: str
) -> None:
    async with make_client(max_items=3) as client:
        response = await client.post("/pipelines/echo/stream", content=body, headers=NDJSON)
        if b"oops" in body or b'"2"' in body:
            response = await client.post(
                "/pipelines/quickstart/stream", content=body, headers=NDJSON
            )
    assert response.status_code == 200
    events = ndjson_events(response.text)
    assert_run_shape(events)
    assert events[-2]["type"] == "error" and events[-2]["stage"] is None
    assert events[-2]["error"].startswith(error)
    assert events[-1]["status"] == "failed"


async def test_a_bad_line_cancels_the_work_of_earlier_lines(client: httpx.AsyncClient) -> None:
    """Earlier items' results already sent stay sent; their work still in flight is cancelled."""
    started = asyncio.get_running_loop().time()
    response = await asyncio.wait_for(
        client.post("/pipelines/sleepy/stream", content=b"60\n60\n{bad\n", headers=NDJSON), 10
    )
    events = ndjson_events(response.text)
    assert_run_shape(events)
    assert [e["type"] for e in events] == ["error", "end"]
    assert events[-1]["stats"]["inputs"] == 2 and events[-1]["stats"]["results"] == 0
    assert asyncio.get_running_loop().time() - started < 5  # not the items' 60 s


async def test_empty_ndjson_upload(client: httpx.AsyncClient) -> None:
    response = await client.post("/pipelines/quickstart/stream", content=b"", headers=NDJSON)
    assert ndjson_events(response.text) == [
        {
            "type": "end",
            "seq": 0,
            "status": "succeeded",
            "stats": ndjson_events(response.text)[0]["stats"],
        }
    ]


async def test_create_job(client: httpx.AsyncClient) -> None:
    response = await client.post("/pipelines/quickstart/jobs", json=SEVEN)
    assert response.status_code == 202
    body = response.json()
    job_id = body["job_id"]
    assert body["status"] == "running"
    assert response.headers["location"] == f"/jobs/{job_id}" == body["status_url"]
    assert body["events_url"] == f"/jobs/{job_id}/events"
    assert body["results_url"] == f"/jobs/{job_id}/results"
    events = ndjson_events((await client.get(body["events_url"])).text)
    assert_run_shape(events)
    assert [e["value"] for e in events if e["type"] == "result"] == [22, 40, 24]


# Results JSON cannot encode as they are: bytes go as base64; anything else fails the run cleanly


@pytest.mark.parametrize("accept", ["text/event-stream", "application/x-ndjson"])
async def test_stream_sends_bytes_as_base64(client: httpx.AsyncClient, accept: str) -> None:
    response = await client.post(
        "/pipelines/weird/stream", json={"items": [1, 2]}, headers={"Accept": accept}
    )
    assert response.status_code == 200
    parse = sse_events if accept == "text/event-stream" else ndjson_events
    events = parse(response.text)
    assert_run_shape(events)
    assert [e["value"] for e in events if e["type"] == "result"] == ["_wA=", "_wA="]
    assert events[-1]["status"] == "succeeded"


async def test_invoke_sends_bytes_as_base64(client: httpx.AsyncClient) -> None:
    response = await client.post("/pipelines/weird/invoke", json={"items": [1]})
    assert response.status_code == 200
    assert response.json()["results"] == ["_wA="]


UNENCODABLE = "UnencodableResult: str: UnicodeEncodeError: 'utf-8' codec can't encode character"


@pytest.mark.parametrize("accept", ["text/event-stream", "application/x-ndjson"])
async def test_stream_of_an_unencodable_result_fails_the_run(
    client: httpx.AsyncClient, accept: str
) -> None:
    response = await client.post(
        "/pipelines/surrogate/stream", json={"items": [1, 2, 3]}, headers={"Accept": accept}
    )
    assert response.status_code == 200
    parse = sse_events if accept == "text/event-stream" else ndjson_events
    events = parse(response.text)
    assert_run_shape(events)
    assert events[0] == {"type": "result", "seq": 0, "value": "1", "sources": [0]}
    assert events[1]["type"] == "error" and events[1]["stage"] is None
    assert events[1]["error"].startswith(UNENCODABLE)
    assert events[2]["type"] == "end" and events[2]["status"] == "failed"
    assert events[2]["stats"]["results"] == 1


async def test_invoke_of_an_unencodable_result_answers_a_failed_run(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/pipelines/surrogate/invoke", json={"items": [1, 2, 3]})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "failed" and body["results"] == ["1"]
    assert body["error"]["stage"] is None and body["error"]["error"].startswith(UNENCODABLE)


# Bodies far larger than any valid request are refused before they are read


def _post_scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The ASGI scope of a JSON POST to `path`."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }


async def _asgi_post(
    app: Any, path: str, headers: list[tuple[bytes, bytes]], chunks: Iterator[bytes]
) -> tuple[int, dict[str, Any], int]:
    """POST straight to the ASGI app: the status, the JSON body, and how many chunks it read."""
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        chunk = next(chunks, None)
        await asyncio.sleep(0)
        if chunk is None:
            await asyncio.sleep(3600)
        read += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(_post_scope(path, headers), receive, send), 10)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body), read


@pytest.mark.parametrize("route", ["invoke", "stream", "jobs"])
async def test_a_declared_body_over_the_limit_is_413_unread(route: str) -> None:
    app = create_app(make_settings(max_body_bytes=1000))
    nothing: Iterator[bytes] = iter(())
    headers = [(b"content-length", b"100000000")]
    status, body, read = await _asgi_post(app, f"/pipelines/echo/{route}", headers, nothing)
    assert status == 413 and read == 0
    assert body["limit"] == 1000 and "CONVEYOR_MAX_BODY_BYTES" in body["detail"]


async def test_a_chunked_body_is_read_no_further_than_the_limit() -> None:
    app = create_app(make_settings(max_body_bytes=10_000))
    endless = itertools.repeat(b"[" * 1024, 2000)  # 2 MB, then a body that never ends
    status, body, read = await _asgi_post(app, "/pipelines/echo/invoke", [], endless)
    assert status == 413 and body["limit"] == 10_000
    assert read <= 11


async def test_a_body_within_the_limit_is_read(make_client: ClientFactory) -> None:
    async with make_client(max_body_bytes=100) as client:
        assert (await client.post("/pipelines/echo/invoke", json={"items": [1]})).status_code == 200
        too_big = {"items": ["x" * 200]}
        response = await client.post("/pipelines/echo/invoke", json=too_big)
        assert response.status_code == 413 and response.json()["limit"] == 100


@pytest.mark.parametrize("route", ["invoke", "stream", "jobs"])
async def test_a_client_leaving_in_the_middle_of_its_body_is_no_500(
    route: str, captured: LogCapture
) -> None:
    """One info line (the request's, status 499), no traceback, not counted as 500."""
    app = create_app(make_settings())
    messages = iter(
        [
            {"type": "http.request", "body": b'{"items": [1, 2', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0)
        return next(messages, {"type": "http.disconnect"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = _post_scope(f"/pipelines/echo/{route}", [])
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app(scope, receive, send), 10)
        metrics = app.state.services.metrics.render().decode()
    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert 500 not in statuses
    http_lines = [line for line in captured.lines if line["logger"] == "conveyor.service.http"]
    assert [(line["level"], line["message"], line["status"]) for line in http_lines] == [
        ("info", "request", 499)
    ]
    assert not any(line.get("exc_info") for line in captured.lines)
    assert metric(metrics, "conveyor_http_requests_total", status="499") == 1
    assert metric(metrics, "conveyor_http_requests_total", status="500") == 0


async def test_stages_show_their_executor_and_run_elsewhere(client: httpx.AsyncClient) -> None:
    entry = (await client.get("/pipelines/offloaded")).json()
    assert entry["stages"] == [
        {"name": "in_thread", "kind": "single", "executor": "thread"},
        {
            "name": "in_processes",
            "kind": "batch",
            "executor": "process",
            "max_size": 2,
            "min_size": 1,
            "max_wait": None,
        },
    ]
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"]["StageInfo"]
    assert "executor" in schema["properties"]
    body = (await client.post("/pipelines/offloaded/invoke", json={"items": [1, 2, 3]})).json()
    assert (body["status"], body["results"]) == ("succeeded", [5, 4])
    failed = (await client.post("/pipelines/offloaded/invoke", json={"items": [12, 1]})).json()
    assert failed["status"] == "failed"
    assert failed["error"]["error"] == "ValueError: 13 in a process"  # the task's own error
