"""A stream task turns the whole stream of its items into results with positions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from conveyor_core import InvalidRunError, StreamItemError, StreamTask, single_task


class PairUp(StreamTask):
    """Emits the sum of each two consecutive items it receives."""

    def __init__(self) -> None:
        super().__init__(name="pair_up")
        self.modes: list[str] = []

    async def process_stream(
        self, items: AsyncIterator[Any], mode: str
    ) -> AsyncIterator[tuple[Any, list[int]]]:
        self.modes.append(mode)
        held: list[tuple[int, Any]] = []
        position = 0
        async for item in items:
            held.append((position, item))
            position += 1
            if len(held) == 2:
                yield held[0][1] + held[1][1], [held[0][0], held[1][0]]
                held = []
        if held:
            yield held[0][1], [held[0][0]]


@single_task
def double(x: int) -> int:
    return x * 2


async def test_a_stream_task_between_local_tasks_maps_sources() -> None:
    stage = PairUp()
    events = [e async for e in (double | stage | double).events([1, 2, 3, 4, 5], mode="ordered")]
    results = [(e.value, e.sources) for e in events if e.type == "result"]
    assert results == [(12, [0, 1]), (28, [2, 3]), (20, [4])]
    assert stage.modes == ["ordered"]


async def test_bad_positions_fail_the_run_clearly() -> None:
    class Liar(StreamTask):
        async def process_stream(
            self, items: AsyncIterator[Any], mode: str
        ) -> AsyncIterator[tuple[Any, list[int]]]:
            async for item in items:
                yield item, [99]

    with pytest.raises(InvalidRunError, match="positions"):
        await (double | Liar("liar"))([1]).collect()


async def test_a_stream_task_reports_skipped_items_and_is_closed_on_failure() -> None:
    closed: list[bool] = []

    class SkipOdd(StreamTask):
        async def process_stream(
            self, items: AsyncIterator[Any], mode: str
        ) -> AsyncIterator[tuple[Any, list[int]] | StreamItemError]:
            try:
                position = 0
                async for item in items:
                    if item % 2:
                        yield StreamItemError([position], f"ValueError: odd {item}", stage="inner")
                    else:
                        yield item, [position]
                    position += 1
            finally:
                closed.append(True)

    events = [e async for e in (SkipOdd("skip") | double).events([1, 2, 3])]
    assert [(e.value, e.sources) for e in events if e.type == "result"] == [(4, [1])]
    errors = [e.to_dict() for e in events if e.type == "item_error"]
    assert [(e["stage"], e["sources"], e["error"]) for e in errors] == [
        ("inner", [0], "ValueError: odd 1"),
        ("inner", [2], "ValueError: odd 3"),
    ]
    assert events[-1].type == "end" and events[-1].stats.skipped == 2

    class Liar(SkipOdd):
        async def process_stream(
            self, items: AsyncIterator[Any], mode: str
        ) -> AsyncIterator[tuple[Any, list[int]] | StreamItemError]:
            try:
                async for item in items:
                    yield item, [42]
            finally:
                closed.append(False)

    with pytest.raises(InvalidRunError):
        await (Liar("liar"))([1]).collect()
    assert closed == [True, False]  # closed at once, not left to the garbage collector
