"""Functions and classes that executor tests run elsewhere (a process pool, Ray): defined at
module level so workers import them by name, and telling the test what happened through files
(a worker's memory is not the test's).

`summary()` runs a pipeline and reduces its events to what must not depend on where the calls
ran: the results in order with their sources, the item errors, the end's status and counts, and
how many calls each stage's timer saw.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from conveyor_core import (
    BatchTask,
    EndEvent,
    ErrorHandler,
    Executor,
    ItemErrorEvent,
    Pipeline,
    ResultEvent,
    RunErrorEvent,
    SingleTask,
)

# -- the pipeline every executor must run alike ----------------------------------------------


def flaky_double(x: int, state: str) -> int:
    """Fails the first attempt on each item (a retry succeeds), then doubles it."""
    marker = Path(state) / f"flaky-{x}"
    if not marker.exists():
        marker.touch()
        raise OSError(f"first attempt on {x}")
    return x * 2


def no_six(x: int) -> int:
    if x == 6:
        raise ValueError("six is skipped")
    return x


def sum_unless_15(batch: list[int]) -> int:
    if 15 in batch:
        raise KeyError("a batch with 15")
    return sum(batch)


def no_odd_members(batch: list[int]) -> list[int]:
    """Fails any batch holding an odd number: skip_item probes the members one by one."""
    if any(value % 2 for value in batch):
        raise ValueError("odd")
    return [value + 1 for value in batch]


def handled_on_20(x: int) -> int:
    """Fails on 20: the handler (`Recover`) gives -1 instead."""
    if x == 20:
        raise RuntimeError("20 is handled")
    return x


class Recover(ErrorHandler):
    async def handle_error(
        self, error: Exception, item: Any, task_name: str, attempt: int
    ) -> tuple[bool, Any]:
        return True, -1


def make_pipeline(executor: str | Executor | None, state: str, batches: bool = True) -> Pipeline:
    """Retries, skip_item, skip_batch, batch probing, an error handler, side inputs.

    `batches=False`: the single tasks only (as completed, what a batch holds depends on timing).
    """
    options: dict[str, Any] = {"executor": executor}
    stages = (
        SingleTask(flaky_double, retry_attempts=2, **options).with_inputs(state),
        SingleTask(no_six, on_error="skip_item", task_name="no_six", **options),
        SingleTask(handled_on_20, error_handler=Recover(), **options),
        BatchTask(no_odd_members, max_size=2, on_error="skip_item", **options),  # -1 is odd
        BatchTask(sum_unless_15, max_size=3, on_error="skip_batch", **options),
    )
    return Pipeline(*(stages if batches else stages[:3]))


async def summary(pipeline: Pipeline, data: Any, mode: str = "ordered") -> dict[str, Any]:
    timed: Counter[str] = Counter()
    results, errors, end, failure = [], [], None, None
    events = pipeline.events(data, mode=mode, stage_timer=lambda stage, _: timed.update([stage]))
    async for event in events:
        if isinstance(event, ResultEvent):
            results.append((event.value, event.sources))
        elif isinstance(event, ItemErrorEvent):
            errors.append((event.stage, tuple(event.sources), event.error, event.action))
        elif isinstance(event, RunErrorEvent):
            failure = (event.stage, event.error)
        elif isinstance(event, EndEvent):
            stats = event.stats
            end = (event.status, stats.inputs, stats.results, stats.skipped, stats.dropped)
    if mode != "ordered":
        results.sort(key=lambda result: result[1])
    return {
        "results": results,
        "errors": sorted(errors),
        "failure": failure,
        "end": end,
        "timed": dict(timed),
    }


# -- calls that tell what they do -------------------------------------------------------------


def ticking(seconds: float, where: str) -> float:
    """Sleeps `seconds` in steps, touching a tick file at each; writes `done-<seconds>-...` if
    it ends.

    A tick file's time says when the call last ran; a done file that it was not stopped.
    """
    folder = Path(where)
    tick = folder / f"tick-{os.getpid()}-{time.monotonic_ns()}"
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tick.with_suffix(".new").write_text(str(time.time()))
        os.replace(tick.with_suffix(".new"), tick)  # whole, even when killed mid-write
        time.sleep(0.05)
    (folder / f"done-{seconds}-{tick.name}").touch()
    return seconds


def ticking_or_failing(seconds: float, where: str) -> float:
    """A negative item fails, -`seconds` after another call began ticking; others tick."""
    if seconds < 0:
        deadline = time.monotonic() + 60
        while not any(Path(where).glob("tick-*")) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(-seconds)
        raise ValueError(f"negative: {seconds}")
    return ticking(seconds, where)


def stubborn(seconds: float, where: str) -> float:
    """Like `ticking`, but goes on through interruptions: only killing its worker stops it."""
    end = time.monotonic() + seconds
    while True:
        try:
            return ticking(max(end - time.monotonic(), 0.0), where)
        except BaseException:  # noqa: B036 - the point: it ignores CallInterrupted
            continue


def pid_then_sleep(seconds: float, where: str) -> int:
    """Writes its worker's pid to `where/pid-<n>` (first attempt) and sleeps `seconds`."""
    folder = Path(where)
    attempt = len(list(folder.glob("pid-*")))
    (folder / f"pid-{attempt}").write_text(str(os.getpid()))
    if attempt == 0:
        time.sleep(seconds)
    return os.getpid()


