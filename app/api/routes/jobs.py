"""Jobs: status, events (live or replayed, resumable), results, cancellation."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import BeforeValidator

from ...encoding import NDJSON, SSE, dumps, wants_sse
from ...errors import InvalidInput, JobNotFound
from ...jobs.runner import JobRunner
from ...jobs.store import MAX_SEQ, BadCursor, JobRecord, JobStatus
from ...streaming import Shutdown, closing, event_response
from ..deps import ApiKey, ServicesDep
from ..models import ErrorBody, JobCancel, JobInfo, JobList, JobResults

router = APIRouter(
    prefix="/jobs",
    tags=["jobs"],
    dependencies=[ApiKey],
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)

JobId = Annotated[str, Path(description="the job_id returned by POST /pipelines/{name}/jobs")]

JOBS_END_S = 3.0  # at shutdown, how long followers wait for the local jobs to write their end
FOLLOWER_DRAIN_S = 0.5  # ... and then to read it


def _position(value: object) -> object:
    """A resume position of any length: digits past every seq mean "after the last event"
    (the stores clamp positions to MAX_SEQ; Python will not even parse 4300 digits)."""
    if isinstance(value, str) and len(value) > 20 and value.strip().isdigit():
        return MAX_SEQ
    return value


async def _local_jobs_ended(runner: JobRunner) -> None:
    """A follower's wait at shutdown: the jobs of this replica are cancelled and write their
    `end` (their followers then end by themselves); a follower of a job running elsewhere is
    closed after that, without `end` (it resumes on another replica)."""
    with anyio.move_on_after(JOBS_END_S):
        await runner.idle()
    await asyncio.sleep(FOLLOWER_DRAIN_S)


async def _record(services: ServicesDep, job_id: str) -> JobRecord:
    record = await services.store.get(job_id)
    if record is None:
        raise JobNotFound(f"no job {job_id!r} (unknown, or expired after its retention time)")
    return record


def _blank_is_none(value: object) -> object:
    """`?status=` (empty) is no filter, like an absent parameter."""
    return None if value == "" else value


@router.get("", response_model=JobList, responses={422: {"model": ErrorBody}})
async def list_jobs(
    services: ServicesDep,
    pipeline: Annotated[
        str | None, Query(max_length=100, description="only this pipeline's jobs")
    ] = None,
    status: Annotated[
        JobStatus | None,
        BeforeValidator(_blank_is_none),
        Query(description="only jobs in this status"),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, description="jobs per page, at most CONVEYOR_JOBS_PAGE_MAX")
    ] = 50,
    cursor: Annotated[
        str | None, Query(max_length=512, description="the next_cursor of the previous page")
    ] = None,
) -> Response:
    """The jobs kept (running, and finished within their retention), newest first."""
    if limit > services.settings.jobs_page_max:
        raise InvalidInput(
            f"limit {limit} is over {services.settings.jobs_page_max} (CONVEYOR_JOBS_PAGE_MAX)"
        )
    try:
        page = await services.store.list_jobs(
            pipeline=pipeline or None, status=status, limit=limit, cursor=cursor or None
        )
    except BadCursor as exc:
        raise InvalidInput(f"cursor: {exc}") from None
    body = {"jobs": [record.to_wire() for record in page.jobs], "next_cursor": page.next_cursor}
    return Response(dumps(body), media_type="application/json")


@router.get("/{job_id}", response_model=JobInfo)
async def get_job(job_id: JobId, services: ServicesDep) -> dict[str, Any]:
    """The job's status, and its stats once it has ended."""
    return (await _record(services, job_id)).to_wire()


@router.get(
    "/{job_id}/events",
    response_class=Response,
    responses={
        200: {
            "description": "events (each a WireEvent) after `after`: replayed, then live "
            "until `end`",
            "content": {
                NDJSON: {"schema": {"type": "string"}},
                SSE: {"schema": {"type": "string"}},
            },
        },
        422: {"model": ErrorBody},
    },
)
async def job_events(
    job_id: JobId,
    request: Request,
    services: ServicesDep,
    after: Annotated[
        int | None,
        BeforeValidator(_position),
        Query(ge=-1, description="send only events with a greater seq"),
    ] = None,
    last_event_id: Annotated[
        int | None,
        BeforeValidator(_position),
        Header(alias="Last-Event-ID", ge=-1, description="as `after` (what EventSource sends)"),
    ] = None,
) -> Response:
    """The job's events from the start, or after a seq; a running job's stream stays live."""
    await _record(services, job_id)
    start = max(-1 if after is None else after, -1 if last_event_id is None else last_event_id)
    settings = services.settings
    return event_response(
        closing(services.store.events(job_id, after=start), f"job {job_id}"),
        sse=wants_sse(request.headers.get("accept")),
        ping=settings.sse_ping_s,
        send_timeout=settings.send_timeout_s,
        buffer_bytes=settings.stream_buffer_bytes,
        shutdown=Shutdown(services.stopping, settle=partial(_local_jobs_ended, services.runner)),
    )


@router.get("/{job_id}/results", response_model=JobResults)
async def job_results(job_id: JobId, services: ServicesDep) -> Response:
    """The results so far, in event order, and the job's status."""
    record = await _record(services, job_id)
    results = await services.store.results(job_id)
    return Response(
        dumps({"status": record.status.value, "results": results}), media_type="application/json"
    )


@router.delete("/{job_id}", status_code=202, response_model=JobCancel)
async def cancel_job(job_id: JobId, services: ServicesDep) -> dict[str, Any]:
    """Cancel a running job: its event stream ends with status cancelled."""
    record = await services.store.request_cancel(job_id)
    if record is None:
        raise JobNotFound(f"no job {job_id!r} (unknown, or expired after its retention time)")
    return {
        "job_id": job_id,
        "status": record.status.value,
        "cancel_requested": record.cancel_requested,
    }
