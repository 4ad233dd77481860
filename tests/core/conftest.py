"""The engine suite's shared checks.

Timing tests run on looptime's virtual clock (`@pytest.mark.looptime`, or `pytestmark` for a
module): `asyncio.sleep`, `call_later` and timeouts take no real time, and the loop's time moves
only when nothing else can run, so times are exact (`looptime == 0.05`). Tests whose calls run
in threads or processes (`run_in_thread`, executors) stay on the real clock: a virtual clock
would run ahead while they work. looptime turns the virtual clock on for the test function only:
the fixtures below run on the real clock either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from conveyor_core import _policy


async def settle() -> set[asyncio.Task[object]]:
    """Let pending callbacks run; return the tasks still alive besides the caller."""
    for _ in range(20):
        await asyncio.sleep(0)
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


@pytest.fixture(autouse=True)
async def no_task_left() -> AsyncIterator[None]:
    """Every test of the engine ends with no task of a run still alive."""
    yield
    left = await settle()
    assert not left, f"tasks left running: {left}"


class VirtualSleep:
    """Stands in for asyncio.sleep in the retry policy: records delays, waits no time."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


@pytest.fixture
def retry_clock(monkeypatch: pytest.MonkeyPatch) -> VirtualSleep:
    clock = VirtualSleep()
    monkeypatch.setattr(_policy, "_sleep", clock)
    return clock
