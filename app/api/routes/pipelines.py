"""The registry and the runs of its pipelines: invoke, stream, and jobs."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from ...encoding import NDJSON, SSE, dumps, wants_sse
from ...runs import Collector, Run, RunKind, collect
from ...streaming import Shutdown, event_response, until_disconnect
from ...upload import BodyChannel, UploadResponse, ndjson_items
from ..deps import (
    ApiKey,
    EntryDep,
    ModeQuery,
    RunRequestDep,
    ServicesDep,
    TraceQuery,
    get_run_request,
    validated_items,
)
from ..models import ErrorBody, InvokeResponse, JobAccepted, PipelineInfo

router = APIRouter(prefix="/pipelines", tags=["pipelines"], dependencies=[ApiKey])


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in (401, 404, *codes)}


RUN_BODY = {"$ref": "#/components/schemas/RunRequest"}
JSON_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": RUN_BODY}}}
}
STREAM_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": RUN_BODY},
            NDJSON: {
                "schema": {"type": "string"},
                "description": "one input item per line, read as the lines arrive; use ?mode=",
            },
        },
    }
}
EVENTS = {
    "description": "the run's events, each a `WireEvent` (result, item_error, error, end; stage "
    "with trace): NDJSON lines, or SSE with Accept: text/event-stream (id: the seq, event: the "
    "type, data: the object without type)",
    "content": {NDJSON: {"schema": {"type": "string"}}, SSE: {"schema": {"type": "string"}}},
}


@router.get("", response_model=list[PipelineInfo], responses=_errors())
async def list_pipelines(services: ServicesDep) -> Response:
    """List the registered pipelines with their stages and item schemas."""
    return JSONResponse([entry.describe() for entry in services.registry.values()])


@router.get("/{name}", response_model=PipelineInfo, responses=_errors())
async def get_pipeline(entry: EntryDep) -> Response:
    """Describe one pipeline."""
    return JSONResponse(entry.describe())


@router.post(
    "/{name}/invoke",
    response_model=InvokeResponse,
    responses=_errors(413, 422),
    openapi_extra=JSON_BODY,
)
async def invoke(
    request: Request,
    entry: EntryDep,
    body: RunRequestDep,
    services: ServicesDep,
    mode: ModeQuery = None,
    trace: TraceQuery = False,
) -> Response:
    """Run the pipeline on the items and answer with every result at once (`stages` too,
    traced)."""
    items = await validated_items(entry, body.items, services.settings)
    run = Run(
        entry,
        items,
        mode=body.mode or mode or "ordered",
        kind=RunKind.INVOKE,
        metrics=services.metrics,
        trace=bool(body.trace or trace),
        tracing=services.tracing,
    )
    collector = Collector(run.trace)
    work = collect(run, collector)
    result = await until_disconnect(request, work, stop=services.stopping, on_stop=run.cancel)
    if result is None:  # the client left: the run was closed
        result = collector.body()
    return Response(dumps(result), media_type="application/json")


@router.post(
    "/{name}/stream",
    response_class=Response,
    responses={200: EVENTS, **_errors(413, 422)},
    openapi_extra=STREAM_BODY,
)
async def stream(
    request: Request,
    entry: EntryDep,
    services: ServicesDep,
    mode: ModeQuery = None,
    trace: TraceQuery = False,
) -> Response:
    """Run the pipeline and stream its events as they come (NDJSON, or SSE on request).

    The body is `{"items": [...]}`, or, with `Content-Type: application/x-ndjson`, one item per
    line: items enter the pipeline as their lines arrive, before the upload ends.
    """
    settings = services.settings
    sse = wants_sse(request.headers.get("accept"))
    respond = partial(
        event_response,
        sse=sse,
        ping=settings.sse_ping_s,
        send_timeout=settings.send_timeout_s,
        buffer_bytes=settings.stream_buffer_bytes,
    )
    if _is_ndjson(request.headers.get("content-type")):
        body = BodyChannel()
        source = ndjson_items(
            body.chunks(),
            entry.input,
            max_items=settings.max_items,
            max_line_bytes=settings.max_item_bytes,
            max_bytes=settings.max_upload_bytes,
        )
        run = Run(
            entry,
            source,
            mode=mode or "ordered",
            kind=RunKind.STREAM,
            metrics=services.metrics,
            trace=trace,
            tracing=services.tracing,
        )
        shutdown = Shutdown(services.stopping, cancel=run.cancel)
        return UploadResponse(respond(run.events(), shutdown=shutdown), body)
    request_body = await get_run_request(request)
    items = await validated_items(entry, request_body.items, settings)
    run = Run(
        entry,
        items,
        mode=request_body.mode or mode or "ordered",
        kind=RunKind.STREAM,
        metrics=services.metrics,
        trace=bool(request_body.trace or trace),
        tracing=services.tracing,
    )
    return respond(run.events(), shutdown=Shutdown(services.stopping, cancel=run.cancel))


# `curl -T -` uploads with PUT unless told `-X POST`: the same route answers it (not in OpenAPI)
router.add_api_route(
    "/{name}/stream", stream, methods=["PUT"], response_class=Response, include_in_schema=False
)


@router.post(
    "/{name}/jobs",
    status_code=202,
    response_model=JobAccepted,
    responses=_errors(413, 422, 429, 503),
    openapi_extra=JSON_BODY,
    tags=["jobs"],
)
async def create_job(
    request: Request,
    response: Response,
    entry: EntryDep,
    body: RunRequestDep,
    services: ServicesDep,
    mode: ModeQuery = None,
    trace: TraceQuery = False,
) -> dict[str, Any]:
    """Start a job: the run goes on without the client; follow it at events_url."""
    items = await validated_items(entry, body.items, services.settings)
    # over CONVEYOR_MAX_RUNNING_JOBS, JobLimitReached: 429 (app.api.handlers)
    record = await services.runner.submit(
        entry, items, body.mode or mode or "ordered", trace=bool(body.trace or trace)
    )
    base = f"{request.scope.get('root_path', '')}/jobs/{record.job_id}"
    response.headers["Location"] = base
    return {
        "job_id": record.job_id,
        "status": record.status.value,
        "events_url": f"{base}/events",
        "status_url": base,
        "results_url": f"{base}/results",
    }


def _is_ndjson(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media in (NDJSON, "application/ndjson", "application/jsonl", "application/jsonlines")
