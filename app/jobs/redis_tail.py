"""The live end of a job's event stream, shared by the followers of that job in one process.

However many clients follow a job on a replica, the replica waits on the job's stream with one
blocking read (`read`: XREAD BLOCK), started where the first of them caught up. The tail keeps
the latest events in memory (bounded in number, KEEP, and in JSON bytes, KEEP_BYTES) and wakes
the followers at each read; a follower takes from memory what it has not yet sent. A follower
slower than the others falls behind what memory holds and reads from Redis again (bulk), so it
never slows the tail or the other followers. The tail ends at the job's `end`, when a read
without events finds the job no longer running (`status`), when Redis stays unreachable
(`read` raises `StoreUnavailable`), or when its last follower leaves.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from .store import StoreUnavailable, WireEvent
from .tasks import check_cancelled

__all__ = ["Tail"]

log = logging.getLogger("conveyor.service.jobs.redis")

KEEP = 4096  # events kept in memory; a follower further behind reads from Redis
KEEP_BYTES = 8 << 20  # and at most about this much of their JSON

Read = Callable[[int], Awaitable[tuple[list[WireEvent], int]]]
"""The events after a seq, blocking a while, and the size of their JSON."""


class Tail:
    """One job's live events for the local followers; see the module docstring."""

    def __init__(self, read: Read, status: Callable[[], Awaitable[str | None]], after: int):
        self._read = read
        self._status = status
        self.base = after + 1  # the seq of `events[0]`
        self.events: list[WireEvent] = []
        self._reads: deque[tuple[int, int]] = deque()  # per read held: events, JSON bytes
        self._bytes = 0
        self.finished = False
        self.error: Exception | None = None  # raised to the followers
        self.users = 0
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._run(), name=f"tail after {after}")

    @property
    def head(self) -> int:
        """The seq of the latest event read."""
        return self.base + len(self.events) - 1

    def since(self, after: int) -> list[WireEvent] | None:
        """The events after seq `after` (maybe none yet), or None when memory no longer has them."""
        if after + 1 < self.base:
            return None
        return self.events[after + 1 - self.base :]

    async def wait(self, after: int) -> None:
        """Return once an event after seq `after` has been read, or the tail has finished."""
        while self.head <= after and not self.finished:
            await self._changed.wait()

    def close(self) -> None:
        self.task.cancel()

    async def _run(self) -> None:
        try:
            while not self.finished:
                events, size = await self._read(self.head)
                check_cancelled()  # a cancel landing in a command may have been swallowed
                if events:
                    self.events += events
                    self._reads.append((len(events), size))
                    self._bytes += size
                    self.finished = events[-1]["type"] == "end"
                    self._trim()
                else:  # a block went by: has the job ended (its end read by the followers
                    # from Redis) or expired?
                    self.finished = await self._status() != "running"
                    check_cancelled()
                self._notify()
        except Exception as exc:  # StoreUnavailable: Redis stayed away; else a bug: say it
            if not isinstance(exc, StoreUnavailable):
                log.exception("the tail of a job failed")
            self.error = exc
            self.finished = True
            self._notify()

    def _trim(self) -> None:
        """Past twice the bounds (events or bytes), drop the oldest reads down to the bounds."""
        if len(self.events) <= 2 * KEEP and self._bytes <= 2 * KEEP_BYTES:
            return
        drop = 0
        while len(self._reads) > 1 and (len(self.events) - drop > KEEP or self._bytes > KEEP_BYTES):
            count, size = self._reads.popleft()
            drop += count
            self._bytes -= size
        del self.events[:drop]
        self.base += drop

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
