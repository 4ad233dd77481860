"""`conveyor.decorators`: single_task and batch_task with 1.2.1's signatures and defaults."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from conveyor import BatchTask, SingleTask
from conveyor.decorators import batch_task, single_task

from .conftest import VirtualSleep


def numbers(xs: list[int]) -> list[int]:
    return [sum(xs)]


async def test_batch_sizes_default_as_in_1_2_1() -> None:
    assert batch_task()(numbers).max_size == 1
    three = batch_task(min_size=3)(numbers)
    assert (three.min_size, three.max_size) == (3, 3)
    assert await three(range(7)).collect() == [3, 12]  # [6] is below min_size
    assert batch_task(min_size=2, max_size=None)(numbers).max_size == 2
    positional = batch_task(2, 5)(numbers)
    assert (positional.min_size, positional.max_size) == (2, 5)
    assert await positional(range(7)).collect() == [10, 11]
    bare = batch_task(numbers)
    assert isinstance(bare, BatchTask) and (bare.min_size, bare.max_size) == (1, 1)


async def test_retry_delay_defaults_to_one_second_with_backoff(retry_clock: VirtualSleep) -> None:
    @single_task(retry_attempts=3, on_error="skip_item")
    async def broken(x: int) -> int:
        raise ConnectionError("down")

    assert await broken([1]).collect() == []
    assert retry_clock.delays == [1.0, 2.0]


@pytest.mark.parametrize("attempts", [1, 0, -3])
async def test_retry_attempts_of_one_or_less_means_no_retry(
    attempts: int, retry_clock: VirtualSleep
) -> None:
    calls = 0

    @single_task(retry_attempts=attempts, on_error="skip_item")
    def broken(x: int) -> int:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    assert await broken([1]).collect() == []
    assert calls == 1 and retry_clock.delays == []
    assert broken.retry_config.max_attempts == 1


async def test_concurrency_limit_zero_means_unlimited() -> None:
    active = peak = 0
    all_in = asyncio.Event()  # each call waits for all 20 to be running (or gives up after 5 s)

    @single_task(concurrency_limit=0)
    async def busy(x: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        if active == 20:
            all_in.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), 5)
        active -= 1
        return x

    assert busy.concurrency_limit is None
    assert await busy(range(20)).collect() == list(range(20))
    assert peak == 20


async def test_skip_batch_on_a_single_task_acts_as_skip_item() -> None:
    @single_task(on_error="skip_batch")
    def odd(x: int) -> int:
        if x % 2 == 0:
            raise ValueError("even")
        return x

    assert odd.on_error == "skip_item"
    events = [e async for e in odd.events(range(4))]
    assert [e.value for e in events if e.type == "result"] == [1, 3]
    assert [(e.sources, e.action) for e in events if e.type == "item_error"] == [
        ([0], "skip_item"),
        ([2], "skip_item"),
    ]


def test_the_decorators_signatures() -> None:
    def f(x: int) -> int:
        return x

    task = single_task(f, "skip_item", 2, 0.5, False, 3.0, None, "named", 4)
    assert isinstance(task, SingleTask)
    assert (task.on_error, task.task_name, task.concurrency_limit) == ("skip_item", "named", 4)
    retry = task.retry_config
    assert (retry.max_attempts, retry.base_delay, retry.exponential_backoff, retry.max_delay) == (
        2,
        0.5,
        False,
        3.0,
    )
    assert single_task(f).task_name == "f" and single_task()(f).retry_config.max_attempts == 1


def test_unknown_options_raise_at_declaration() -> None:
    with pytest.raises(ValueError, match="on_error"):
        single_task(on_error="retry")(lambda x: x)
    with pytest.raises(TypeError, match="max_retries"):
        single_task(max_retries=3)(lambda x: x)
    with pytest.raises(ValueError, match="max_size"):
        batch_task(3, 2)(numbers)
    with pytest.raises(TypeError, match="max_queue_size"):
        batch_task(max_queue_size=5)(numbers)
