"""`ConveyorClient` and its job handle `Job`: the service's HTTP contract as async Python."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import httpx

from conveyor_core._client_duplex import duplex_post
from conveyor_core._client_errors import (
    RemoteRunError,
    ServiceConnectionError,
    ServiceError,
    error_from_response,
)
from conveyor_core._client_trace import trace_headers
from conveyor_core._client_wire import iter_events

__all__ = ["ConveyorClient", "Job", "JobPage", "Mode"]

Mode = Literal["ordered", "as_completed"]
Items = Iterable[Any] | AsyncIterable[Any]

_SSE = "text/event-stream"
_NDJSON = "application/x-ndjson"
_RETRY_STATUSES = frozenset({502, 503, 504})


class ConveyorClient:
    """A client of a Conveyor service at `base_url`; use `async with` or call `aclose()`.

    `items` may be an async iterable in `events()` and `stream()`: it is then uploaded as
    NDJSON while it is produced, and results come back before the upload ends.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = 30.0,
        retries: int = 5,
        backoff: float = 0.2,
        idle_timeout: float | None = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries  # reconnection attempts of `Job.events()` without progress
        self.backoff = backoff  # first wait between attempts in seconds; doubles, up to 5 s
        self.idle_timeout = idle_timeout  # a job stream silent this long (pings count) reconnects
        self._auth = {"authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Timeout(timeout)
        self._connect_timeout = limits.connect
        self._stream_timeout = httpx.Timeout(
            connect=limits.connect, read=None, write=limits.write, pool=limits.pool
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self._auth, timeout=limits, transport=transport
        )

    async def __aenter__(self) -> ConveyorClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def pipelines(self) -> list[dict[str, Any]]:
        """The registered pipelines: name, description, stages, input and output schemas."""
        result: list[dict[str, Any]] = await self._json("GET", "/pipelines")
        return result

    async def pipeline(self, name: str) -> dict[str, Any]:
        """One registered pipeline's entry."""
        result: dict[str, Any] = await self._json("GET", f"/pipelines/{_q(name)}")
        return result

    async def invoke(
        self, pipeline: str, items: Iterable[Any], mode: Mode = "ordered"
    ) -> list[Any]:
        """Run `pipeline` on `items` and return its results; a failed run raises."""
        body = {"items": list(items), "mode": mode}
        payload = await self._json("POST", f"/pipelines/{_q(pipeline)}/invoke", json=body)
        error = payload.get("error")
        if isinstance(error, dict):
            raise RemoteRunError(error.get("stage"), str(error.get("error")), pipeline)
        if error or payload.get("status", "succeeded") != "succeeded":
            status = payload.get("status")
            raise RemoteRunError(
                None, str(error or f"the run ended with status {status}"), pipeline
            )
        return list(payload["results"])

    async def events(
        self, pipeline: str, items: Items, mode: Mode = "ordered"
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The run's events as dicts with their `type`, `end` last; errors arrive as events."""
        path = f"/pipelines/{_q(pipeline)}/stream"
        if isinstance(items, AsyncIterable):
            stream = self._upload(path, items, mode)
        else:
            stream = self._event_stream("POST", path, json={"items": list(items), "mode": mode})
        async with contextlib.aclosing(stream):
            async for event in stream:
                yield event

    async def stream(
        self, pipeline: str, items: Items, mode: Mode = "ordered"
    ) -> AsyncGenerator[Any, None]:
        """The run's values as they come; an `error` event raises `RemoteRunError`."""
        events = self.events(pipeline, items, mode)
        async with contextlib.aclosing(events):
            async for event in events:
                if event["type"] == "result":
                    yield event["value"]
                else:
                    raise_for_event(event, pipeline)

    async def submit(self, pipeline: str, items: Iterable[Any], mode: Mode = "ordered") -> Job:
        """Start a job and return its handle at once."""
        body = {"items": list(items), "mode": mode}
        payload = await self._json("POST", f"/pipelines/{_q(pipeline)}/jobs", json=body)
        return Job(self, payload["job_id"], pipeline)

    async def jobs(
        self,
        pipeline: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """A page of the service's jobs, newest first (`GET /jobs`); `page.next_cursor`, given
        as `cursor`, asks for the next one (None: there is no more)."""
        params: dict[str, Any] = {"limit": limit}
        for name, value in (("pipeline", pipeline), ("status", status), ("cursor", cursor)):
            if value is not None:
                params[name] = value
        payload = await self._json("GET", "/jobs", params=params)
        return JobPage(list(payload["jobs"]), payload.get("next_cursor"))

    def job(self, job_id: str) -> Job:
        """A handle on an existing job, e.g. one submitted by another process."""
        return Job(self, job_id)

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, headers=trace_headers(), **kwargs)
        except httpx.TransportError as exc:
            raise ServiceConnectionError(f"{method} {path}: {exc!r}") from exc
        await _raise_for_status(response)
        return response.json() if response.content else None

    async def _event_stream(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        idle_timeout: float | None = None,
        **kwargs: Any,
    ) -> AsyncGenerator[dict[str, Any], None]:
        headers = {"accept": _SSE, **trace_headers(), **(headers or {})}
        timeout = self._stream_timeout
        if idle_timeout is not None:
            timeout = httpx.Timeout(
                connect=timeout.connect, read=idle_timeout, write=timeout.write, pool=timeout.pool
            )
        try:
            async with self._http.stream(
                method, path, headers=headers, timeout=timeout, **kwargs
            ) as response:
                await _raise_for_status(response)
                content_type = response.headers.get("content-type", "")
                async for event in iter_events(response.aiter_bytes(), content_type):
                    yield event
                    if event.get("type") == "end":
                        return
        except httpx.TransportError as exc:
            raise ServiceConnectionError(f"{method} {path}: {exc!r}") from exc
        raise ServiceConnectionError(f"{method} {path}: the stream ended before its end event")

    async def _upload(
        self, path: str, items: AsyncIterable[Any], mode: str
    ) -> AsyncGenerator[dict[str, Any], None]:
        headers = {**self._auth, **trace_headers(), "accept": _SSE, "content-type": _NDJSON}
        url = f"{self.base_url}{path}?mode={_q(mode)}"
        async with duplex_post(
            url, headers, _ndjson(items), connect_timeout=self._connect_timeout
        ) as response:
            if response.status_code >= 400:
                body = await response.aread()
                raise error_from_response(response.status_code, response.headers, body)
            content_type = response.headers.get("content-type", "")
            async for event in iter_events(response.aiter_bytes(), content_type):
                yield event
                if event.get("type") == "end":
                    return
        raise ServiceConnectionError(f"POST {path}: the stream ended before its end event")


@dataclass(frozen=True, slots=True)
class JobPage:
    """A page of `ConveyorClient.jobs()`: each job as `GET /jobs/{id}` gives it, newest first."""

    jobs: list[dict[str, Any]]
    next_cursor: str | None


class Job:
    """A job on the service: its `id`, its status, results and events; `cancel()` stops it."""

    def __init__(self, client: ConveyorClient, job_id: str, pipeline: str | None = None) -> None:
        self.id = job_id
        self.pipeline = pipeline
        self._client = client

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, pipeline={self.pipeline!r})"

    async def status(self) -> dict[str, Any]:
        """`{"job_id", "pipeline", "status", "created_at", "stats"}` as the service reports it."""
        result: dict[str, Any] = await self._client._json("GET", f"/jobs/{_q(self.id)}")
        return result

    async def results(self) -> list[Any]:
        """The results so far, in event order."""
        payload = await self._client._json("GET", f"/jobs/{_q(self.id)}/results")
        return list(payload["results"])

    async def cancel(self) -> None:
        """Ask the service to cancel the job; its events then end with status `cancelled`."""
        await self._client._json("DELETE", f"/jobs/{_q(self.id)}")

    async def wait(self) -> dict[str, Any]:
        """Follow the job to its end and return the `end` event."""
        events = self.events()
        async with contextlib.aclosing(events):
            async for event in events:
                if event["type"] == "end":
                    return event
        raise ServiceConnectionError(f"job {self.id}: no end event")  # pragma: no cover

    async def events(self, after: int | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """The job's events after seq `after` (from the start if None), each exactly once.

        A dropped connection, or one silent for `client.idle_timeout` seconds (the service
        pings every 15 s by default), is resumed with `Last-Event-ID` after a backoff; after
        `client.retries` failed attempts in a row, `ServiceConnectionError` is raised.
        """
        last = after
        failures = 0
        while True:
            headers = {"last-event-id": str(last)} if last is not None else {}
            stream = self._client._event_stream(
                "GET",
                f"/jobs/{_q(self.id)}/events",
                headers=headers,
                idle_timeout=self._client.idle_timeout,
            )
            try:
                async with contextlib.aclosing(stream):
                    async for event in stream:
                        if last is not None and event["seq"] <= last:
                            continue  # already delivered
                        last = event["seq"]
                        failures = 0
                        yield event
                        if event["type"] == "end":
                            return
            except ServiceError as exc:
                if exc.status not in _RETRY_STATUSES:
                    raise
                error: Exception = exc
            except ServiceConnectionError as exc:
                error = exc
            failures += 1
            if failures > self._client.retries:
                raise ServiceConnectionError(
                    f"job {self.id}: gave up after {failures} attempts: {error}"
                ) from error
            await asyncio.sleep(min(self._client.backoff * 2 ** (failures - 1), 5.0))


def raise_for_event(event: Mapping[str, Any], pipeline: str | None = None) -> None:
    """Raise `RemoteRunError` for an `error` event, or an `end` of a run that did not succeed."""
    if event["type"] == "error":
        raise RemoteRunError(event.get("stage"), str(event.get("error")), pipeline)
    if event["type"] == "end" and event.get("status") not in (None, "succeeded"):
        raise RemoteRunError(None, f"the run ended with status {event.get('status')}", pipeline)


async def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code >= 400:
        await response.aread()
        raise error_from_response(response.status_code, response.headers, response.content)


async def _ndjson(items: AsyncIterable[Any]) -> AsyncIterator[bytes]:
    async for item in items:
        yield json.dumps(item, separators=(",", ":")).encode() + b"\n"


def _q(segment: str) -> str:
    return quote(segment, safe="")
