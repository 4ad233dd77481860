"""The Batcher's decisions on its own: when a batch goes, when a remainder is dropped, and its
max_wait timer, on the virtual clock (looptime), so every time below is exact."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conveyor_core._batching import Batcher, holdings_of, values_of

pytestmark = pytest.mark.looptime


class Batches:
    """A batcher whose releases, drops and close are recorded with the loop's time."""

    def __init__(self, max_size: int, min_size: int = 1, max_wait: float | None = None) -> None:
        self.released: list[tuple[float, list[Any]]] = []
        self.dropped: list[list[Any]] = []
        self.closed: list[float] = []
        self.batcher = Batcher(
            max_size, min_size, max_wait, self._release, self.dropped.append, self._close
        )

    @staticmethod
    def _now() -> float:
        return round(asyncio.get_running_loop().time(), 6)

    def _release(self, members: list[Any]) -> None:
        self.released.append((self._now(), values_of(members)))

    def _close(self) -> None:
        self.closed.append(self._now())

    def add(self, *values: Any) -> None:
        for value in values:
            self.batcher.add(value, f"hold {value}", None)

    @property
    def batches(self) -> list[list[Any]]:
        return [values for _, values in self.released]


def test_members_are_value_hold_tag_triples() -> None:
    members = [(1, "h1", None), (2, "h2", "t")]
    assert values_of(members) == [1, 2] and holdings_of(members) == ["h1", "h2"]


async def test_a_full_batch_goes_at_once() -> None:
    batches = Batches(max_size=3)
    batches.add(1, 2)
    assert batches.released == []
    batches.add(3)
    assert batches.batches == [[1, 2, 3]]
    batches.add(4)
    assert batches.batches == [[1, 2, 3]]


async def test_the_remainder_goes_at_the_end_when_it_reaches_min_size() -> None:
    batches = Batches(max_size=3, min_size=2)
    batches.add(1, 2, 3, 4, 5)
    batches.batcher.close()
    assert batches.batches == [[1, 2, 3], [4, 5]] and batches.dropped == []
    assert batches.closed == [0.0]


async def test_a_remainder_below_min_size_is_dropped_with_its_holds() -> None:
    batches = Batches(max_size=3, min_size=2)
    batches.add(1, 2, 3, 4)
    batches.batcher.close()
    assert batches.batches == [[1, 2, 3]]
    assert batches.dropped == [[(4, "hold 4", None)]]
    assert batches.closed == [0.0]  # closed downstream after the drop


async def test_close_with_nothing_waiting_only_closes_downstream() -> None:
    batches = Batches(max_size=2)
    batches.batcher.close()
    assert batches.released == [] and batches.dropped == [] and len(batches.closed) == 1


async def test_max_wait_releases_a_partial_batch_counted_from_its_first_item(
    looptime: Any,
) -> None:
    batches = Batches(max_size=10, max_wait=2.0)
    batches.add(1)
    assert batches.batcher.waiting
    await asyncio.sleep(1.5)
    batches.add(2)  # does not restart the timer
    await asyncio.sleep(0.4)
    assert batches.released == []
    await asyncio.sleep(0.1)
    assert batches.released == [(2.0, [1, 2])] and not batches.batcher.waiting
    assert looptime == 2.0


async def test_the_next_batch_gets_a_timer_of_its_own() -> None:
    batches = Batches(max_size=2, max_wait=1.0)
    batches.add(1, 2)  # full: goes at 0, its timer cancelled
    await asyncio.sleep(0.5)
    batches.add(3)  # a new partial batch: due at 1.5, not at 1.0
    await asyncio.sleep(0.75)
    assert batches.released == [(0.0, [1, 2])]
    await asyncio.sleep(0.75)
    assert batches.released == [(0.0, [1, 2]), (1.5, [3])]


async def test_max_wait_below_min_size_waits_for_min_size_then_goes_at_once() -> None:
    batches = Batches(max_size=10, min_size=3, max_wait=1.0)
    batches.add(1)
    await asyncio.sleep(5)
    batches.add(2)
    assert batches.released == []  # overdue, but below min_size
    batches.add(3)
    assert batches.released == [(5.0, [1, 2, 3])]  # reaching min_size: now


async def test_an_overdue_batch_does_not_make_the_next_one_overdue() -> None:
    batches = Batches(max_size=10, min_size=2, max_wait=1.0)
    batches.add(1)
    await asyncio.sleep(1)
    batches.add(2)
    assert batches.released == [(1.0, [1, 2])]
    batches.add(3, 4)  # min_size, but a fresh batch: it waits for its own max_wait
    assert batches.released == [(1.0, [1, 2])]
    await asyncio.sleep(1)
    assert batches.released == [(1.0, [1, 2]), (2.0, [3, 4])]


async def test_release_early_sends_a_partial_batch_whatever_its_size() -> None:
    batches = Batches(max_size=10, min_size=5, max_wait=1.0)
    assert not batches.batcher.release_early()  # nothing to release
    batches.add(1, 2)
    assert batches.batcher.release_early()
    assert batches.batches == [[1, 2]] and not batches.batcher.waiting
    await asyncio.sleep(2)
    assert batches.batches == [[1, 2]]  # its timer went with it


async def test_stop_forgets_the_partial_batch_and_its_timer() -> None:
    batches = Batches(max_size=10, max_wait=1.0)
    batches.add(1, 2)
    batches.batcher.stop()
    assert not batches.batcher.waiting
    await asyncio.sleep(2)
    assert batches.released == [] and batches.dropped == [] and batches.closed == []


async def test_without_max_wait_a_partial_batch_waits_for_the_end() -> None:
    batches = Batches(max_size=3)
    batches.add(1)
    assert not batches.batcher.waiting  # no timer: _unstall may release it early
    await asyncio.sleep(3600)
    assert batches.released == []
    batches.batcher.close()
    assert batches.released == [(3600.0, [1])]
