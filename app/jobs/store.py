"""The job store: the records and event logs of jobs, behind one interface.

A job is one pipeline run started by `POST /pipelines/{name}/jobs`. It runs in the background of
the replica that accepted it (see `app.jobs.runner`), and any replica sharing the store answers
its status, results and events. Per job, a store keeps:

- a `JobRecord` (pipeline, mode, status, stats, timestamps, cancellation flag);
- an append-only log of events: DESIGN.md's JSON objects, each a JSON-ready `dict` with `"type"`
  and `"seq"`, numbered 0, 1, 2, ... without gaps. A finished job's log ends with its `end` event.

The contract every implementation keeps (tests/app/test_jobs_store_contract.py checks it):

- `create` adds a running job and refuses it, atomically with the count, when `max_running` jobs
  already run (`JobLimitReached`). Replicas sharing a store count together.
- `append` adds the next event: its `seq` must equal the number of events so far. Appending the
  `end` event finishes the job in the same step: the record's status and stats become the end's,
  `finished_at` is set, and the retention time (`ttl_s`) starts, after which the record and its log
  are gone (`get` gives None). Running jobs never expire.
- `events(after=n)` yields the events with `seq > n` in order (`after=-1`: from the start; any
  `n` past the last event, however large, means "after the last event": nothing yet). With
  `follow=True` it then waits, without polling, for new events and yields them as they are
  appended, and stops after the `end` event; with `follow=False` it stops at what is there now.
  An unknown or expired job yields nothing. Many followers may read one job; a slow follower never
  slows the job (the log is stored, not pushed).
- `request_cancel` marks the record (`cancel_requested`) and wakes `wait_cancel` for that job in
  the replica that runs it, wherever `request_cancel` was called. The runner then stops the run and
  appends `end` with status `cancelled`. For a finished job it changes nothing.
- `append` raising `StoreUnavailable` took its event back unless the error says `kept`. When
  the runner gives up on a job's events it calls `abandon`.
- `renew_lease` is called by the replica running a job every `CONVEYOR_JOB_LEASE_S` seconds. A
  shared store uses it to tell a live job from one whose replica died: a job whose lease is three
  periods old gets, written once by one replica, an `error` event whose `error` starts with
  `WorkerLost`, then `end` with status `failed`.
- A store may bound what it keeps: to make room it drops finished jobs, oldest finished first
  (an evicted job is gone, as an expired one), and it refuses an event that still does not fit
  with `StoreFull` (never an `error` or an `end`).
- `list_jobs` gives the records kept, newest first (by `created_at`, then `job_id`), filtered
  by pipeline and status, a page of at most `limit` at a time; `next_cursor` (opaque, from
  `page_cursor`) continues after the page's last job, None when there is no more. A page may
  hold fewer than `limit` with a cursor still given (a store may bound the work of one page).
  Expired and evicted jobs are not listed.
- `ping` raises `StoreUnavailable` when the store cannot be reached (`/readyz` answers 503).
  Any method may raise `StoreUnavailable` (job routes answer 503).
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "MAX_SEQ",
    "BadCursor",
    "JobPage",
    "JobLimitReached",
    "JobNotFound",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "JobStoreError",
    "StoreFull",
    "StoreUnavailable",
    "WireEvent",
    "list_key",
    "page_cursor",
    "read_cursor",
    "resume_after",
]

WireEvent = dict[str, Any]
"""An event as stored and sent: DESIGN.md's JSON object plus `"type"`, JSON-ready."""

MAX_SEQ = 2**53
"""Beyond any seq a job reaches: a larger resume position means the same as this one."""


def resume_after(after: int) -> int:
    """`after` within [-1, MAX_SEQ]: every resume position a store can look up."""
    return min(max(after, -1), MAX_SEQ)


class JobStatus(StrEnum):
    """Where a job is in its life; the last three are final."""

    RUNNING = "running"  # accepted; its run goes on (no `end` event yet)
    SUCCEEDED = "succeeded"  # ended with `end` status succeeded
    FAILED = "failed"  # the run failed, or the replica running it was lost
    CANCELLED = "cancelled"  # stopped by DELETE /jobs/{id}, or by the service shutting down


@dataclass(slots=True)
class JobRecord:
    """What a store knows about one job besides its events."""

    job_id: str
    pipeline: str
    mode: str  # "ordered" or "as_completed"
    items: int  # number of input items submitted
    created_at: float = 0.0  # seconds since the epoch; `create` fills it when 0
    status: JobStatus = JobStatus.RUNNING
    stats: dict[str, Any] | None = None  # the `end` event's stats, once finished
    finished_at: float | None = None  # seconds since the epoch, once finished
    cancel_requested: bool = False

    def __post_init__(self) -> None:
        if not self.created_at:
            self.created_at = time.time()

    @property
    def finished(self) -> bool:
        return self.status is not JobStatus.RUNNING

    def to_dict(self) -> dict[str, Any]:
        """The record as stored (JSON-ready, epoch floats)."""
        data = asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        return cls(**{**data, "status": JobStatus(data["status"])})

    def to_wire(self) -> dict[str, Any]:
        """The body of `GET /jobs/{id}`: timestamps as ISO 8601 UTC strings."""
        return {
            "job_id": self.job_id,
            "pipeline": self.pipeline,
            "status": self.status.value,
            "created_at": _iso(self.created_at),
            "stats": self.stats,
            "mode": self.mode,
            "items": self.items,
            "finished_at": None if self.finished_at is None else _iso(self.finished_at),
            "cancel_requested": self.cancel_requested,
        }


