"""Executors: the protocol, "thread" and "process" (a real process pool), declared and run.

The process pool runs the calls of tests.core.executor_tasks in spawned processes; what they
did comes back through files. Cancellation is checked by when calls last ticked: no call of a
cancelled run may still run 2 s after the cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor_core import (
    BatchTask,
    CallTarget,
    EndEvent,
    Executor,
    ItemErrorEvent,
    PipelineDefinitionError,
    ProcessExecutor,
    RunErrorEvent,
    SingleTask,
    ThreadExecutor,
    WorkerLost,
    single_task,
)
from tests.core import executor_tasks as et

STOPPED_WITHIN_S = 2.0
LONG = 30.0  # a call's natural length: one still ticking after STOPPED_WITHIN_S was not stopped


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessExecutor]:
    """Two worker processes shared by this module's tests (spawned once)."""
    executor = ProcessExecutor(2)
    yield executor
    asyncio.run(executor.aclose())


# -- declaration ------------------------------------------------------------------------------


def test_executor_strings_and_run_in_thread() -> None:
    assert single_task(executor="thread")(et.square).executor.describe() == "thread"
    assert single_task(run_in_thread=True)(et.square).run_in_thread
    assert isinstance(single_task(run_in_thread=True)(et.square).executor, ThreadExecutor)
    process = single_task(executor="process")(et.square).executor
    assert process is single_task(executor="process")(et.total).executor  # one shared pool
    assert process.describe() == "process" and process.max_in_flight == os.cpu_count()
    assert single_task(et.square).executor is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"executor": "gpu"}, "executor must be 'thread', 'process' or an Executor"),
        ({"executor": "ray"}, "from conveyor_core.ray import RayActors"),
        ({"executor": "process", "run_in_thread": True}, "run_in_thread=True means"),
        ({"executor": 3}, "executor must be"),
    ],
)
def test_bad_executor_options_fail_at_declaration(options: dict[str, Any], message: str) -> None:
    with pytest.raises(PipelineDefinitionError, match=message):
        single_task(**options)(et.square)


def test_what_a_process_pool_cannot_run_fails_at_declaration() -> None:
    def local(x: int) -> int:
        return x

    def gen(x: int) -> Iterator[int]:
        yield x

    with pytest.raises(PipelineDefinitionError, match="defined at module level"):
        single_task(executor="process")(local)
    with pytest.raises(PipelineDefinitionError, match="defined at module level"):
        single_task(executor="process")(lambda x: x)
    with pytest.raises(PipelineDefinitionError, match="does not run generator functions"):
        single_task(executor=ProcessExecutor(1))(gen)
    with pytest.raises(PipelineDefinitionError, match="run_in_thread"):
        single_task(executor="thread")(et.async_square)
    with pytest.raises(PipelineDefinitionError, match="max_workers"):
        ProcessExecutor(0)


def test_ray_executors_without_ray_give_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import conveyor_core.ray as cray

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    with pytest.raises(PipelineDefinitionError) as caught:
        cray.RayActors(2)
    assert str(caught.value) == (
        'RayActors needs Ray, which is not installed: pip install "conveyor-streaming-core[ray]"'
    )
    with pytest.raises(PipelineDefinitionError, match=r"conveyor-streaming-core\[ray\]"):
        cray.RayTasks()


