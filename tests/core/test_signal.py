"""`Signal`: a broadcast that wakes every task waiting at the moment it fires."""

from __future__ import annotations

import asyncio

from conveyor_core._signal import Signal


async def _waiting(signal: Signal, count: int, woken: list[int]) -> list[asyncio.Task[None]]:
    async def waiter(number: int) -> None:
        await signal.wait()
        woken.append(number)

    tasks = [asyncio.create_task(waiter(number)) for number in range(count)]
    await asyncio.sleep(0)  # every waiter reaches its wait
    return tasks


async def test_fire_wakes_every_waiter() -> None:
    signal = Signal()
    woken: list[int] = []
    tasks = await _waiting(signal, 5, woken)
    assert len(signal.waiters) == 5 and signal
    signal.fire()
    assert not signal and signal.waiters == []  # handed over at once, before they run
    await asyncio.gather(*tasks)
    assert sorted(woken) == [0, 1, 2, 3, 4]


async def test_a_fire_with_no_waiter_is_not_remembered() -> None:
    signal = Signal()
    signal.fire()  # nobody waits: nothing happens, nothing is kept for later
    assert not signal
    waiter = asyncio.create_task(signal.wait())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not waiter.done()  # the earlier fire did not wake it
    signal.fire()
    await waiter


async def test_only_the_tasks_waiting_when_it_fires_are_woken() -> None:
    signal = Signal()
    woken: list[int] = []
    first = await _waiting(signal, 2, woken)
    signal.fire()
    late = asyncio.create_task(signal.wait())  # waits after the fire: for the next one
    await asyncio.gather(*first)
    await asyncio.sleep(0)
    assert sorted(woken) == [0, 1] and not late.done() and len(signal.waiters) == 1
    signal.fire()
    await late


async def test_a_cancelled_waiter_leaves_and_the_others_are_still_woken() -> None:
    signal = Signal()
    woken: list[int] = []
    tasks = await _waiting(signal, 3, woken)
    tasks[1].cancel()
    await asyncio.sleep(0)
    assert tasks[1].cancelled()
    assert len(signal.waiters) == 2  # its future is gone from the list
    signal.fire()
    await asyncio.gather(tasks[0], tasks[2])
    assert sorted(woken) == [0, 2]


async def test_a_waiter_cancelled_after_the_fire_still_raises_cancelled() -> None:
    signal = Signal()
    waiter = asyncio.create_task(signal.wait())
    await asyncio.sleep(0)
    signal.fire()
    waiter.cancel()  # woken but not yet resumed: the cancellation wins, nothing breaks
    await asyncio.sleep(0)
    assert waiter.cancelled() and signal.waiters == []


async def test_a_waiter_whose_future_someone_else_finished_is_skipped() -> None:
    signal = Signal()
    waiter = asyncio.create_task(signal.wait())
    await asyncio.sleep(0)
    (future,) = signal.waiters
    future.cancel()  # not through the task: the waiter's future alone
    await asyncio.sleep(0)
    assert waiter.cancelled() and signal.waiters == []  # removed though done
    signal.fire()  # no "set_result on a done future"


async def test_waiters_loop_on_their_own_condition() -> None:
    """The pattern every waiter of the engine uses: check, wait, check again."""
    signal = Signal()
    count = 0

    async def until_three() -> int:
        while count < 3:
            await signal.wait()
        return count

    waiter = asyncio.create_task(until_three())
    for _ in range(5):
        await asyncio.sleep(0)
        count += 1
        signal.fire()  # woken for 1 and 2 too: it checks and waits again
    assert await waiter == 3
