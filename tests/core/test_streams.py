"""Stream stages: the inbox a stream task pulls from, and `run_stream` mapping its outputs'
positions back to the run's sources."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from conveyor_core import InvalidRunError, StreamItemError, StreamTask
from conveyor_core._budget import Budget
from conveyor_core._streams import Inbox, _Positions, run_stream


async def _pull_all(inbox: Inbox, budget: Budget, seen: _Positions | None = None) -> list[Any]:
    seen = _Positions() if seen is None else seen
    return [value async for value in inbox.pull(seen, budget, lambda: None)]


async def test_pulling_gives_the_values_and_their_positions_back_to_the_budget() -> None:
    budget = Budget(8)
    inbox = Inbox()
    inbox.put("a", budget.admit(0), None, budget)
    inbox.put("b", budget.hold([1, 2]), None, budget)
    inbox.close()
    assert budget.live == {0, 1, 2}
    seen = _Positions()
    assert await _pull_all(inbox, budget, seen) == ["a", "b"]
    assert budget.live == set()  # the stream task holds them now
    assert (len(seen), seen[0], seen[1]) == (2, [0], [1, 2])


async def test_the_stage_waits_for_values_and_says_when_it_is_idle() -> None:
    budget = Budget(8)
    inbox = Inbox()
    idle: list[bool] = []
    pulled: list[Any] = []

    async def stage() -> None:
        async for value in inbox.pull(_Positions(), budget, lambda: idle.append(inbox.idle)):
            pulled.append(value)

    task = asyncio.create_task(stage())
    await asyncio.sleep(0)
    assert inbox.idle and idle == [True]
    inbox.put(1, budget.admit(0), None, budget)
    await asyncio.sleep(0)
    assert pulled == [1] and inbox.idle and idle == [True, True]
    inbox.close()
    await asyncio.wait_for(task, 1)
    assert not inbox.idle


async def test_values_put_after_the_stage_ended_are_given_back() -> None:
    budget = Budget(8)
    inbox = Inbox()
    inbox.put("pulled", budget.admit(0), None, budget)
    inbox.put("left", budget.admit(1), None, budget)
    inbox.close()
    pulling = inbox.pull(_Positions(), budget, lambda: None)
    assert await anext(pulling) == "pulled"
    await pulling.aclose()
    inbox.discard(budget)  # the stage ended without pulling the rest
    assert budget.live == set() and not inbox.items
    inbox.put("late", budget.admit(2), None, budget)
    assert budget.live == set() and not inbox.items


def test_positions_keep_one_source_compactly_and_several_as_lists() -> None:
    seen = _Positions()
    for sources in ([4], [1, 2], [7], [0, 3, 5]):
        seen.append(sources)
    assert len(seen) == 4
    assert [seen[i] for i in range(4)] == [[4], [1, 2], [7], [0, 3, 5]]
    with pytest.raises(IndexError):
        seen[4]
    with pytest.raises(IndexError):
        seen[-1]  # a negative position is no item the task received


class Recorder:
    """What run_stream tells the run."""

    def __init__(self) -> None:
        self.emitted: list[tuple[Any, list[int]]] = []
        self.reports: list[tuple[str, list[int], str, str]] = []
        self.failures: list[tuple[str | None, BaseException]] = []

    def emit(self, value: Any, sources: list[int]) -> None:
        self.emitted.append((value, sources))

    def report(self, stage: str, sources: list[int], error: str, action: str) -> None:
        self.reports.append((stage, sources, error, action))

    def fail(self, stage: str | None, exc: BaseException) -> None:
        self.failures.append((stage, exc))


class PairUp(StreamTask):
    """Sums each two items it receives; skips negative ones; a last odd item alone."""

    def __init__(self) -> None:
        super().__init__("pair_up")
        self.modes: list[str] = []

    async def process_stream(
        self, items: AsyncIterator[Any], mode: str
    ) -> AsyncIterator[tuple[Any, list[int]] | StreamItemError]:
        self.modes.append(mode)
        held: list[tuple[int, int]] = []
        position = 0
        async for item in items:
            if item < 0:
                yield StreamItemError([position], f"ValueError: {item}")
            elif item == 0:
                yield None, [position]  # None: no result
            else:
                held.append((position, item))
                if len(held) == 2:
                    yield held[0][1] + held[1][1], [held[1][0], held[0][0]]
                    held = []
            position += 1
        if held:
            yield held[0][1], [held[0][0]]


async def _run(head: StreamTask, values: list[tuple[Any, Any]], budget: Budget) -> Recorder:
    inbox = Inbox()
    for value, hold in values:
        inbox.put(value, hold, None, budget)
    inbox.close()
    recorder = Recorder()
    await run_stream(
        head, inbox, "as_completed", budget, recorder.emit, recorder.report, recorder.fail, _idle
    )
    return recorder


def _idle() -> None:
    pass


async def test_run_stream_maps_positions_to_the_sources_of_the_items() -> None:
    budget = Budget(8)
    head = PairUp()
    values = [(1, budget.hold([0, 1])), (2, budget.admit(2)), (-1, budget.admit(3))]
    values += [(0, budget.admit(4)), (5, budget.admit(5))]
    recorder = await _run(head, values, budget)
    assert recorder.emitted == [(3, [0, 1, 2]), (5, [5])]  # sorted, each source once
    assert recorder.reports == [("pair_up", [3], "ValueError: -1", "skip_item")]
    assert recorder.failures == [] and head.modes == ["as_completed"]
    assert budget.live == set()


async def test_a_report_names_the_inner_stage_when_it_knows_it() -> None:
    class Inner(StreamTask):
        async def process_stream(
            self, items: AsyncIterator[Any], mode: str
        ) -> AsyncIterator[StreamItemError]:
            async for _ in items:
                yield StreamItemError([0], "KeyError: 'k'", "handled", stage="remote_step")

    budget = Budget(8)
    recorder = await _run(Inner("inner"), [(1, budget.admit(7))], budget)
    assert recorder.reports == [("remote_step", [7], "KeyError: 'k'", "handled")]


@pytest.mark.parametrize("positions", [[1], [-1], None, ["0"]])
async def test_positions_the_task_never_received_fail_the_run(positions: Any) -> None:
    class Liar(StreamTask):
        async def process_stream(
            self, items: AsyncIterator[Any], mode: str
        ) -> AsyncIterator[tuple[Any, Any]]:
            async for item in items:
                yield item, positions

    budget = Budget(8)
    recorder = Recorder()
    inbox = Inbox()
    inbox.put("x", budget.admit(0), None, budget)
    inbox.put("y", budget.admit(1), None, budget)  # never pulled: the task failed first
    inbox.close()
    with pytest.raises(InvalidRunError, match="positions"):
        await run_stream(
            Liar("liar"),
            inbox,
            "ordered",
            budget,
            recorder.emit,
            recorder.report,
            recorder.fail,
            _idle,
        )
    assert [(stage, type(exc)) for stage, exc in recorder.failures] == [("liar", InvalidRunError)]
    assert budget.live == set() and not inbox.open  # what it had not pulled was given back


async def test_an_error_of_the_task_fails_the_run_and_the_task_is_closed() -> None:
    closed: list[bool] = []

    class Broken(StreamTask):
        async def process_stream(
            self, items: AsyncIterator[Any], mode: str
        ) -> AsyncIterator[tuple[Any, list[int]]]:
            try:
                async for item in items:
                    yield item, [0]
                    raise OSError("gone")
            finally:
                closed.append(True)

    budget = Budget(8)
    recorder = Recorder()
    inbox = Inbox()
    inbox.put("x", budget.admit(0), None, budget)
    inbox.close()
    with pytest.raises(OSError, match="gone"):
        await run_stream(
            Broken("broken"),
            inbox,
            "ordered",
            budget,
            recorder.emit,
            recorder.report,
            recorder.fail,
            _idle,
        )
    assert recorder.emitted == [("x", [0])] and closed == [True]
    assert [stage for stage, _ in recorder.failures] == ["broken"]
