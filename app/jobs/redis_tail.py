"""The live end of a job's event stream, shared by the followers of that job in one process.

However many clients follow a job on a replica, the replica waits on the job's stream with one
blocking read (`read`: XREAD BLOCK), started where the first of them caught up. The tail keeps
the latest events in memory and wakes the followers at each read; a follower takes from memory
what it has not yet sent. A follower slower than the others falls behind what memory holds and
reads from Redis again (bulk), so it never slows the tail or the other followers. The tail ends
at the job's `end`, when a read without events finds the job no longer running (`status`), when
Redis stays unreachable (`read` raises `StoreUnavailable`), or when its last follower leaves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from app.jobs.store import StoreUnavailable, WireEvent
from app.jobs.tasks import check_cancelled

__all__ = ["Tail"]

log = logging.getLogger("conveyor.service.jobs.redis")

KEEP = 4096  # events kept in memory; a follower further behind reads from Redis

Read = Callable[[int], Awaitable[list[WireEvent]]]  # events after a seq, blocking a while


class Tail:
    """One job's live events for the local followers; see the module docstring."""

    def __init__(self, read: Read, status: Callable[[], Awaitable[str | None]], after: int):
        self._read = read
        self._status = status
        self.base = after + 1  # the seq of `events[0]`
        self.events: list[WireEvent] = []
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
                events = await self._read(self.head)
                check_cancelled()  # a cancel landing in a command may have been swallowed
                if events:
                    self.events += events
                    self.finished = events[-1]["type"] == "end"
                    if len(self.events) > 2 * KEEP:
                        drop = len(self.events) - KEEP
                        del self.events[:drop]
                        self.base += drop
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

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