def test_importing_the_engine_or_declaring_ray_stages_does_not_import_ray() -> None:
    code = (
        "import sys, conveyor_core, conveyor_core.ray as r\n"
        "from conveyor_core import single_task\n"
        "single_task(executor=r.RayActors(2))(abs)\n"
        "assert 'ray' not in sys.modules, 'ray imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_effective_concurrency_limit_is_the_lower_bound() -> None:
    two = ProcessExecutor(2)
    assert single_task(executor=two)(et.square).effective_concurrency_limit == 2
    lower = single_task(executor=two, concurrency_limit=1)(et.square)
    assert lower.effective_concurrency_limit == 1
    assert single_task(concurrency_limit=5)(et.square).effective_concurrency_limit == 5
    assert single_task(executor="thread")(et.square).effective_concurrency_limit is None


# -- the protocol, with an executor of the test's own -------------------------------------------


class Recording(Executor):
    """Runs calls in the loop after a pause, counting how many are in flight at once."""

    def __init__(self, bound: int | None) -> None:
        self.max_in_flight = bound
        self.active = self.most = 0
        self.targets: list[CallTarget] = []
        self.closed = 0

    def describe(self) -> str:
        return "recording"

    def bind(self, target: CallTarget) -> Callable[[Any], Awaitable[Any]]:
        self.targets.append(target)
        func = target.local_callable()

        async def call(item: Any) -> Any:
            self.active += 1
            self.most = max(self.most, self.active)
            try:
                await asyncio.sleep(0.01)
                return func(item, *target.args, **target.kwargs)
            finally:
                self.active -= 1

        return call

    async def aclose(self) -> None:
        self.closed += 1


async def test_a_custom_executor_gets_the_target_and_its_bound_holds() -> None:
    executor = Recording(3)
    task = SingleTask(et.flaky_double, executor=executor, retry_attempts=2)
    state = "/nonexistent-never-used"
    assert task.effective_concurrency_limit == 3
    pipeline = task.with_inputs(state)
    with pytest.raises(FileNotFoundError):  # the side input reached the call
        await pipeline(range(2)).collect()
    square = SingleTask(et.square, executor=executor)
    assert await square(range(40)).collect() == [x * x for x in range(40)]
    assert executor.most == 3
    target = executor.targets[-1]
    assert (target.name, target.func, target.is_class) == ("square", et.square, False)
    assert target.args == ()
    assert executor.targets[0].args == (state,)


async def test_a_decorated_class_runs_locally_once_per_task() -> None:
    et.Counted.instances = 0
    task = single_task(et.Counted)
    first = await task(range(3)).collect()
    second = await task(range(2)).collect()
    assert et.Counted.instances == 1
    assert [calls for _, _, calls in first + second] == [1, 2, 3, 4, 5]
    assert task.name == "Counted" and task.input_type is int
    assert single_task(int).is_class is False  # a type used as a function stays one


# -- the same results and events wherever calls run ---------------------------------------------


@pytest.mark.parametrize("mode", ["ordered", "as_completed"])
async def test_thread_and_process_runs_match_local_runs(
    tmp_path: Path, pool: ProcessExecutor, mode: str
) -> None:
    outcomes = {}
    for name, executor in (("local", None), ("thread", "thread"), ("process", pool)):
        state = tmp_path / f"{name}-{mode}"
        state.mkdir()
        pipeline = et.make_pipeline(executor, str(state), batches=mode == "ordered")
        outcomes[name] = await et.summary(pipeline, range(30), mode)
    local = outcomes["local"]
    assert local["results"] and local["errors"] and local["end"][0] == "succeeded"
    actions = {"skip_item", "handled"} | ({"skip_batch"} if mode == "ordered" else set())
    assert {action for *_, action in local["errors"]} == actions
    assert outcomes["thread"] == local
    assert outcomes["process"] == local


async def test_a_remote_exception_reaches_the_consumer_as_itself(pool: ProcessExecutor) -> None:
    task = SingleTask(et.raise_value_error, executor=pool)
    for mode in ("ordered", "as_completed"):
        with pytest.raises(ValueError, match="^bad item 2$") as caught:
            await task(range(5), mode=mode).collect()
        assert type(caught.value) is ValueError
    custom = SingleTask(et.raise_custom, executor=pool)
    with pytest.raises(et.CustomError, match="custom 0"):
        await custom([0]).collect()
    events = [event async for event in task.events(range(5))]
    error = next(event for event in events if isinstance(event, RunErrorEvent))
    assert (error.stage, error.error) == ("raise_value_error", "ValueError: bad item 2")
    assert isinstance(events[-1], EndEvent) and events[-1].status == "failed"


async def test_process_calls_run_in_other_processes_and_async_functions_too(
    pool: ProcessExecutor,
) -> None:
    pids = await SingleTask(et.worker_pid, executor=pool)(range(8)).collect()
    assert os.getpid() not in pids
    assert await SingleTask(et.async_square, executor=pool)(range(4)).collect() == [0, 1, 4, 9]
    assert await BatchTask(et.total, max_size=4, executor=pool)(range(10)).collect() == [6, 22, 17]


async def test_a_decorated_class_is_instantiated_once_per_worker() -> None:
    one = ProcessExecutor(1)
    try:
        task = single_task(executor=one)(et.Counted)
        first = await task(range(4)).collect()
        second = await task(range(3)).collect()
    finally:
        await one.aclose()
    assert len({(pid, instance) for pid, instance, _ in first + second}) == 1
    assert [calls for *_, calls in first + second] == list(range(1, 8))
    assert first[0][0] != os.getpid()


# -- cancellation crosses the boundary --------------------------------------------------------


async def assert_stopped(where: Path, cancelled_at: float) -> None:
    """No call may tick (every 0.05 s while it runs) 2 s after the cancellation."""
    await asyncio.sleep(STOPPED_WITHIN_S + 0.5 - (time.time() - cancelled_at))
    assert et.finished(str(where), LONG) == []
    assert et.last_tick(str(where)) > 0  # they did start
    assert et.last_tick(str(where)) < cancelled_at + STOPPED_WITHIN_S


async def started(where: Path, count: int = 1) -> None:
    """Wait until `count` calls have ticked in `where`."""

    while et.ticked(str(where)) < count:  # noqa: ASYNC110 - the calls run elsewhere: only files tell
        await asyncio.sleep(0.02)


async def cancel_run(task: Any, how: str, where: Path) -> float:
    """Start a run of `task` with long calls, cancel it `how`; the time it was cancelled."""
    if how == "fail":  # the item -0.5 fails after 0.5 s, while the other is running
        with pytest.raises(ValueError, match="negative"):
            await task([LONG, -0.5]).collect()
        return time.time()
    if how == "break":
        async for _ in task([0.2, LONG, LONG]):
            break  # the long calls are running
        return time.time()
    stream = task([LONG, LONG])
    consumer = asyncio.ensure_future(stream.collect())
    await started(where, 2)
    cancelled_at = time.time()
    if how == "aclose":
        await stream.aclose()
    else:
        consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer
    return cancelled_at


@pytest.mark.parametrize("how", ["aclose", "break", "fail"])  # a cancelled consumer: below
async def test_cancelling_a_run_stops_its_process_calls(
    tmp_path: Path, pool: ProcessExecutor, how: str
) -> None:
    task = SingleTask(et.ticking_or_failing, executor=pool).with_inputs(str(tmp_path))
    cancelled_at = await cancel_run(task, how, tmp_path)
    await assert_stopped(tmp_path, cancelled_at)
    assert await SingleTask(et.square, executor=pool)(range(4)).collect() == [0, 1, 4, 9]


async def test_a_call_that_ignores_interruption_has_its_worker_killed(tmp_path: Path) -> None:
    executor = ProcessExecutor(2, cancel_grace_s=0.5)
    try:
        stubborn = SingleTask(et.stubborn, executor=executor).with_inputs(str(tmp_path / "a"))
        other = SingleTask(et.square, executor=executor)
        (tmp_path / "a").mkdir()
        stream = stubborn([LONG])
        consumer = asyncio.ensure_future(stream.collect())
        await started(tmp_path / "a")
        cancelled_at = time.time()
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert time.time() - cancelled_at < STOPPED_WITHIN_S
        await assert_stopped(tmp_path / "a", cancelled_at)
        assert await other(range(5)).collect() == [0, 1, 4, 9, 16]  # a new pool took over
    finally:
        await executor.aclose()


# -- faults ------------------------------------------------------------------------------------


def kill_first_worker(where: Path) -> None:
    pid_file = where / "pid-0"
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the call never started"
        time.sleep(0.02)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)


