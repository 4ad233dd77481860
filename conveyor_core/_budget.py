"""The budget of a run: how many input items are in flight, and the wait for room.

An input item is in flight from the moment it is admitted until nothing derived from it is left:
every value it led to was delivered to the consumer, filtered out, dropped, or reported as
skipped and that report taken by the consumer. The run admits at most `limit` items in flight;
the source waits for room (`wait_for_room`), so a slow consumer slows the source and memory does
not grow with the input.

Every value stands on a *holding* of input positions. A value that is the only one standing for
its one input position (an admitted item, and what it becomes through single tasks) holds it as
the position itself, an `int`: nothing to allocate per item. Values that share positions hold a
`Hold`: the sorted positions (`sources`) and how many values share it (`refs`). A fan-out turns
its value's holding into a shared `Hold` (`share`); a batch takes over its members' holdings
(`merge`); a holding gives its positions back with its last value (`release`).

The positions in flight are a set (`live`); a position covered by more than one holding (an
item error's report while its value is still about, a fan-out split across batches) has the
number of extra holdings in `shared`. In the common run `shared` stays empty, and releasing a
batch's positions is one set operation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Union

from ._signal import Signal

__all__ = ["Budget", "Hold", "Holding", "sources_of"]


class Hold:
    """The input positions `sources` of `refs` values that stand for them."""

    __slots__ = ("sources", "refs")

    def __init__(self, sources: list[int], refs: int = 1) -> None:
        self.sources = sources
        self.refs = refs

    def __repr__(self) -> str:
        return f"Hold({self.sources}, refs={self.refs})"


Holding = Union[int, Hold]  # noqa: UP007 - a runtime alias
"""What a value stands on: its one input position, or a `Hold`."""


def sources_of(holding: Holding) -> list[int]:
    """The input positions of a holding, sorted."""
    return [holding] if type(holding) is int else holding.sources  # type: ignore[union-attr]


class Budget:
    """Input positions in flight, at most `limit` admitted by the source."""

    __slots__ = ("limit", "live", "shared", "room")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.live: set[int] = set()  # positions in flight
        self.shared: dict[int, int] = {}  # position -> holdings covering it beyond the first
        self.room = Signal()  # fired when the count drops below the limit

    @property
    def in_flight(self) -> int:
        return len(self.live)

    @property
    def full(self) -> bool:
        return len(self.live) >= self.limit

    def admit(self, index: int) -> int:
        """A new input item at position `index`: its value's holding."""
        self.live.add(index)
        return index

    def share(self, holding: Holding, more: int) -> Hold:
        """`holding`, shared by `more` values besides its own (a fan-out)."""
        if type(holding) is int:
            return Hold([holding], 1 + more)
        holding.refs += more  # type: ignore[union-attr]
        return holding  # type: ignore[return-value]

    def hold(self, sources: list[int]) -> Hold:
        """A new holding of `sources` (positions that may or may not be in flight still)."""
        live = self.live
        shared = self.shared
        for source in sources:
            if source in live:
                shared[source] = shared.get(source, 0) + 1
            else:
                live.add(source)
        return Hold(sources)

    def merge(self, holdings: list[Holding]) -> Holding:
        """One holding for a batch of values, in place of theirs (each gives its value up)."""
        if len(holdings) == 1:
            return holdings[0]
        try:
            # when each value was the only one of its position (an int holding: these sort, a
            # Hold does not), the positions pass to the batch as they are, no count to change
            return Hold(sorted(holdings))  # type: ignore[type-var, arg-type]
        except TypeError:
            pass
        every = [source for holding in holdings for source in sources_of(holding)]
        sources = sorted(set(every))
        if len(sources) == len(every) and all(
            type(holding) is int or holding.refs == 1  # type: ignore[union-attr]
            for holding in holdings
        ):
            for holding in holdings:
                if type(holding) is not int:
                    holding.refs = 0  # type: ignore[union-attr]
            return Hold(sources)
        merged = self.hold(sources)
        for holding in holdings:
            self.release(holding)
        return merged

    def release(self, holding: Holding) -> None:
        """One value of `holding` is gone; its positions are given back with its last value."""
        if type(holding) is int:
            shared = self.shared
            if shared and holding in shared:
                self._unshare(holding)  # type: ignore[arg-type]
                return
            self.live.remove(holding)  # type: ignore[arg-type]
        else:
            refs = holding.refs - 1  # type: ignore[union-attr]
            if refs > 0:
                holding.refs = refs  # type: ignore[union-attr]
                return
            holding.refs = 0  # type: ignore[union-attr]
            self._give_back(holding.sources)  # type: ignore[union-attr]
        if self.room.waiters and len(self.live) < self.limit:
            self.room.fire()

    def _give_back(self, sources: Iterable[int]) -> None:
        if not self.shared:
            self.live.difference_update(sources)
            return
        for source in sources:
            if source in self.shared:
                self._unshare(source)
            else:
                self.live.remove(source)

    def _unshare(self, source: int) -> None:
        extra = self.shared[source] - 1
        if extra:
            self.shared[source] = extra
        else:
            del self.shared[source]

    async def wait_for_room(self, blocked: Callable[[], None]) -> None:
        """Return once fewer than `limit` items are in flight; `blocked()` is called each time
        the wait begins (the run then checks whether anything can still move)."""
        while len(self.live) >= self.limit:
            blocked()
            if len(self.live) < self.limit:
                return
            await self.room.wait()