def in_flight_span(seconds: float, where: str) -> float:
    """Records its start and end times (a file per call) to count calls at once."""
    start = time.time()
    time.sleep(seconds)
    Path(where, f"span-{os.getpid()}-{time.monotonic_ns()}").write_text(f"{start} {time.time()}")
    return seconds


def most_at_once(where: str) -> int:
    """The largest number of `in_flight_span` calls that overlapped in time."""
    marks: list[tuple[float, int]] = []
    for path in Path(where).glob("span-*"):
        start, end = map(float, path.read_text().split())
        marks += [(start, 1), (end, -1)]
    running = top = 0
    for _, step in sorted(marks, key=lambda mark: (mark[0], mark[1])):
        running += step
        top = max(top, running)
    return top


def raise_value_error(x: int) -> int:
    if x == 2:
        raise ValueError(f"bad item {x}")
    return x


class CustomError(Exception):
    """An exception type of the user's own, with its own message."""


def raise_custom(x: int) -> int:
    raise CustomError(f"custom {x}")


class Counted:
    """A decorated-class stand-in: counts its own calls; says which process it lives in."""

    instances = 0

    def __init__(self) -> None:
        Counted.instances += 1
        self.calls = 0

    def __call__(self, x: int) -> tuple[int, int, int]:
        self.calls += 1
        return os.getpid(), id(self), self.calls


def worker_pid(x: Any) -> int:
    return os.getpid()


def square(x: int) -> int:
    return x * x


async def async_square(x: int) -> int:
    return x * x


def total(batch: list[int]) -> int:
    return sum(batch)


def spin(batch: list[int], seconds: float) -> int:
    """Pure-Python CPU work for about `seconds` (the GIL held throughout)."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return sum(batch)


def ticked(where: str) -> int:
    """How many calls have ticked in `where`."""
    return len([p for p in Path(where).glob("tick-*") if not p.suffix])


def last_tick(where: str) -> float:
    """When any call last ticked in `where` (wall clock), 0.0 if none did."""
    ticks = [float(p.read_text()) for p in Path(where).glob("tick-*") if not p.suffix]
    return max(ticks, default=0.0)


def finished(where: str, seconds: float) -> list[str]:
    """The calls of `seconds` that ended in `where`."""
    return sorted(p.name for p in Path(where).glob(f"done-{seconds}-*"))


def ticking_pair(pair: list[Any]) -> float:
    """`ticking(seconds, where)` for an item `[seconds, where]` (a service's JSON input)."""
    seconds, where = pair
    return ticking(float(seconds), str(where))
