"""The budget: input positions in flight, their holdings, and the source's wait for room."""

from __future__ import annotations

import asyncio

import pytest

from conveyor_core._budget import Budget, Hold, sources_of


def test_an_admitted_item_holds_its_position_as_an_int() -> None:
    budget = Budget(2)
    assert budget.admit(0) == 0 and budget.admit(1) == 1
    assert budget.in_flight == 2 and budget.full
    budget.release(0)
    assert budget.live == {1} and not budget.full
    assert sources_of(1) == [1] and sources_of(Hold([3, 5])) == [3, 5]


def test_a_fan_out_shares_the_holding_until_its_last_value() -> None:
    budget = Budget(8)
    holding = budget.admit(4)
    hold = budget.share(holding, 2)  # three values: the first and two more
    assert (hold.sources, hold.refs) == ([4], 3)
    budget.release(hold)
    budget.release(hold)
    assert budget.live == {4}  # one value still stands for position 4
    budget.release(hold)
    assert budget.live == set() and hold.refs == 0


def test_sharing_a_shared_hold_adds_to_its_refs_in_place() -> None:
    budget = Budget(8)
    hold = budget.share(budget.admit(0), 1)
    again = budget.share(hold, 3)  # one of its values fans out again
    assert again is hold and hold.refs == 5
    for _ in range(4):
        budget.release(hold)
    assert budget.live == {0}
    budget.release(hold)
    assert budget.live == set()


def test_a_second_holding_of_a_live_position_keeps_it_in_flight() -> None:
    """An item error's report holds the positions of a value still about."""
    budget = Budget(8)
    value = budget.admit(3)
    report = budget.hold([3])
    assert budget.shared == {3: 1} and budget.in_flight == 1
    budget.release(value)  # the value is gone: the report still holds 3
    assert budget.live == {3} and budget.shared == {}
    budget.release(report)
    assert budget.live == set()


def test_a_holding_of_positions_no_longer_in_flight_puts_them_back() -> None:
    budget = Budget(8)
    budget.release(budget.admit(0))
    hold = budget.hold([0, 1])  # a stream task's result for items it pulled already
    assert budget.live == {0, 1} and budget.shared == {}
    budget.release(hold)
    assert budget.live == set()


def test_a_batch_of_sole_values_takes_their_positions_over() -> None:
    budget = Budget(8)
    holdings = [budget.admit(i) for i in (2, 0, 1)]
    merged = budget.merge(holdings)
    assert isinstance(merged, Hold) and (merged.sources, merged.refs) == ([0, 1, 2], 1)
    assert budget.live == {0, 1, 2} and budget.shared == {}
    budget.release(merged)
    assert budget.live == set()
    alone = budget.admit(5)
    assert budget.merge([alone]) is alone  # a batch of one keeps its member's holding


def test_a_batch_of_sole_holds_takes_them_over_and_empties_them() -> None:
    budget = Budget(8)
    first = budget.share(budget.admit(0), 0)  # a Hold with refs 1: a stream's last value
    second = budget.share(budget.admit(1), 0)
    third = budget.admit(2)
    merged = budget.merge([first, third, second])
    assert isinstance(merged, Hold) and merged.sources == [0, 1, 2]
    assert (first.refs, second.refs) == (0, 0)  # their positions went to the batch
    assert budget.shared == {}
    budget.release(merged)
    assert budget.live == set()


def test_a_batch_splitting_a_fan_out_shares_its_positions() -> None:
    """Two values of one fan-out in different batches: each batch holds position 0."""
    budget = Budget(8)
    fan = budget.share(budget.admit(0), 1)  # values a and b stand for 0
    one = budget.admit(1)
    first_batch = budget.merge([fan, one])  # a with item 1
    assert first_batch.sources == [0, 1]  # type: ignore[union-attr]
    assert budget.live == {0, 1} and fan.refs == 1
    budget.release(first_batch)
    assert budget.live == {0}  # b still stands for 0
    budget.release(fan)
    assert budget.live == set() and budget.shared == {}


def test_merging_overlapping_holdings_counts_each_position_once() -> None:
    budget = Budget(8)
    fan = budget.share(budget.admit(0), 1)
    merged = budget.merge([fan, fan])  # both values of the fan-out in one batch
    assert merged.sources == [0]  # type: ignore[union-attr]
    budget.release(merged)
    assert budget.live == set() and budget.shared == {}


def test_releasing_wakes_the_source_only_below_the_limit() -> None:
    budget = Budget(2)
    fired: list[int] = []

    class Room:
        waiters = [object()]  # someone waits

        def fire(self) -> None:
            fired.append(budget.in_flight)

    budget.room = Room()  # type: ignore[assignment]
    for index in range(3):
        budget.admit(index)
    budget.release(0)  # 2 left: still at the limit
    assert fired == []
    report = budget.hold([1])
    budget.release(1)  # 1 is still held by the report: nothing given back
    assert fired == []
    budget.release(report)
    assert fired == [1]


async def test_wait_for_room_returns_at_once_when_there_is_room() -> None:
    budget = Budget(2)
    budget.admit(0)
    blocked: list[int] = []
    await budget.wait_for_room(lambda: blocked.append(1))
    assert blocked == []


async def test_wait_for_room_waits_until_a_release_and_says_when_it_blocks() -> None:
    budget = Budget(1)
    budget.admit(0)
    blocked: list[int] = []
    waiter = asyncio.create_task(budget.wait_for_room(lambda: blocked.append(budget.in_flight)))
    await asyncio.sleep(0)
    assert blocked == [1] and not waiter.done() and budget.room
    budget.release(0)
    await asyncio.wait_for(waiter, 1)
    assert not budget.room


async def test_wait_for_room_returns_when_blocked_makes_room() -> None:
    """`blocked()` is where the run releases partial batches: it may free room itself."""
    budget = Budget(1)
    budget.admit(0)
    await asyncio.wait_for(budget.wait_for_room(lambda: budget.release(0)), 1)
    assert budget.in_flight == 0 and not budget.room


async def test_wait_for_room_waits_again_when_woken_for_too_little() -> None:
    budget = Budget(2)
    for index in range(4):
        budget.admit(index)
    calls: list[int] = []
    waiter = asyncio.create_task(budget.wait_for_room(lambda: calls.append(budget.in_flight)))
    await asyncio.sleep(0)
    budget.release(0)
    budget.release(1)  # 2 in flight: at the limit, no fire
    await asyncio.sleep(0)
    assert not waiter.done() and calls == [4]
    budget.release(2)
    await asyncio.wait_for(waiter, 1)
    assert budget.in_flight == 1


def test_releasing_a_position_twice_is_an_error_not_a_silent_miscount() -> None:
    budget = Budget(2)
    budget.release(budget.admit(0))
    with pytest.raises(KeyError):
        budget.release(0)