def list_key(record: JobRecord) -> tuple[int, str]:
    """Where a job stands in `list_jobs`' order (newest first): microseconds of its creation,
    then its id."""
    return round(record.created_at * 1_000_000), record.job_id


def page_cursor(key: tuple[int, str]) -> str:
    """The opaque cursor of a page that ends at `key`."""
    micros, job_id = key
    return base64.urlsafe_b64encode(f"{micros}:{job_id}".encode()).decode().rstrip("=")


_CURSOR = re.compile(r"^(\d{1,17}):([A-Za-z0-9_.-]{1,128})$")


def read_cursor(cursor: str) -> tuple[int, str]:
    """The position a cursor of `page_cursor` stands for; `BadCursor` for any other text."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    match = _CURSOR.match(text)
    if match is None:
        raise BadCursor(f"not a cursor of this service: {cursor[:64]!r}")
    return int(match.group(1)), match.group(2)


@dataclass(slots=True)
class JobPage:
    """A page of `list_jobs`: the records, newest first, and the cursor of the next page."""

    jobs: list[JobRecord]
    next_cursor: str | None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


class JobStoreError(Exception):
    """Base of the errors a job store raises."""


class JobNotFound(JobStoreError):
    """The job is unknown or expired (raised by `append`; lookups return None instead)."""


class JobLimitReached(JobStoreError):
    """`create` refused a job: `limit` jobs already run."""

    def __init__(self, running: int, limit: int) -> None:
        super().__init__(f"{running} jobs are running; the limit is {limit}")
        self.running = running
        self.limit = limit


class StoreFull(JobStoreError):
    """A bounded store cannot take the event: what it must keep (running jobs) fills it.

    Raised by `append` for an event other than `error` and `end` (those always fit, so that the
    runner can fail the job: `error` `StoreFull: ...`, then `end` failed).
    """


class BadCursor(JobStoreError, ValueError):
    """`list_jobs` was given a cursor it did not make (the route answers 422)."""


class StoreUnavailable(JobStoreError):
    """The store cannot be reached (the service answers 503).

    Raised by `append`, `kept` tells what became of the event: False, it was taken back (never
    stored: the next append has its seq); True, it stays on its way because it may already be
    stored (a write whose reply was lost), so it keeps its seq and the next append follows it.
    """

    def __init__(self, message: str = "", *, kept: bool = False) -> None:
        super().__init__(message)
        self.kept = kept


class JobStore(ABC):
    """Records and event logs of jobs; see the module docstring for the contract."""

    @abstractmethod
    async def create(self, record: JobRecord, *, max_running: int) -> None:
        """Add a running job; raise `JobLimitReached` if `max_running` jobs already run."""

    @abstractmethod
    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record (a copy), or None when unknown or expired."""

    @abstractmethod
    async def append(self, job_id: str, event: WireEvent) -> None:
        """Append the next event (`seq` = events so far, else ValueError); `end` finishes the job.

        Raises `JobNotFound` for an unknown job and ValueError for a finished one.
        """

    @abstractmethod
    def events(
        self, job_id: str, *, after: int = -1, follow: bool = True
    ) -> AsyncIterator[WireEvent]:
        """The events with `seq > after` in order; with `follow`, live until `end`."""

    @abstractmethod
    async def request_cancel(self, job_id: str) -> JobRecord | None:
        """Ask the job's runner to cancel it; the record after that, or None when unknown."""

    @abstractmethod
    async def wait_cancel(self, job_id: str) -> None:
        """Return once cancellation of the job was requested (at once if it already was)."""

    @abstractmethod
    async def running_count(self) -> int:
        """How many jobs run now, across every replica sharing the store."""

    @abstractmethod
    async def list_jobs(
        self,
        *,
        pipeline: str | None = None,
        status: JobStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """The jobs kept, newest first, a page at a time (`BadCursor` for a foreign cursor)."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise `StoreUnavailable` when the store cannot be reached."""

    def abandon(self, job_id: str) -> None:  # noqa: B027 - optional hook
        """The runner gave up writing the job's events: drop what is still on its way (a shared
        store's reaper ends the job); default: nothing."""

    async def renew_lease(self, job_id: str) -> None:  # noqa: B027 - optional hook
        """Called every `CONVEYOR_JOB_LEASE_S` by the replica running the job; default: nothing."""

    async def results(self, job_id: str) -> list[Any]:
        """The values of the job's `result` events so far, in event order."""
        return [
            e["value"] async for e in self.events(job_id, follow=False) if e["type"] == "result"
        ]

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Start background work (a shared store's reaper); the app's lifespan calls it."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (and stop what `start` started); default: nothing."""
