"""`conveyor.error_handling`: RetryConfig, handlers, and what 1.2.1 got wrong staying fixed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor import batch_task, single_task
from conveyor.error_handling import ErrorAction, ErrorHandler, LoggingErrorHandler, RetryConfig

from .conftest import VirtualSleep


def test_retry_config_defaults_and_is_mutable() -> None:
    config = RetryConfig()
    assert (
        config.max_attempts,
        config.base_delay,
        config.exponential_backoff,
        config.max_delay,
        config.backoff_multiplier,
    ) == (3, 1.0, True, 60.0, 2.0)
    config.max_attempts = 5
    assert config == RetryConfig(5, 1.0, True, 60.0, 2.0)
    action: ErrorAction = "skip_batch"
    assert action == "skip_batch"
    with pytest.raises(ValueError, match="base_delay"):
        RetryConfig(base_delay=-1)


async def test_retry_config_is_used_as_1_2_1_uses_it(retry_clock: VirtualSleep) -> None:
    config = RetryConfig(max_attempts=4, base_delay=0.5, backoff_multiplier=3.0, max_delay=2.0)
    calls = 0

    @single_task(retry_config=config, on_error="skip_item")
    def broken(x: int) -> int:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    assert await broken([1]).collect() == []
    assert calls == 4 and retry_clock.delays == [0.5, 1.5, 2.0]
    config.exponential_backoff = False  # read at each call, as 1.2.1 did
    config.max_attempts = 2
    retry_clock.delays.clear()
    assert await broken([1]).collect() == []
    assert calls == 6 and retry_clock.delays == [0.5]
    config.max_attempts = 0  # one attempt, no retry
    assert await broken([1]).collect() == [] and calls == 7


async def test_logging_error_handler_logs_at_error_and_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = LoggingErrorHandler(replacement_value=0)
    assert handler.logger.name == "conveyor.error_handling"
    with caplog.at_level(logging.ERROR, logger="conveyor.error_handling"):
        assert await handler.handle_error(ValueError("bad"), 1, "task", 2) == (True, 0)

        @single_task(error_handler=handler)
        async def failing(x: int) -> int:
            if x % 2 == 0:
                raise RuntimeError(f"Even numbers not allowed: {x}")
            return x * 10

        assert await failing([1, 2, 3, 4, 5]).collect() == [10, 0, 30, 0, 50]
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert messages == [
        ("ERROR", "Error in task (attempt 2): bad"),
        ("ERROR", "Error in failing (attempt 1): Even numbers not allowed: 2"),
        ("ERROR", "Error in failing (attempt 1): Even numbers not allowed: 4"),
    ]
    assert await single_task(error_handler=LoggingErrorHandler())(failing.func)([2]).collect() == []


class Refuses(ErrorHandler):
    async def handle_error(self, error: Exception, item: Any, name: str, attempt: int) -> Any:
        return False, None


@pytest.mark.parametrize("on_error", ["fail", "skip_item", "skip_batch"])
@pytest.mark.parametrize("mode", ["ordered", "as_completed"])
async def test_a_handler_that_declines_re_raises_whatever_on_error_says(
    on_error: str, mode: str
) -> None:
    @batch_task(max_size=2, on_error=on_error, error_handler=Refuses())
    def batch(xs: list[int]) -> int:
        if 3 in xs:
            raise KeyError("three")
        return sum(xs)

    @single_task(
        on_error="skip_item" if on_error == "skip_batch" else on_error, error_handler=Refuses()
    )
    def single(x: int) -> int:
        if x == 3:
            raise KeyError("three")
        return x

    for task in (batch, single):
        with pytest.raises(KeyError, match="three"):
            await task(range(6), mode=mode).collect()


@pytest.mark.parametrize("mode", ["ordered", "as_completed"])
async def test_failures_raise_in_both_modes(mode: str) -> None:
    @single_task
    async def fails(x: int) -> int:
        await asyncio.sleep(0.001 * x)
        if x == 2:
            raise ValueError("two")
        return x

    with pytest.raises(ValueError, match="two"):
        await fails(range(5), mode=mode).collect()


async def test_batches_run_concurrently() -> None:
    active = peak = 0

    @batch_task(max_size=2)
    async def slow(xs: list[int]) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1
        return sum(xs)

    assert await slow(range(8)).collect() == [1, 5, 9, 13]
    assert peak == 4


async def test_input_is_pulled_lazily_and_bounded() -> None:
    pulled = 0

    def endless() -> Iterator[int]:
        nonlocal pulled
        while True:
            pulled += 1
            yield pulled

    @single_task
    def same(x: int) -> int:
        return x

    got = []
    async for value in same(endless(), max_in_flight=4):
        got.append(value)
        if len(got) == 10:
            break
    assert got == list(range(1, 11)) and pulled <= 10 + 4


async def test_leaving_early_cancels_the_calls_in_flight() -> None:
    started = cancelled = 0

    @single_task
    async def slow(x: int) -> int:
        nonlocal started, cancelled
        if x == 0:
            return x
        started += 1
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return x

    stream = slow(range(5))
    assert await anext(stream) == 0
    await stream.aclose()
    assert cancelled == started > 0


async def test_batch_skip_item_probes_the_members() -> None:
    @batch_task(max_size=3, on_error="skip_item")
    def no_fours(xs: list[int]) -> int:
        if 4 in xs:
            raise ValueError("four")
        return sum(xs)

    assert await no_fours(range(6)).collect() == [3, 8]  # [3, 4, 5] runs again as [3, 5]


async def test_a_tuple_or_dict_batch_result_is_one_item() -> None:
    @batch_task(max_size=2)
    def shapes(xs: list[int]) -> Any:
        return (xs[0], len(xs)) if xs[0] % 4 == 0 else {"first": xs[0]}

    assert await shapes(range(4)).collect() == [(0, 2), {"first": 2}]
