"""The error policy: fail, skip_item, skip_batch, retries with backoff, custom handlers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from conveyor_core import (
    EndEvent,
    ErrorHandler,
    ItemErrorEvent,
    LoggingErrorHandler,
    PipelineDefinitionError,
    RetryConfig,
    RunErrorEvent,
    batch_task,
    single_task,
)

from .conftest import VirtualSleep


class Boom(ValueError):
    pass


@pytest.mark.looptime
@pytest.mark.parametrize("mode", ["ordered", "as_completed"])
async def test_failure_reaches_the_consumer_as_itself_and_cancels_in_flight(
    mode: str, looptime: Any
) -> None:
    cancelled: list[int] = []

    @single_task
    async def work(x: int) -> int:
        if x == 3:
            await asyncio.sleep(0.01)
            raise Boom(f"bad {x}")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return x

    with pytest.raises(Boom, match="bad 3"):
        async for _ in work(range(10), mode=mode):
            pass
    assert sorted(cancelled) == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert looptime == 0.01  # the failure ended the run at once


@pytest.mark.parametrize("mode", ["ordered", "as_completed"])
async def test_failure_in_a_batch_task_fails_collect(mode: str) -> None:
    @batch_task(max_size=2)
    async def explode(xs: list[int]) -> int:
        raise KeyError("batch")

    with pytest.raises(KeyError):
        await explode([1, 2, 3], mode=mode).collect()


async def test_failure_event_names_stage_and_error() -> None:
    @single_task
    def add_ten(x: int) -> int:
        if x == 2:
            raise ValueError("no twos")
        return x + 10

    events = [e async for e in add_ten.events([1, 2, 3])]
    error, end = events[-2:]
    assert isinstance(error, RunErrorEvent)
    assert error.to_dict() == {"seq": error.seq, "stage": "add_ten", "error": "ValueError: no twos"}
    assert isinstance(end, EndEvent) and end.status == "failed"
    assert [e.seq for e in events] == list(range(len(events)))


async def test_failure_in_the_source_fails_the_run() -> None:
    def source() -> Any:
        yield 1
        raise OSError("disk gone")

    @single_task
    def same(x: int) -> int:
        return x

    with pytest.raises(OSError, match="disk gone"):
        await same(source()).collect()
    events = [e async for e in same.events(source())]
    assert isinstance(events[-2], RunErrorEvent) and events[-2].stage is None


async def test_skip_item_reports_each_skip(caplog: pytest.LogCaptureFixture) -> None:
    @single_task(on_error="skip_item")
    def odd_only(x: int) -> int:
        if x % 2 == 0:
            raise ValueError(f"even {x}")
        return x

    events = [e async for e in odd_only.events(range(6))]
    errors = [e for e in events if isinstance(e, ItemErrorEvent)]
    assert [(e.sources, e.action, e.stage) for e in errors] == [
        ([0], "skip_item", "odd_only"),
        ([2], "skip_item", "odd_only"),
        ([4], "skip_item", "odd_only"),
    ]
    assert errors[0].error == "ValueError: even 0"
    end = events[-1]
    assert isinstance(end, EndEvent) and end.status == "succeeded" and end.stats.skipped == 3
    assert await odd_only(range(6)).collect() == [1, 3, 5]
    assert "skip_item" in caplog.text


async def test_skip_batch_drops_the_whole_batch() -> None:
    @batch_task(max_size=3, on_error="skip_batch")
    async def no_negatives(xs: list[int]) -> int:
        if any(x < 0 for x in xs):
            raise ValueError("negative")
        return sum(xs)

    events = [e async for e in no_negatives.events([1, 2, 3, 4, -5, 6, 7])]
    assert [e.value for e in events if e.type == "result"] == [6, 7]
    skipped = [e for e in events if isinstance(e, ItemErrorEvent)]
    assert [(e.sources, e.action) for e in skipped] == [([3, 4, 5], "skip_batch")]


async def test_skip_item_in_a_batch_task_isolates_the_failing_items() -> None:
    @batch_task(max_size=3, on_error="skip_item")
    async def sum_batch(xs: list[int]) -> int:
        if 6 in xs:
            raise ValueError("six is bad")
        return sum(xs)

    events = [e async for e in sum_batch.events([1, 2, 3, 4, 5, 6, 7])]
    results = [(e.value, e.sources) for e in events if e.type == "result"]
    assert results == [(6, [0, 1, 2]), (9, [3, 4]), (7, [6])]
    errors = [e for e in events if isinstance(e, ItemErrorEvent)]
    assert [(e.stage, e.sources, e.action) for e in errors] == [("sum_batch", [5], "skip_item")]


async def test_retries_with_exponential_backoff(retry_clock: VirtualSleep) -> None:
    attempts: dict[int, int] = {}

    @single_task(retry_attempts=4, retry_delay=0.5, retry_max_delay=1.5)
    async def flaky(x: int) -> int:
        attempts[x] = attempts.get(x, 0) + 1
        if attempts[x] < 4:
            raise ConnectionError("try again")
        return x

    assert await flaky([7]).collect() == [7]
    assert attempts == {7: 4}
    assert retry_clock.delays == [0.5, 1.0, 1.5]


async def test_retries_without_backoff_then_fail(retry_clock: VirtualSleep) -> None:
    @single_task(retry_attempts=3, retry_delay=0.2, retry_exponential_backoff=False)
    async def broken(x: int) -> int:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await broken([1]).collect()
    assert retry_clock.delays == [0.2, 0.2]


async def test_retry_config_object(retry_clock: VirtualSleep) -> None:
    calls = 0

    @single_task(retry_config=RetryConfig(max_attempts=2, base_delay=0.1), on_error="skip_item")
    def broken(x: int) -> int:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    assert await broken([1]).collect() == []
    assert calls == 2 and retry_clock.delays == [0.1]


async def test_generator_task_retries_only_before_its_first_value(
    retry_clock: VirtualSleep,
) -> None:
    starts = 0

    @single_task(retry_attempts=3, on_error="skip_item")
    async def pages(x: int) -> Any:
        nonlocal starts
        starts += 1
        if starts == 1:
            raise ConnectionError("first start fails")
        yield x
        raise ConnectionError("mid-stream")

    events = [e async for e in pages.events([5])]
    assert [e.value for e in events if e.type == "result"] == [5]
    assert [e.action for e in events if e.type == "item_error"] == ["skip_item"]
    assert starts == 2


async def test_custom_handler_recovers_or_re_raises() -> None:
    class Handler(ErrorHandler):
        def __init__(self) -> None:
            self.seen: list[tuple[str, Any, int]] = []

        async def handle_error(
            self, error: Exception, item: Any, task_name: str, attempt: int
        ) -> tuple[bool, Any]:
            self.seen.append((task_name, item, attempt))
            if isinstance(error, ValueError):
                return True, -1
            return False, None

    handler = Handler()

    @single_task(error_handler=handler, on_error="skip_item", task_name="checked")
    def check(x: int) -> int:
        if x == 1:
            raise ValueError("handled")
        if x == 2:
            raise KeyError("not handled")
        return x

    assert await check([0, 1, 3]).collect() == [0, -1, 3]
    events = [e async for e in check.events([0, 1, 3])]
    assert [e.action for e in events if e.type == "item_error"] == ["handled"]
    # (False, _) re-raises the error, whatever on_error says
    with pytest.raises(KeyError, match="not handled"):
        await check([0, 2, 3]).collect()
    assert handler.seen[-1] == ("checked", 2, 1)


async def test_logging_handler_logs_and_goes_on_with_its_replacement(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @single_task(error_handler=LoggingErrorHandler(replacement_value=0))
    def fails(x: int) -> int:
        if x % 2:
            raise RuntimeError(f"odd {x}")
        return x

    with caplog.at_level(logging.ERROR, logger="conveyor.error_handling"):
        assert await fails([1, 2, 3]).collect() == [0, 2, 0]
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("conveyor.error_handling", logging.ERROR, "Error in fails (attempt 1): odd 1"),
        ("conveyor.error_handling", logging.ERROR, "Error in fails (attempt 1): odd 3"),
    ]
    mine = logging.getLogger("mine")
    handler = LoggingErrorHandler(mine)
    assert handler.logger is mine and handler.replacement_value is None
    assert await single_task(error_handler=handler)(fails.func)([1, 2]).collect() == [2]


def test_invalid_options_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="on_error"):
        single_task(on_error="ignore")(lambda x: x)
    with pytest.raises(ValueError, match="on_error"):
        batch_task(on_error="skip")(lambda x: x)
    with pytest.raises(ValueError, match="retry_attempts"):
        single_task(retry_attempts="3")(lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry_delay|base_delay"):
        single_task(retry_attempts=2, retry_delay=-1)(lambda x: x)
    with pytest.raises(ValueError, match="concurrency_limit"):
        single_task(concurrency_limit=-1)(lambda x: x)
    with pytest.raises(ValueError, match="min_size"):
        batch_task(max_size=2, min_size=3)(lambda xs: xs)
    with pytest.raises(ValueError, match="min_size"):
        batch_task(min_size=0)(lambda xs: xs)
    with pytest.raises(ValueError, match="max_wait"):
        batch_task(max_wait=0)(lambda xs: xs)
    with pytest.raises(PipelineDefinitionError, match="run_in_thread"):

        @single_task(run_in_thread=True)
        async def not_blocking(x: int) -> int:
            return x


@pytest.mark.parametrize("fatal", [SystemExit(3), KeyboardInterrupt()])
@pytest.mark.parametrize("kind", ["coroutine", "generator", "batch", "side_input", "source"])
async def test_system_exit_in_a_task_fails_the_run_not_the_event_loop(
    fatal: BaseException, kind: str
) -> None:
    async def boom(*_: Any) -> Any:
        await asyncio.sleep(0)
        raise fatal

    async def boom_gen(x: int) -> Any:
        yield x
        raise fatal

    def source() -> Any:
        yield 1
        raise fatal

    @single_task
    def same(x: int, *_: Any) -> int:
        return x

    pipelines = {
        "coroutine": (single_task(task_name="stage")(boom), [1, 2]),
        "generator": (single_task(task_name="stage")(boom_gen), [1, 2]),
        "batch": (batch_task(max_size=2, task_name="stage")(boom), [1, 2]),
        "side_input": (single_task(task_name="stage")(same).with_inputs(boom()), [1]),
        "source": (single_task(task_name="stage")(same), source()),
    }
    pipeline, data = pipelines[kind]
    events = [e async for e in pipeline.events(data)]
    error = events[-2]
    assert isinstance(error, RunErrorEvent) and error.exception is fatal
    assert error.stage == (None if kind == "source" else "stage")
    assert events[-1].type == "end" and events[-1].status == "failed"
    assert asyncio.get_running_loop().is_running()
    if kind != "side_input":  # a coroutine side input is awaited once, then kept
        pipeline, data = pipelines[kind]
        data = source() if kind == "source" else data
        with pytest.raises(type(fatal)):
            await pipeline(data).collect()


async def test_an_unprintable_error_is_still_described() -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("str broken")

    @single_task
    def fails(x: int) -> int:
        raise Weird()

    events = [e async for e in fails.events([1])]
    assert events[-2].to_dict()["error"] == "Weird: <unprintable message>"
    assert events[-2].to_dict()["stage"] == "fails"
