"""The job runner: runs jobs in background tasks owned by the app, writing events to the store.

A job's task races three things: the run (each event appended to the store as it comes), the
store's cancellation signal (`DELETE /jobs/{id}`, from any replica), and the lease renewal. When
cancellation wins, the run is cancelled through the engine (`Run.cancel`): it ends with its own
`end`, status `cancelled`, stored like any event. Only when that end cannot be stored (the
store broke, or the run did not stop within `STOP_S`) does the runner append one itself
(`Run.closing_events`), its seq following the last event stored. When the service begins to
shut down (`stopping` is set: `conveyor serve` sets it at SIGTERM, before the server drains its
connections; `aclose` sets it too), every job still running ends the same way, so that its
followers get their `end` and leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from ..encoding import jsonable
from ..metrics import Metrics
from ..pipelines import PipelineEntry
from ..runs import Run, RunKind
from ..telemetry import Tracing
from .store import JobRecord, JobStore, StoreUnavailable
from .tasks import check_cancelled, stop_tasks

__all__ = ["JobRunner"]

log = logging.getLogger("conveyor.service.jobs")

STOP_S = 5.0  # how long a job waits for its helper tasks to stop before it writes its end


class JobRunner:
    """Starts jobs and owns their tasks until they end or the app stops."""

    def __init__(
        self,
        store: JobStore,
        metrics: Metrics,
        *,
        max_running: int,
        lease_s: float,
        stopping: asyncio.Event | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.store = store
        self.tracing = tracing
        self.metrics = metrics
        self.max_running = max_running
        self.lease_s = lease_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = stopping or asyncio.Event()

    @property
    def running(self) -> int:
        """Jobs this process runs now."""
        return len(self._tasks)

    async def submit(
        self, entry: PipelineEntry, items: list[Any], mode: str, *, trace: bool = False
    ) -> JobRecord:
        """Create the job in the store (`JobLimitReached` over the limit) and start it (its
        task runs in a copy of the request's context: its run's span follows the POST's)."""
        record = JobRecord(
            job_id=uuid.uuid4().hex, pipeline=entry.name, mode=mode, items=len(items)
        )
        await self.store.create(record, max_running=self.max_running)
        run = Run(
            entry,
            items,
            mode=mode,
            kind=RunKind.JOB,
            metrics=self.metrics,
            trace=trace,
            tracing=self.tracing,
        )
        task = asyncio.create_task(self._job(record.job_id, run), name=f"job-{record.job_id}")
        self._tasks[record.job_id] = task
        self.metrics.jobs_running.inc()
        task.add_done_callback(lambda _: self._done(record.job_id))
        log.info("job started", extra={"job_id": record.job_id, "pipeline": entry.name})
        return record

    async def idle(self) -> None:
        """Return once no job runs here (each has written its end)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks.values()))

    async def aclose(self, grace_s: float = 15.0) -> None:
        """Cancel every running job and wait (up to `grace_s`) for their `end` to be written."""
        self._stopping.set()
        tasks = list(self._tasks.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace_s)
            await stop_tasks(late, 2 * STOP_S, patience_s=STOP_S + 1.0)

    def _done(self, job_id: str) -> None:
        self._tasks.pop(job_id, None)
        self.metrics.jobs_running.dec()

    async def _job(self, job_id: str, run: Run) -> None:
        written = _Written()
        consume = asyncio.create_task(self._consume(job_id, run, written))
        cancel = asyncio.create_task(self.store.wait_cancel(job_id))
        lease = asyncio.create_task(self._renew(job_id))
        stop = asyncio.create_task(self._stopping.wait())
        helpers = (cancel, lease, stop)
        try:
            done, _ = await asyncio.wait(
                {consume, cancel, stop}, return_when=asyncio.FIRST_COMPLETED
            )
            if consume not in done:  # cancelled: the run ends with its own end, stored as usual
                run.cancel()
                await asyncio.wait({consume}, timeout=STOP_S)
        finally:
            await stop_tasks((consume, *helpers), STOP_S)
            failure = None
            if consume.done() and not consume.cancelled():
                failure = consume.exception()
            if not written.ended:  # (an `end` kept by a failed append is on its way)
                await self._append_end(job_id, run, written, failure)

    async def _consume(self, job_id: str, run: Run, written: _Written) -> None:
        async with aclosing(run.events()) as events:
            async for event in events:
                try:
                    await self.store.append(job_id, jsonable(event))
                except asyncio.CancelledError:  # a store finishes an append it has begun
                    written.next_seq = event["seq"] + 1
                    written.ended = event["type"] == "end"
                    raise
                except StoreUnavailable as exc:
                    if exc.kept:  # not taken back: it may be stored, the next seq follows it
                        written.next_seq = event["seq"] + 1
                        written.ended = event["type"] == "end"
                    raise
                written.next_seq = event["seq"] + 1
                written.ended = event["type"] == "end"

    async def _append_end(
        self, job_id: str, run: Run, written: _Written, failure: BaseException | None
    ) -> None:
        """The end of a job whose run's own end was not stored: the store broke (`failure`),
        or the run did not stop within `STOP_S` of its cancellation."""
        if failure is not None:
            log.error("job %s failed outside its pipeline", job_id, exc_info=failure)
        events = run.closing_events(written.next_seq, failure)
        end = events[-1]
        try:
            for event in events:
                await self.store.append(job_id, jsonable(event))
        except Exception:
            log.exception("job %s: cannot write its end", job_id)
            self.store.abandon(job_id)  # a shared store's reaper will end it
        else:
            log.info("job ended", extra={"job_id": job_id, "status": end["status"]})

    async def _renew(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.lease_s)
            with contextlib.suppress(Exception):
                await self.store.renew_lease(job_id)
            check_cancelled()  # a cancel that landed in the call may have been swallowed


@dataclass(slots=True)
class _Written:
    """How far a job's events got into the store."""

    next_seq: int = 0
    ended: bool = False
