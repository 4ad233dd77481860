"""The in-memory job store: the embedded default, for one process.

What it keeps is bounded. Each event is kept as its JSON bytes, and the store counts those bytes
(plus `EVENT_OVERHEAD` per event, the bookkeeping of a kept event) against `max_bytes`, and the
jobs it keeps, running or finished, against `max_jobs`. To make room it evicts finished jobs,
oldest finished first; an evicted job is gone as an expired one is (404). Running jobs are never
evicted: when they alone hold `max_bytes`, the next event that does not fit (other than an
`error` or an `end`, which always fit) is refused with `StoreFull`, and the runner fails that
job (`error` `StoreFull: ...`, then `end` failed); when `max_jobs` jobs all run, `create`
refuses a new one (`JobLimitReached`: 429). Expired jobs are dropped when looked up and, between
`start()` and `close()`, by a purge every `purge_every_s` seconds.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .codec import dumps, loads
from .store import (
    JobLimitReached,
    JobNotFound,
    JobPage,
    JobRecord,
    JobStatus,
    JobStore,
    StoreFull,
    WireEvent,
    list_key,
    page_cursor,
    read_cursor,
    resume_after,
)
from .tasks import stop_tasks

__all__ = ["EVENT_OVERHEAD", "MemoryJobStore"]

EVENT_OVERHEAD = 48  # bytes counted per kept event besides its JSON (object header, list slot)
PURGE_EVERY_S = 10.0  # at most; a shorter retention time purges as often as it expires jobs
TERMINAL = ("error", "end")  # events always taken, so that a refused job can still end


@dataclass(slots=True)
class _Job:
    record: JobRecord
    events: list[bytes] = field(default_factory=list)  # each event's JSON
    size: int = 0  # bytes counted for its events
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # replaced at every append
    cancel: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryJobStore(JobStore):
    """Jobs in a dict; followers wake on an `asyncio.Event` per append; see the module doc."""

    def __init__(
        self,
        *,
        ttl_s: float = 3600.0,
        max_bytes: int = 256 << 20,
        max_jobs: int = 10_000,
        purge_every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._ttl_s = ttl_s
        self._max_bytes = max_bytes
        self._max_jobs = max_jobs
        self._purge_every_s = purge_every_s or min(PURGE_EVERY_S, ttl_s)
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self._finished: OrderedDict[str, float] = OrderedDict()  # id: expiry, oldest first
        self._order: list[tuple[int, str]] = []  # list_key of every job kept, oldest first
        self._running = 0
        self._bytes = 0
        self._purger: asyncio.Task[None] | None = None

    @property
    def retained_bytes(self) -> int:
        """The bytes counted for the events kept now."""
        return self._bytes

    @property
    def retained_jobs(self) -> int:
        """The jobs kept now, running or finished."""
        return len(self._jobs)

    async def create(self, record: JobRecord, *, max_running: int) -> None:
        self._purge()
        if record.job_id in self._jobs:
            raise ValueError(f"job {record.job_id!r} exists")
        if self._running >= max_running:
            raise JobLimitReached(self._running, max_running)
        while len(self._jobs) >= self._max_jobs and self._finished:
            self._drop(next(iter(self._finished)))
        if len(self._jobs) >= self._max_jobs:  # every job kept runs
            raise JobLimitReached(self._running, self._max_jobs)
        self._jobs[record.job_id] = _Job(replace(record))
        bisect.insort(self._order, list_key(record))
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
        data = dumps(event)
        size = len(data) + EVENT_OVERHEAD
        while self._bytes + size > self._max_bytes and self._finished:
            self._drop(next(iter(self._finished)))
        if self._bytes + size > self._max_bytes and event["type"] not in TERMINAL:
            raise StoreFull(
                f"running jobs hold {self._bytes} bytes of events; the in-memory job store "
                f"keeps at most {self._max_bytes} (CONVEYOR_JOB_STORE_MAX_BYTES)"
            )
        job.events.append(data)
        job.size += size
        self._bytes += size
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
                event = loads(job.events[position])
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

    async def list_jobs(
        self,
        *,
        pipeline: str | None = None,
        status: JobStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        self._purge()
        order = self._order
        start = len(order) if cursor is None else bisect.bisect_left(order, read_cursor(cursor))
        found: list[JobRecord] = []
        for index in range(start - 1, -1, -1):
            record = self._jobs[order[index][1]].record
            if (pipeline is None or record.pipeline == pipeline) and (
                status is None or record.status is status
            ):
                if len(found) == limit:  # one more exists: there is a next page
                    return JobPage(found, page_cursor(list_key(found[-1])))
                found.append(replace(record))
        return JobPage(found, None)

    async def ping(self) -> None:
        return None

    async def results(self, job_id: str) -> list[Any]:
        job = self._live(job_id)
        if job is None:
            return []
        events = (loads(data) for data in job.events)
        return [e["value"] for e in events if e["type"] == "result"]

    async def start(self) -> None:
        """Purge expired jobs every `purge_every_s`, until `close()`."""
        if self._purger is None:
            self._purger = asyncio.create_task(self._purge_forever(), name="conveyor-purge")

    async def close(self) -> None:
        purger, self._purger = self._purger, None
        if purger is not None:
            await stop_tasks([purger], 1.0)

    async def _purge_forever(self) -> None:
        while True:
            await asyncio.sleep(self._purge_every_s)
            with contextlib.suppress(Exception):
                self._purge()

    def _finish(self, job: _Job, end: WireEvent) -> None:
        job.record.status = JobStatus(end["status"])
        job.record.stats = end.get("stats")
        job.record.finished_at = time.time()
        self._running -= 1
        self._finished[job.record.job_id] = self._clock() + self._ttl_s

    def _drop(self, job_id: str) -> None:
        """Forget a finished job (expired or evicted); its followers finish their replay."""
        self._finished.pop(job_id, None)
        job = self._jobs.pop(job_id, None)
        if job is not None:
            self._bytes -= job.size
            key = list_key(job.record)
            index = bisect.bisect_left(self._order, key)
            if index < len(self._order) and self._order[index] == key:
                del self._order[index]

    def _live(self, job_id: str) -> _Job | None:
        self._purge()
        return self._jobs.get(job_id)

    def _purge(self) -> None:
        now = self._clock()
        while self._finished:
            job_id, deadline = next(iter(self._finished.items()))
            if deadline > now:
                return
            self._drop(job_id)
