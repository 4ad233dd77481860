"""Group commit of one job's events to Redis: a run never waits a round trip per event.

`EventWriter.append` queues an event and returns at once, except for the first event it sees
(Redis checks that job and seq), the `end` (the job is finished when `append` returns), and when
the queue is full (backpressure: the run waits for Redis). One flusher task writes the queue in
order, all that has gathered during the previous write in one script call.

Outages: the flusher retries a batch with backoff, the same batch with the same token, so a batch
whose reply was lost is not written twice. An append that waits gives up after `retry_s` and
raises `StoreUnavailable`; its own event is then taken back (never written), while the events
queued before it stay queued, in order; but an event that was part of a batch sent to Redis is
never taken back (its reply may be what was lost): it stays queued, the flusher goes on with it
in the background, and the error says `kept`.
An append cancelled while it waits keeps its event: it will be written. A final error (the job
ended or vanished) drops the queue; the store then forgets the writer, and the next append
learns the error from Redis. `abandon` drops the queue for good (the runner gave up on the job).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .store import StoreUnavailable

__all__ = ["Behind", "EventWriter", "Pending"]

log = logging.getLogger("conveyor.service.jobs.redis")

MAX_BATCH = 512  # events per script call
MAX_BATCH_BYTES = 1 << 20
MAX_PENDING = 4096  # queued events before `append` waits
MAX_PENDING_BYTES = 8 << 20
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 1.0


@dataclass(slots=True)
class Pending:
    """One event on its way: its seq, its JSON, what it adds to the job's counters."""

    seq: int
    data: bytes
    results: int = 0
    skipped: int = 0
    end: tuple[str, bytes, float] | None = None  # an `end`: status, stats JSON, finished_at


class Behind(Exception):
    """Redis already has the batch's first events (a write whose reply was lost)."""

    def __init__(self, expected: int) -> None:
        super().__init__(f"Redis expects seq {expected}")
        self.expected = expected


Write = Callable[[list[Pending], str], Awaitable[None]]


class EventWriter:
    """The queue and flusher of one job's events; see the module docstring."""

    def __init__(
        self,
        write: Write,
        *,
        retry_s: float,
        unreachable: tuple[type[BaseException], ...],
        token: Callable[[], str],
        on_done: Callable[[EventWriter], None],
        what: str,
    ) -> None:
        self._write = write
        self._retry_s = retry_s
        self._unreachable = unreachable
        self._token = token
        self._on_done = on_done
        self._what = what
        self.next_seq: int | None = None  # None until Redis has accepted a first event
        self.written_seq = -1
        self.sent_seq = -1  # the last seq sent to Redis (maybe written although unanswered)
        self.error: BaseException | None = None
        self._pending: deque[Pending] = deque()
        self._pending_bytes = 0
        self._changed = asyncio.Event()
        self._abort = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, item: Pending) -> None:
        if self.error is not None:
            raise self.error
        if self.next_seq is not None and item.seq != self.next_seq:
            raise ValueError(f"event seq {item.seq} != next seq {self.next_seq}")
        first = self.next_seq is None
        self._pending.append(item)
        self._pending_bytes += len(item.data)
        self.next_seq = item.seq + 1
        self._start()
        full = len(self._pending) > MAX_PENDING or self._pending_bytes > MAX_PENDING_BYTES
        if first or full or item.end is not None:
            await self._until_written(item, first)

    async def drain(self, within_s: float) -> None:
        """Wait (at most `within_s` seconds) until what is queued now is written; never raises."""
        target = -1 if self.next_seq is None else self.next_seq - 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                while self.written_seq < target and self.error is None and not self._stopped():
                    await self._changed.wait()

    async def close(self, grace_s: float) -> None:
        await self.drain(grace_s)
        await self._stop()

    async def _until_written(self, item: Pending, first: bool) -> None:
        deadline = time.monotonic() + self._retry_s
        while self.written_seq < item.seq:
            if self.error is not None:
                raise self.error
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stopped():
                await self._stop()
                if self.written_seq >= item.seq:
                    return
                if self.error is not None:
                    raise self.error
                message = f"{self._what}: Redis did not answer for {self._retry_s}s"
                if item.seq <= self.sent_seq:  # Redis may have it: it keeps its seq, and the
                    self._start()  # queue goes on in the background until written or final
                    raise StoreUnavailable(message, kept=True)
                self._take_back(item, first)
                raise StoreUnavailable(message)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    def _take_back(self, item: Pending, first: bool) -> None:
        assert self._pending and self._pending[-1] is item, "appends of a job are sequential"
        self._pending.pop()
        self._pending_bytes -= len(item.data)
        self.next_seq = None if first else item.seq

    def abandon(self) -> None:
        """Drop the queue and stop the flusher after its current write; appends then fail."""
        self.error = StoreUnavailable(f"{self._what}: abandoned")
        self._pending.clear()
        self._pending_bytes = 0
        self._abort.set()
        self._notify()

    def _start(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=f"flush {self._what}")

    def _stopped(self) -> bool:
        return self._flusher is None or self._flusher.done()

    async def _stop(self) -> None:
        """Stop the flusher after its current write (the queue stays)."""
        flusher = self._flusher
        if flusher is not None:
            self._abort.set()
            try:
                await asyncio.shield(flusher)
            except asyncio.CancelledError:
                if not flusher.cancelled():
                    raise  # the caller's own cancellation: not ours to swallow
            finally:
                self._abort.clear()

    async def _flush(self) -> None:
        try:
            while self._pending and not self._abort.is_set():
                if not await self._write_batch(self._batch()):
                    return
        except Exception as exc:  # a final error: the job ended, vanished, or a bug
            self.error = exc
            self._pending.clear()
            self._pending_bytes = 0
            self._on_done(self)
        finally:
            self._notify()

    async def _write_batch(self, batch: list[Pending]) -> bool:
        """Write `batch` (retrying while Redis is unreachable); False when aborted."""
        token, delay, failing = self._token(), BACKOFF_FIRST_S, False
        while True:
            try:
                self.sent_seq = max(self.sent_seq, batch[-1].seq)
                await self._write(batch, token)
                break
            except Behind as behind:  # a lost reply: those events are there already
                batch = [p for p in batch if p.seq >= behind.expected]
                self._written(behind.expected - 1)
                if not batch:
                    return True
                token = self._token()
            except self._unreachable as exc:
                if not failing:
                    log.warning("%s: %s; retrying", self._what, exc)
                    failing = True
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._abort.wait()
                if self._abort.is_set():
                    return False
                delay = min(delay * 2, BACKOFF_MAX_S)
        if failing:
            log.info("%s: written again", self._what)
        self._written(batch[-1].seq)
        if batch[-1].end is not None:
            self._on_done(self)
        return True

    def _batch(self) -> list[Pending]:
        batch: list[Pending] = []
        size = 0
        for item in self._pending:
            if batch and (len(batch) >= MAX_BATCH or size + len(item.data) > MAX_BATCH_BYTES):
                break
            batch.append(item)
            size += len(item.data)
            if item.end is not None:
                break
        return batch

    def _written(self, seq: int) -> None:
        while self._pending and self._pending[0].seq <= seq:
            self._pending_bytes -= len(self._pending.popleft().data)
        self.written_seq = max(self.written_seq, seq)
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
