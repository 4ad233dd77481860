"""The event channel of a run: its events queued in order, numbered as the consumer takes them,
and ended once.

The run puts events in (`result`, `report` for an item error, `put` for any other event, then
`close` with the `end`) and the consumer takes them out through `events()` or `values()`. An
event's `seq` is its position in the channel, given when it is taken (the channel is first in,
first out, so that is the order they were put in). A result waits in the queue as a
`(value, hold)` pair and becomes a `ResultEvent` only for a consumer of `events()`; its input
positions stay in flight (see `_budget`) until the consumer takes it, and so do an item error's.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from ._budget import Budget, Holding, sources_of
from ._events import EndEvent, Event, ItemErrorEvent, ResultEvent, RunErrorEvent
from ._signal import Signal

__all__ = ["Channel"]


class _Report:
    """An item error in the queue, with the hold it keeps until it is taken."""

    __slots__ = ("event", "hold")

    def __init__(self, event: ItemErrorEvent, hold: Holding) -> None:
        self.event = event
        self.hold = hold


class Channel:
    """A run's events between the run and its consumer."""

    __slots__ = (
        "queue",
        "ready",
        "drained",
        "closed",
        "finished",
        "dropping",
        "on_wait",
        "_budget",
        "_taken",
        "_driver",
    )

    def __init__(self, budget: Budget) -> None:
        self.queue: deque[Any] = deque()
        self.ready = Signal()  # fired when an event is put (the consumer waits on it)
        self.drained = Signal()  # fired when the consumer takes events (fan-outs wait on it)
        self.closed = False  # the end is in
        self.finished = False  # the consumer took the end
        self.dropping = False  # the run fails from outside: nothing more but its error and end
        self.on_wait: Callable[[], None] | None = None  # the consumer took every event
        self._budget = budget
        self._taken = 0  # the seq of the next event taken
        self._driver: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        """Events waiting for the consumer."""
        return len(self.queue)

    # -- the run's side -------------------------------------------------------------------------

    def result(self, value: Any, hold: Holding) -> None:
        if self.dropping:
            self._budget.release(hold)
            return
        self.queue.append((value, hold))
        if self.ready.waiters:
            self.ready.fire()

    def report(self, event: ItemErrorEvent, hold: Holding) -> None:
        """An item error; `hold` (one ref of it is the report's) is released when it is taken."""
        if self.dropping:
            self._budget.release(hold)
            return
        self.queue.append(_Report(event, hold))
        if self.ready.waiters:
            self.ready.fire()

    def put(self, event: Event) -> None:
        if self.dropping:
            return
        self.queue.append(event)
        if self.ready.waiters:
            self.ready.fire()

    def close(self, end: EndEvent, error: RunErrorEvent | None = None) -> None:
        """The last event (after the run's error, if it failed): no other is put after it."""
        self.dropping = False
        if error is not None:
            self.put(error)
        self.closed = True
        self.put(end)

    def drop(self) -> int:
        """Drop every event not taken yet, and those put from now on until `close` (the run
        fails from outside): their holds are given back, and they get no seq. Returns how many
        results were dropped."""
        self.dropping = True
        dropped = 0
        while self.queue:
            entry = self.queue.popleft()
            if type(entry) is tuple:
                dropped += 1
                self._budget.release(entry[1])
            elif type(entry) is _Report:
                self._budget.release(entry.hold)
        self.closed = False
        return dropped

    def watch(self, driver: asyncio.Task[None]) -> None:
        """The task that runs the run: the consumer stops waiting when it ends."""
        self._driver = driver
        driver.add_done_callback(lambda _: self.ready.fire())

    # -- the consumer's side ------------------------------------------------------------------

    async def events(
        self, start: Callable[[], None], stop: Callable[[], Awaitable[None]]
    ) -> AsyncGenerator[Event, None]:
        """Every event, numbered, the `end` last. `start()` begins the run; `stop()`, awaited
        when the consumer leaves, ends it."""
        queue = self.queue
        release = self._budget.release
        drained = self.drained
        start()
        try:
            while True:
                while queue:
                    entry = queue.popleft()
                    seq = self._taken
                    self._taken = seq + 1
                    if type(entry) is tuple:
                        value, hold = entry
                        release(hold)
                        event: Event = ResultEvent(seq, value, sources_of(hold))
                    elif type(entry) is _Report:
                        release(entry.hold)
                        event = entry.event
                        event.seq = seq
                    else:
                        event = entry
                        event.seq = seq
                    if drained.waiters:
                        drained.fire()
                    if type(event) is EndEvent:
                        self.finished = True
                        yield event
                        return
                    yield event
                if not await self._wait():
                    return
        finally:
            await stop()

    async def values(
        self, start: Callable[[], None], stop: Callable[[], Awaitable[None]]
    ) -> AsyncGenerator[Any, None]:
        """The results' values; a failed run raises its error (the task's own exception)."""
        queue = self.queue
        release = self._budget.release
        drained = self.drained
        start()
        try:
            while True:
                while queue:
                    entry = queue.popleft()
                    self._taken += 1
                    if type(entry) is tuple:
                        release(entry[1])
                        if drained.waiters:
                            drained.fire()
                        yield entry[0]
                        continue
                    if type(entry) is _Report:
                        release(entry.hold)
                    elif type(entry) is RunErrorEvent and entry.exception is not None:
                        raise entry.exception
                    elif type(entry) is EndEvent:
                        self.finished = True
                        return
                    if drained.waiters:
                        drained.fire()
                if not await self._wait():
                    return
        finally:
            await stop()

    async def _wait(self) -> bool:
        """Wait for the next event; False when none will come (the run was closed)."""
        driver = self._driver
        if driver is not None and driver.done():
            if driver.cancelled():  # closed from elsewhere (aclose): nothing more comes
                return False
            driver.result()
            raise RuntimeError("conveyor run ended without an end event")
        if self.on_wait is not None:
            self.on_wait()
        await self.ready.wait()
        return True
