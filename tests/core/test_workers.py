"""The workers of a segment: a piece runs inline until it waits, and only then does another
worker take the rest of the queue."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from conveyor_core._workers import Workers

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


class Pool:
    """Workers over a fake carry that records what it was given; every task it spawns kept."""

    def __init__(self, carry: Callable[..., Coroutine[Any, Any, bool]] | None = None) -> None:
        self.tasks: list[asyncio.Task[None]] = []
        self.idle_calls = 0
        self.carried: list[Any] = []
        var.set("base")
        self.workers = Workers(
            "segment", self._spawn, carry or self._carry, contextvars.copy_context(), self._idle
        )

    def _spawn(
        self, work: Callable[[], Coroutine[Any, Any, None]], context: contextvars.Context
    ) -> None:
        self.tasks.append(asyncio.create_task(work(), context=context))

    def _idle(self) -> None:
        self.idle_calls += 1

    async def _carry(self, segment: Any, context: Any, *piece: Any) -> bool:
        assert segment == "segment"
        self.carried.append(piece[1])
        return False

    def put(self, value: Any) -> None:
        self.workers.put((0, value, None, None, None))

    async def finish(self) -> None:
        self.workers.close()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 1)


async def test_pieces_that_never_wait_run_in_one_worker_in_order() -> None:
    pool = Pool()
    for value in range(10):
        pool.put(value)
    assert len(pool.tasks) == 1 and pool.workers.active == 1
    await asyncio.sleep(0)
    assert pool.carried == list(range(10))
    assert (pool.workers.active, pool.workers.idle, pool.workers.switches) == (0, 1, 0)
    assert pool.idle_calls == 1
    await pool.finish()


async def test_a_piece_that_waits_hands_the_rest_of_the_queue_to_another_worker() -> None:
    gate = asyncio.Event()
    order: list[str] = []

    async def carry(segment: Any, context: Any, index: int, value: Any, *_: Any) -> bool:
        order.append(f"start {value}")
        await gate.wait()
        order.append(f"end {value}")
        return False

    pool = Pool(carry)
    for value in range(3):
        pool.put(value)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    workers = pool.workers
    assert order == ["start 0", "start 1", "start 2"]  # all three wait at once
    assert len(pool.tasks) == 3 and workers.waiting == 3 and workers.active == 0
    assert workers.switches == 3
    gate.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert sorted(order[3:]) == ["end 0", "end 1", "end 2"]
    assert workers.waiting == 0 and workers.idle == 3
    await pool.finish()


async def test_a_waiting_piece_finishes_inside_its_worker_task() -> None:
    seen: list[Any] = []

    async def carry(segment: Any, context: Any, *_: Any) -> bool:
        seen.append(asyncio.current_task())
        await asyncio.sleep(0)
        seen.append(asyncio.current_task())
        async with asyncio.timeout(5):  # needs a current task: it has its worker's
            await asyncio.sleep(0)
        return False

    pool = Pool(carry)
    pool.put(0)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert seen == [pool.tasks[0], pool.tasks[0]]
    await pool.finish()


async def test_each_piece_starts_from_the_base_context() -> None:
    seen: list[str] = []

    async def carry(segment: Any, context: Any, index: int, value: Any, *_: Any) -> bool:
        seen.append(var.get())
        var.set(f"piece {value}")  # must not leak into the next piece
        if value == 1:
            await asyncio.sleep(0)  # a piece that waits keeps its own context
            seen.append(var.get())
        return False

    pool = Pool(carry)
    var.set("outside")  # the caller's changes after the pool was made do not matter
    for value in range(3):
        pool.put(value)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert seen == ["base", "base", "base", "piece 1"]
    assert var.get() == "outside"
    await pool.finish()


async def test_an_idle_worker_is_woken_for_new_work_instead_of_a_new_task() -> None:
    pool = Pool()
    pool.put(0)
    await asyncio.sleep(0)
    assert pool.workers.idle == 1
    pool.put(1)
    assert len(pool.tasks) == 1 and pool.workers.active == 1 and pool.workers.idle == 0
    await asyncio.sleep(0)
    assert pool.carried == [0, 1]
    await pool.finish()


async def test_a_worker_woken_for_nothing_leaves() -> None:
    gate = asyncio.Event()

    async def carry(segment: Any, context: Any, index: int, value: Any, *_: Any) -> bool:
        if value == "wait":
            await gate.wait()
        return False

    pool = Pool(carry)
    pool.put("wait")
    pool.put("wait")
    for _ in range(3):
        await asyncio.sleep(0)
    gate.set()
    for _ in range(3):
        await asyncio.sleep(0)
    workers = pool.workers
    assert workers.idle == 2 and len(pool.tasks) == 2
    workers.put((0, "quick", None, None, None))  # wakes both: one takes it, one leaves
    assert workers.active == 2
    for _ in range(3):
        await asyncio.sleep(0)
    assert sum(task.done() for task in pool.tasks) == 1
    assert (workers.active, workers.idle) == (0, 1)
    await pool.finish()


async def test_close_lets_idle_workers_leave() -> None:
    pool = Pool()
    pool.put(0)
    await asyncio.sleep(0)
    assert not pool.tasks[0].done()  # waits for more while the input is open
    pool.workers.close()
    await asyncio.sleep(0)
    assert pool.tasks[0].done() and not pool.workers.open
    assert (pool.workers.active, pool.workers.idle) == (0, 0)


async def test_a_worker_leaves_without_waiting_once_the_input_is_closed() -> None:
    pool = Pool()
    pool.workers.close()
    pool.put(0)
    await asyncio.sleep(0)
    assert pool.carried == [0] and pool.tasks[0].done()


async def test_a_long_streak_lets_other_tasks_run() -> None:
    log: list[str] = []

    async def carry(segment: Any, context: Any, index: int, value: Any, *_: Any) -> bool:
        log.append(f"piece {value}")
        return True  # the carry went through a whole streak of pieces

    async def other() -> None:
        log.append("other")

    pool = Pool(carry)
    pool.put(0)
    pool.put(1)
    task = asyncio.create_task(other())
    await task
    for _ in range(3):
        await asyncio.sleep(0)
    assert log.index("other") < log.index("piece 1")  # the worker let the loop go between
    await pool.finish()


async def test_an_error_in_a_waiting_piece_fails_its_worker_and_counts_stay_right() -> None:
    async def carry(segment: Any, context: Any, index: int, value: Any, *_: Any) -> bool:
        await asyncio.sleep(0)
        raise ValueError(value)

    pool = Pool(carry)
    pool.put("bad")
    with pytest.raises(ValueError, match="bad"):
        await asyncio.wait_for(pool.tasks[0], 1)
    assert pool.workers.waiting == 0


async def test_cancelling_a_worker_reaches_the_piece_it_waits_in() -> None:
    cancelled: list[Any] = []

    async def carry(segment: Any, context: Any, index: int, value: Any, *_: Any) -> bool:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(var.get())  # in the piece's own context
            raise
        return False

    pool = Pool(carry)
    pool.put(0)
    await asyncio.sleep(0)
    pool.tasks[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await pool.tasks[0]
    assert cancelled == ["base"] and pool.workers.waiting == 0
