"""The event channel: events numbered as they are taken, holds kept until then, one `end`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from conveyor_core._budget import Budget
from conveyor_core._channel import Channel
from conveyor_core._events import (
    EndEvent,
    ItemErrorEvent,
    ResultEvent,
    RunErrorEvent,
    RunStats,
    StageEvent,
)


def _end(status: str = "succeeded") -> EndEvent:
    return EndEvent(-1, status, RunStats())  # type: ignore[arg-type]


def _item_error(sources: list[int]) -> ItemErrorEvent:
    return ItemErrorEvent(-1, "stage", sources, "ValueError: bad", "skip_item")


def _stage_event() -> StageEvent:
    return StageEvent(-1, "stage", "single", [0], 1, 0.0, 0.0, 0.0, "ok")


class Ends:
    """The `start` and `stop` of a consumer, counted."""

    def __init__(self) -> None:
        self.started = 0
        self.stopped = 0

    def start(self) -> None:
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1


def _events(channel: Channel, ends: Ends | None = None) -> AsyncGenerator[Any, None]:
    ends = ends or Ends()
    return channel.events(ends.start, ends.stop)


async def test_events_are_numbered_in_order_and_end_last() -> None:
    budget = Budget(8)
    channel = Channel(budget)
    channel.result("a", budget.admit(0))
    channel.put(_stage_event())
    channel.report(_item_error([1]), budget.hold([1]))
    channel.result("b", budget.hold([2, 3]))
    channel.close(_end())
    ends = Ends()
    events = [event async for event in _events(channel, ends)]
    assert [(type(e), e.seq) for e in events] == [
        (ResultEvent, 0),
        (StageEvent, 1),
        (ItemErrorEvent, 2),
        (ResultEvent, 3),
        (EndEvent, 4),
    ]
    assert (events[0].value, events[0].sources) == ("a", [0])
    assert (events[3].value, events[3].sources) == ("b", [2, 3])
    assert channel.finished and channel.closed
    assert (ends.started, ends.stopped) == (1, 1)
    assert budget.in_flight == 0  # every hold went with its event


async def test_a_seq_is_given_when_taken_not_when_put() -> None:
    budget = Budget(8)
    channel = Channel(budget)
    events = _events(channel)
    channel.result("first", budget.admit(0))
    assert (await anext(events)).seq == 0
    channel.put(_stage_event())
    channel.result("second", budget.admit(1))
    assert len(channel) == 2
    assert [(await anext(events)).seq, (await anext(events)).seq] == [1, 2]
    channel.close(_end())
    assert (await anext(events)).seq == 3
    with pytest.raises(StopAsyncIteration):
        await anext(events)


async def test_a_result_holds_its_positions_until_the_consumer_takes_it() -> None:
    budget = Budget(8)
    channel = Channel(budget)
    events = _events(channel)
    channel.result(1, budget.admit(0))
    channel.report(_item_error([1]), budget.hold([1]))
    assert budget.live == {0, 1}
    await anext(events)
    assert budget.live == {1}
    await anext(events)
    assert budget.live == set()
    await events.aclose()


async def test_the_events_stop_at_the_end() -> None:
    budget = Budget(8)
    channel = Channel(budget)
    channel.close(_end())
    channel.put(_stage_event())  # after the end: never taken, never numbered
    events = [event async for event in _events(channel)]
    assert [type(e) for e in events] == [EndEvent] and len(channel) == 1


async def test_close_with_an_error_puts_it_right_before_the_end() -> None:
    budget = Budget(8)
    channel = Channel(budget)
    channel.result(1, budget.admit(0))
    channel.close(_end("failed"), RunErrorEvent(-1, "stage", "KeyError: 'k'", KeyError("k")))
    events = [event async for event in _events(channel)]
    assert [(e.type, e.seq) for e in events] == [("result", 0), ("error", 1), ("end", 2)]


async def test_drop_gives_back_every_hold_and_no_seq_is_skipped() -> None:
    budget = Budget(8)
    channel = Channel(budget)
    events = _events(channel)
    channel.result("taken", budget.admit(0))
    assert (await anext(events)).seq == 0
    channel.result("a", budget.admit(1))
    channel.report(_item_error([2]), budget.hold([2]))
    channel.put(_stage_event())
    channel.result("b", budget.hold([3, 4]))
    assert channel.drop() == 2  # two results dropped
    assert len(channel) == 0 and budget.live == set() and channel.dropping
    # what the run puts while it fails from outside is dropped too, its holds given back
    channel.result("late", budget.admit(5))
    channel.report(_item_error([6]), budget.hold([6]))
    channel.put(_stage_event())
    assert len(channel) == 0 and budget.live == set()
    channel.close(_end("failed"), RunErrorEvent(-1, None, "RuntimeError: stop"))
    assert not channel.dropping
    rest = [event async for event in events]
    assert [(e.type, e.seq) for e in rest] == [("error", 1), ("end", 2)]


async def test_drop_after_the_end_was_put_reopens_the_channel_for_the_error() -> None:
    """A run that ended, whose consumer has not taken its end yet, fails from outside."""
    budget = Budget(8)
    channel = Channel(budget)
    channel.result(1, budget.admit(0))
    channel.close(_end())
    assert channel.drop() == 1 and not channel.closed
    channel.close(_end("failed"), RunErrorEvent(-1, None, "RuntimeError: late"))
    events = [event async for event in _events(channel)]
    assert [(e.type, e.seq) for e in events] == [("error", 0), ("end", 1)]
    assert events[-1].status == "failed"


async def test_untake_gives_the_last_seq_back() -> None:
    """The consumer could not use the result it was given: what follows takes its seq."""
    budget = Budget(8)
    channel = Channel(budget)
    events = _events(channel)
    for index in range(3):
        channel.result(index, budget.admit(index))
    assert [(await anext(events)).seq for _ in range(2)] == [0, 1]
    channel.untake()
    channel.drop()
    channel.close(_end("failed"), RunErrorEvent(-1, None, "TypeError: no wire form"))
    rest = [event async for event in events]
    assert [(e.type, e.seq) for e in rest] == [("error", 1), ("end", 2)]


async def test_untake_without_drop_renumbers_the_next_event() -> None:
    budget = Budget(8)
    channel = Channel(budget)
    events = _events(channel)
    channel.result("a", budget.admit(0))
    channel.result("b", budget.admit(1))
    assert (await anext(events)).seq == 0
    channel.untake()
    assert (await anext(events)).value == "b"  # "b" gets seq 0: no gap in what is used
    channel.close(_end())
    rest = [event async for event in events]
    assert [e.seq for e in rest] == [1]


async def test_the_consumer_waits_for_events_and_wakes_when_one_is_put() -> None:
    budget = Budget(8)
    channel = Channel(budget)
    waits: list[int] = []
    channel.on_wait = lambda: waits.append(len(channel))
    events = _events(channel)
    taking = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)
    assert not taking.done() and waits == [0] and channel.ready
    channel.result("x", budget.admit(0))
    assert (await taking).value == "x"
    channel.close(_end())
    assert [e.type async for e in events] == ["end"]


async def test_taking_an_event_fires_drained() -> None:
    budget = Budget(8)
    channel = Channel(budget)
    channel.result(1, budget.admit(0))
    channel.result(2, budget.admit(1))
    events = _events(channel)
    fan_out = asyncio.create_task(channel.drained.wait())  # a fan-out waiting for the consumer
    await asyncio.sleep(0)
    await anext(events)
    await asyncio.sleep(0)
    assert fan_out.done()
    await events.aclose()


async def test_a_driver_that_ends_without_an_end_is_an_error_not_a_hang() -> None:
    budget = Budget(8)
    channel = Channel(budget)

    async def driver() -> None:
        channel.result(1, budget.admit(0))

    channel.watch(asyncio.create_task(driver()))
    events = _events(channel)
    assert (await anext(events)).value == 1
    with pytest.raises(RuntimeError, match="without an end event"):
        await asyncio.wait_for(anext(events), 1)


async def test_a_driver_cancelled_from_elsewhere_ends_the_events_with_no_more() -> None:
    budget = Budget(8)
    channel = Channel(budget)
    driver = asyncio.create_task(asyncio.sleep(60))
    channel.watch(driver)
    ends = Ends()
    events = _events(channel, ends)
    taking = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)
    driver.cancel()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(taking, 1)
    assert ends.stopped == 1 and not channel.finished


async def test_values_yield_results_and_skip_the_other_events() -> None:
    budget = Budget(8)
    channel = Channel(budget)
    channel.result("a", budget.admit(0))
    channel.report(_item_error([1]), budget.hold([1]))
    channel.put(_stage_event())
    channel.result("b", budget.admit(2))
    channel.close(_end())
    ends = Ends()
    assert [value async for value in channel.values(ends.start, ends.stop)] == ["a", "b"]
    assert channel.finished and budget.live == set() and ends.stopped == 1


async def test_values_raise_the_runs_own_exception() -> None:
    budget = Budget(8)
    channel = Channel(budget)
    problem = KeyError("k")
    channel.result("a", budget.admit(0))
    channel.close(_end("failed"), RunErrorEvent(-1, "stage", "KeyError: 'k'", problem))
    ends = Ends()
    values = channel.values(ends.start, ends.stop)
    assert await anext(values) == "a"
    with pytest.raises(KeyError) as raised:
        await anext(values)
    assert raised.value is problem and ends.stopped == 1


async def test_leaving_early_stops_the_run() -> None:
    budget = Budget(8)
    channel = Channel(budget)
    for index in range(3):
        channel.result(index, budget.admit(index))
    ends = Ends()
    events = _events(channel, ends)
    await anext(events)
    await events.aclose()
    assert (ends.started, ends.stopped) == (1, 1) and not channel.finished
