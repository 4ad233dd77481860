"""A stream task turns the whole stream of its items into results with positions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from conveyor_core import InvalidRunError, StreamTask, single_task


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
