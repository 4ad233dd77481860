"""The in-memory job store: the embedded default, for one process."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .store import (
    JobLimitReached,
    JobNotFound,
    JobRecord,
    JobStatus,
    JobStore,
    WireEvent,
    resume_after,
)

__all__ = ["MemoryJobStore"]


@dataclass(slots=True)
class _Job:
    record: JobRecord
    events: list[WireEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # replaced at every append
    cancel: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryJobStore(JobStore):
    """Jobs in a dict; followers wake on an `asyncio.Event` per append; expiry is lazy."""

    def __init__(self, *, ttl_s: float = 3600.0, clock: Callable[[], float] = time.monotonic):
        self._ttl_s = ttl_s
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self._expiry: list[tuple[float, str]] = []  # heap of (deadline, job_id)
        self._running = 0

    async def create(self, record: JobRecord, *, max_running: int) -> None:
        self._purge()
        if record.job_id in self._jobs:
            raise ValueError(f"job {record.job_id!r} exists")
        if self._running >= max_running:
            raise JobLimitReached(self._running, max_running)
        self._jobs[record.job_id] = _Job(replace(record))
        self._running += 1

    async def get(self, job_id: str) -> JobRecord | None:
        job = self._live(job_id)
        return None if job is None else replace(job.record)

    async def append(self, job_id: str, event: WireEvent) -> None:
        job = self._live(job_id)
        if job is None:
            raise JobNotFound(job_id)
        if job.record.finished:
            raise ValueError(f"job {job_id!r} has ended")
        if event["seq"] != len(job.events):
            raise ValueError(f"event seq {event['seq']} != next seq {len(job.events)}")
        job.events.append(event)
        if event["type"] == "end":
            self._finish(job, event)
        changed, job.changed = job.changed, asyncio.Event()
        changed.set()

    async def events(
        self, job_id: str, *, after: int = -1, follow: bool = True
    ) -> AsyncIterator[WireEvent]:
        job = self._live(job_id)
        if job is None:
            return
        position = resume_after(after) + 1
        while True:
            changed = job.changed
            while position < len(job.events):
                event = job.events[position]
                position += 1
                yield event
            if not follow or job.record.finished:
                return
            await changed.wait()

    async def request_cancel(self, job_id: str) -> JobRecord | None:
        job = self._live(job_id)
        if job is None:
            return None
        if not job.record.finished:
            job.record.cancel_requested = True
            job.cancel.set()
        return replace(job.record)

    async def wait_cancel(self, job_id: str) -> None:
        job = self._live(job_id)
        if job is None:
            raise JobNotFound(job_id)
        await job.cancel.wait()

    async def running_count(self) -> int:
        return self._running

    async def ping(self) -> None:
        return None

    async def results(self, job_id: str) -> list[Any]:
        job = self._live(job_id)
        if job is None:
            return []
        return [e["value"] for e in job.events if e["type"] == "result"]

    def _finish(self, job: _Job, end: WireEvent) -> None:
        job.record.status = JobStatus(end["status"])
        job.record.stats = end.get("stats")
        job.record.finished_at = time.time()
        self._running -= 1
        heapq.heappush(self._expiry, (self._clock() + self._ttl_s, job.record.job_id))

    def _live(self, job_id: str) -> _Job | None:
        self._purge()
        return self._jobs.get(job_id)

    def _purge(self) -> None:
        now = self._clock()
        while self._expiry and self._expiry[0][0] <= now:
            _, job_id = heapq.heappop(self._expiry)
            self._jobs.pop(job_id, None)
