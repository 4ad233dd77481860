"""Stream stages: a `StreamTask` takes the whole stream of its items and yields results.

The values that reach a stream stage wait in its `Inbox` until the task pulls them; a value's
input positions are given back to the budget when it is pulled (the task holds it now, and a
remote pipeline is bounded by its own flow control). Each result names the positions of the
items it came from among those the task received (`_Positions` keeps them, 8 bytes an item in
the common case), from which the engine derives its `sources` and takes a new hold.
"""

from __future__ import annotations

import contextlib
from array import array
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from ._budget import Budget, sources_of
from ._errors import InvalidRunError
from ._signal import Signal
from ._stage import StreamItemError, StreamTask

__all__ = ["Inbox", "run_stream"]


class Inbox:
    """The values waiting for a stream stage; None marks the end of its input."""

    __slots__ = ("items", "ready", "open", "idle")

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self.ready = Signal()
        self.open = True  # the stage still takes values
        self.idle = False  # the stage waits for its next value

    def put(self, value: Any, hold: Any, tag: Any, budget: Budget) -> None:
        if not self.open:
            budget.release(hold)
            return
        self.items.append((value, hold))
        if self.ready.waiters:
            self.ready.fire()

    def close(self) -> None:
        self.items.append(None)
        if self.ready.waiters:
            self.ready.fire()

    async def pull(
        self, seen: _Positions, budget: Budget, on_idle: Callable[[], None]
    ) -> AsyncIterator[Any]:
        while True:
            while not self.items:
                self.idle = True
                on_idle()
                try:
                    if not self.items:
                        await self.ready.wait()
                finally:
                    self.idle = False
            member = self.items.popleft()
            if member is None:
                return
            value, hold = member
            seen.append(sources_of(hold))
            budget.release(hold)
            yield value

    def discard(self, budget: Budget) -> None:
        """The stage ended: what it did not pull is given back."""
        self.open = False
        for member in self.items:
            if member is not None:
                budget.release(member[1])
        self.items.clear()


async def run_stream(
    head: StreamTask,
    inbox: Inbox,
    mode: str,
    budget: Budget,
    emit: Callable[[Any, list[int]], None],
    report: Callable[[str, list[int], str, str], None],
    fail: Callable[[str | None, BaseException], None],
    on_idle: Callable[[], None],
) -> None:
    """Run `head` over what arrives in `inbox`; `emit(value, sources)` each result."""
    seen = _Positions()
    outputs = head.process_stream(inbox.pull(seen, budget, on_idle), mode)
    try:
        async with contextlib.aclosing(outputs):  # type: ignore[type-var]
            async for output in outputs:
                if isinstance(output, StreamItemError):
                    sources = _map_positions(head, output.positions, seen)
                    report(output.stage or head.name, sources, output.error, output.action)
                    continue
                value, positions = output
                sources = _map_positions(head, positions, seen)
                if value is not None:
                    emit(value, sources)
    except Exception as exc:
        fail(head.name, exc)
        raise
    finally:
        inbox.discard(budget)


def _map_positions(head: StreamTask, positions: Any, seen: _Positions) -> list[int]:
    """The run's sources of the items at `positions` of what a stream task received."""
    try:
        return sorted({source for position in positions for source in seen[position]})
    except (IndexError, TypeError):
        raise InvalidRunError(
            f"stream task {head.name} gave positions {positions!r}: each must index "
            f"the {len(seen)} item(s) it received so far"
        ) from None


class _Positions:
    """The sources of every item a stream task received, by position: 8 bytes an item when an
    item has one source (the common case), a list otherwise."""

    def __init__(self) -> None:
        self._single = array("q")
        self._several: dict[int, list[int]] = {}

    def append(self, sources: list[int]) -> None:
        if len(sources) == 1:
            self._single.append(sources[0])
        else:
            self._several[len(self._single)] = sources
            self._single.append(-1)

    def __getitem__(self, position: int) -> list[int]:
        if position < 0:
            raise IndexError(position)
        source = self._single[position]
        return [source] if source >= 0 else self._several[position]

    def __len__(self) -> int:
        return len(self._single)