async def run_with_a_killed_worker(where: Path, **options: Any) -> list[Any]:
    executor = ProcessExecutor(1)
    try:
        task = SingleTask(et.pid_then_sleep, executor=executor, **options)
        events = task.with_inputs(str(where)).events([5.0])
        killer = asyncio.create_task(asyncio.to_thread(kill_first_worker, where))
        collected = [event async for event in events]
        await killer
        return collected
    finally:
        await executor.aclose()


async def test_a_dead_worker_is_worker_lost_and_the_retry_goes_to_a_new_one(
    tmp_path: Path,
) -> None:
    events = await run_with_a_killed_worker(tmp_path, retry_attempts=2)
    first_pid = int((tmp_path / "pid-0").read_text())
    assert [type(e).__name__ for e in events] == ["ResultEvent", "EndEvent"]
    assert events[0].value != first_pid  # type: ignore[union-attr]
    assert events[-1].status == "succeeded"  # type: ignore[union-attr]


@pytest.mark.parametrize("on_error", ["skip_item", "fail"])
async def test_with_no_retry_left_the_policy_decides_about_worker_lost(
    tmp_path: Path, on_error: str
) -> None:
    events = await run_with_a_killed_worker(tmp_path, on_error=on_error)
    end = events[-1]
    assert isinstance(end, EndEvent)
    if on_error == "skip_item":
        (error,) = [e for e in events if isinstance(e, ItemErrorEvent)]
        assert end.status == "succeeded" and end.stats.skipped == 1
    else:
        (error,) = [e for e in events if isinstance(e, RunErrorEvent)]  # type: ignore[assignment]
        assert end.status == "failed"
    assert error.error.startswith("WorkerLost: stage 'pid_then_sleep': a worker process died")
    assert isinstance(error.exception, WorkerLost)


