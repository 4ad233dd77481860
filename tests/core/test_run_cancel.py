"""Cancelling a run through the engine: it still ends with its own `end` event."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conveyor_core import (
    EndEvent,
    ResultEvent,
    RunErrorEvent,
    batch_task,
    single_task,
)

pytestmark = pytest.mark.looptime  # the virtual clock: times below are exact, and take no time


@single_task
async def slow(x: int) -> int:
    await asyncio.sleep(0.05 if x < 3 else 60)
    return x


async def _events(stream: Any) -> list[Any]:
    return [event async for event in stream]


def _seqs(events: list[Any]) -> list[int]:
    return [event.seq for event in events]


async def test_cancel_ends_the_run_with_its_own_end_after_what_it_produced(
    looptime: Any,
) -> None:
    events = slow.events(range(6))
    seen = []
    async for event in events:
        seen.append(event)
        if len(seen) == 3:  # results 0, 1, 2; 3, 4, 5 sleep for a minute
            events.cancel()
    assert [type(e) for e in seen] == [ResultEvent] * 3 + [EndEvent]
    assert _seqs(seen) == [0, 1, 2, 3]
    end = seen[-1]
    assert end.status == "cancelled"
    assert end.stats.inputs == 6 and end.stats.results == 3
    assert looptime == 0.05  # the end came at once, not after the minute-long calls


async def test_cancel_before_the_run_starts_gives_just_the_end() -> None:
    events = slow.events(range(3))
    events.cancel()
    seen = await asyncio.wait_for(_events(events), 5)
    assert [(e.type, e.seq) for e in seen] == [("end", 0)]
    assert seen[0].status == "cancelled"


async def test_cancel_from_another_task_while_the_consumer_waits(looptime: Any) -> None:
    events = slow.events([5])  # sleeps a minute

    async def later() -> None:
        await asyncio.sleep(0.05)
        events.cancel()

    canceller = asyncio.create_task(later())
    seen = await asyncio.wait_for(_events(events), 5)
    await canceller
    assert [(e.type, e.status) for e in seen] == [("end", "cancelled")]
    assert looptime == 0.05


async def test_cancel_with_an_error_drops_what_was_not_taken_and_fails() -> None:
    @single_task
    async def quick(x: int) -> int:
        return x

    events = quick.events(range(100))
    first = await anext(events)  # the others are ready, queued for the consumer
    problem = ValueError("the service could not send result 0")
    events.cancel(problem)
    rest = [event async for event in events]
    assert first.type == "result"
    assert [(e.type, e.seq) for e in rest] == [("error", 1), ("end", 2)]
    error, end = rest
    assert error.stage is None and error.error == "ValueError: the service could not send result 0"
    assert error.exception is problem
    assert end.status == "failed" and end.stats.results == 1


async def test_cancel_with_an_error_after_the_run_ended_but_before_its_end_was_taken() -> None:
    @batch_task(max_size=2)
    async def pair(xs: list[int]) -> int:
        return sum(xs)

    events = pair.events([1, 2, 3, 4])
    first = await anext(events)
    for _ in range(20):  # the run finishes: its second result and its end wait in the channel
        await asyncio.sleep(0)
    events.cancel(RuntimeError("stop"))
    rest = [event async for event in events]
    assert (first.type, first.value) == ("result", 3)
    assert [(e.type, e.seq) for e in rest] == [("error", 1), ("end", 2)]
    assert rest[-1].status == "failed"


async def test_cancel_after_the_end_was_taken_changes_nothing() -> None:
    @single_task
    async def one(x: int) -> int:
        return x

    events = one.events([1])
    seen = await _events(events)
    events.cancel(RuntimeError("too late"))
    assert [e.type for e in seen] == ["result", "end"] and seen[-1].status == "succeeded"


async def test_a_failed_cancel_raises_its_error_from_the_values() -> None:
    stream = slow([5])
    problem = RuntimeError("stopped by the caller")
    iterator = aiter(stream)
    waiting = asyncio.ensure_future(anext(iterator))
    await asyncio.sleep(0.05)
    stream._run.cancel(problem)  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError) as raised:
        await waiting
    assert raised.value is problem


async def test_the_error_event_of_a_cancel_with_an_error_is_an_engine_event() -> None:
    events = slow.events(range(2))
    events.cancel(KeyError("k"))
    seen = await _events(events)
    assert isinstance(seen[0], RunErrorEvent) and seen[0].error == "KeyError: 'k'"
    assert isinstance(seen[1], EndEvent) and seen[1].status == "failed"


async def test_a_rejected_result_gives_its_seq_to_the_error() -> None:
    @single_task
    async def quick(x: int) -> int:
        return x

    events = quick.events(range(10))
    first = await anext(events)
    second = await anext(events)
    events.reject(TypeError("no wire form"))
    rest = [event async for event in events]
    assert (first.seq, second.seq) == (0, 1)
    assert [(e.type, e.seq) for e in rest] == [("error", 1), ("end", 2)]
    assert rest[-1].stats.results == 1 and rest[-1].status == "failed"
