"""Batching, in one place: how a batch task's items are grouped.

Items arrive in the order the previous segment emits them (input order in ordered mode, arrival
order in as-completed mode). A batch is released when it holds `max_size` items, when
`max_wait` seconds passed since its first item (once it holds `min_size`), and at the end of the
input if it holds at least `min_size` items; a smaller remainder is dropped and reported. When
the run's bound on items in flight is reached and nothing else can move, the run releases
partial batches early (`release_early`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from operator import itemgetter
from typing import Any

__all__ = ["Batcher", "Member", "holdings_of", "values_of"]

Member = tuple[Any, Any, Any]  # (value, hold, tag): see `_budget.Hold` and `_trace.Tag`


def values_of(members: list[Member]) -> list[Any]:
    """The batch a batch task receives: its members' values."""
    return list(map(_value, members))


def holdings_of(members: list[Member]) -> list[Any]:
    """The holdings of a batch's members (see `_budget`)."""
    return list(map(_holding, members))


_value = itemgetter(0)
_holding = itemgetter(1)


class Batcher:
    """Groups values into batches for one batch task."""

    def __init__(
        self,
        max_size: int,
        min_size: int,
        max_wait: float | None,
        release: Callable[[list[Member]], None],
        drop: Callable[[list[Member]], None],
        close_downstream: Callable[[], None],
    ) -> None:
        self._max_size = max_size
        self._min_size = min_size
        self._max_wait = max_wait
        self._release = release
        self._drop = drop
        self._close_downstream = close_downstream
        self._members: list[Member] = []
        self._timer: asyncio.TimerHandle | None = None
        self._overdue = False

    def add(self, value: Any, hold: Any, tag: Any) -> None:
        members = self._members
        members.append((value, hold, tag))
        size = len(members)
        if size >= self._max_size:
            self._flush()
        elif size == 1:
            if self._max_wait is not None:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(self._max_wait, self._on_timeout)
        elif self._overdue and size >= self._min_size:
            self._flush()

    def close(self) -> None:
        """The input ended: release or drop the remainder, then close downstream."""
        if self._members:
            if len(self._members) >= self._min_size:
                self._flush()
            else:
                members, self._members = self._members, []
                self._cancel_timer()
                self._drop(members)
        self._close_downstream()

    @property
    def waiting(self) -> bool:
        """A partial batch waits for its max_wait to pass."""
        return self._timer is not None

    def release_early(self) -> bool:
        """Release the partial batch now, whatever its size; False if there is none."""
        if not self._members:
            return False
        self._flush()
        return True

    def stop(self) -> None:
        """The run ended early: forget the partial batch and its timer."""
        self._cancel_timer()
        self._members = []

    def _on_timeout(self) -> None:
        self._timer = None
        if len(self._members) >= self._min_size:
            self._flush()
        else:
            self._overdue = True

    def _flush(self) -> None:
        members, self._members = self._members, []
        self._overdue = False
        self._cancel_timer()
        self._release(members)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