# -- stage timings -------------------------------------------------------------------------------


async def test_stage_timer_measures_remote_calls(pool: ProcessExecutor) -> None:
    timings: list[tuple[str, float]] = []
    task = SingleTask(et.square, executor=pool)
    events: AsyncIterator[Any] = task.events(
        range(3), stage_timer=lambda stage, seconds: timings.append((stage, seconds))
    )
    assert len([e async for e in events]) == 4
    assert [stage for stage, _ in timings] == ["square"] * 3
    assert all(duration > 0 for _, duration in timings)


class FakeRay:
    """Stands in for the ray module in `connect`: records what `ray.init` was given."""

    def __init__(self, initialized: bool = False) -> None:
        self.initialized = initialized
        self.inits: list[dict[str, Any]] = []

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **options: Any) -> None:
        self.inits.append(options)
        self.initialized = True


@pytest.mark.parametrize(
    ("address", "environment", "expected"),
    [
        ("ray://head:10001", None, {"address": "ray://head:10001"}),
        (None, "10.0.0.5:6379", {"address": "10.0.0.5:6379"}),
        (None, None, {"num_cpus": os.cpu_count(), "include_dashboard": False}),
    ],
)
def test_connect_joins_the_given_cluster_or_starts_a_local_ray(
    monkeypatch: pytest.MonkeyPatch,
    address: str | None,
    environment: str | None,
    expected: dict[str, Any],
) -> None:
    import conveyor_core.ray as cray

    fake = FakeRay()
    monkeypatch.setattr(cray, "_import_ray", lambda: fake)
    if environment is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", environment)
    cray.connect(address)
    cray.connect(address)  # connected: nothing more
    (options,) = fake.inits
    assert expected.items() <= options.items()
    if "address" in expected:
        assert set(options) == {"address"}
    else:
        assert options["object_store_memory"] == cray.LOCAL_RAY["object_store_memory"]
