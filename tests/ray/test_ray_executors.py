"""RayActors and RayTasks against a real local Ray (one for the session, see conftest).

Scenarios that wait run concurrently, each with its own executor and folder, so that the
whole module costs a few seconds past Ray's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import ray

from conveyor_core import (
    BatchTask,
    EndEvent,
    Executor,
    ItemErrorEvent,
    RunErrorEvent,
    SingleTask,
    WorkerLost,
    single_task,
)
from conveyor_core.ray import RayActors, RayTasks
from tests.core import executor_tasks as et
from tests.core.test_executors import (
    LONG,
    STOPPED_WITHIN_S,
    assert_stopped,
    cancel_run,
    started,
)

pytestmark = pytest.mark.usefixtures("ray_cluster")

SMALL = {"num_cpus": 0.25}  # the session's Ray has 4 CPUs: actors hold theirs while they live
TASKS = {"num_cpus": 1}  # at most 4 tasks at once: Ray starts no more worker processes than that


@contextlib.asynccontextmanager
async def closing(*executors: Executor) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for executor in executors:
            await executor.aclose()


def describe(executor: Executor) -> str:
    return executor.describe()


async def test_ray_runs_match_local_runs(tmp_path: Path) -> None:
    actors, tasks = RayActors(1, **SMALL), RayTasks(**TASKS)
    async with closing(actors, tasks):
        outcomes = {}
        for name, executor in (("local", None), ("actors", actors), ("tasks", tasks)):
            state = tmp_path / name
            state.mkdir()
            outcomes[name] = await et.summary(et.make_pipeline(executor, str(state)), range(30))
    assert outcomes["local"]["end"][0] == "succeeded" and outcomes["local"]["errors"]
    assert outcomes["actors"] == outcomes["local"]
    assert outcomes["tasks"] == outcomes["local"]


@pytest.mark.parametrize("kind", ["actors", "tasks"])
async def test_a_remote_exception_is_the_tasks_own(kind: str) -> None:
    executor = RayActors(1, **SMALL) if kind == "actors" else RayTasks(**TASKS)
    task = SingleTask(et.raise_value_error, executor=executor)
    async with closing(executor):
        with pytest.raises(ValueError) as caught:
            await task(range(5)).collect()
        assert type(caught.value) is ValueError  # not a RayTaskError
        assert str(caught.value) == "bad item 2"
        assert "raise_value_error" in caught.value.__notes__[0]
        with pytest.raises(et.CustomError, match="^custom 1"):
            await SingleTask(et.raise_custom, executor=executor)([1]).collect()
        events = [event async for event in task.events(range(5), mode="as_completed")]
    (error,) = [event for event in events if isinstance(event, RunErrorEvent)]
    assert (error.stage, error.error) == ("raise_value_error", "ValueError: bad item 2")
    assert isinstance(events[-1], EndEvent) and events[-1].status == "failed"


async def test_calls_run_in_ray_workers_and_a_class_once_per_actor() -> None:
    actors, tasks = RayActors(2, **SMALL), RayTasks(**TASKS)
    async with closing(actors, tasks):
        pids = await SingleTask(et.worker_pid, executor=tasks)(range(4)).collect()
        assert os.getpid() not in pids
        counted = single_task(executor=actors)(et.Counted)
        first = await counted(range(12)).collect()
        second = await counted(range(4)).collect()
        assert await BatchTask(et.total, max_size=4, executor=actors)(range(10)).collect() == [
            6,
            22,
            17,
        ]
        assert await SingleTask(et.async_square, executor=tasks)(range(3)).collect() == [0, 1, 4]
        assert len(actors.actor_handles()) == 4  # two per task
    instances = {(pid, instance) for pid, instance, _ in first + second}
    assert 1 <= len(instances) <= 2 and os.getpid() not in {pid for pid, _ in instances}
    calls: dict[tuple[int, int], list[int]] = {}
    for pid, instance, count in first + second:
        calls.setdefault((pid, instance), []).append(count)
    for counts in calls.values():  # each actor's one instance counts its own calls
        assert sorted(counts) == list(range(1, len(counts) + 1))


async def test_cancellation_stops_ray_calls(tmp_path: Path) -> None:
    """aclose, break and a failure under "fail", on actors and on tasks, all at once."""
    scenarios = []
    for kind in ("actors", "tasks"):
        for how in ("aclose", "break", "fail"):
            where = tmp_path / f"{kind}-{how}"
            where.mkdir()
            executor = RayActors(2, **SMALL) if kind == "actors" else RayTasks(**TASKS)
            task = SingleTask(et.ticking_or_failing, executor=executor).with_inputs(str(where))
            scenarios.append((executor, where, cancel_run(task, how, where)))
    cancelled = await asyncio.gather(*(run for _, _, run in scenarios))
    for (executor, where, _), cancelled_at in zip(scenarios, cancelled, strict=True):
        await assert_stopped(where, cancelled_at)
        await executor.aclose()


async def test_a_killed_actor_fails_its_call_with_worker_lost(tmp_path: Path) -> None:
    """ray.kill mid-call: retried on a new actor; with no retry left, skip or fail decides."""

    async def run(name: str, **options: Any) -> list[Any]:
        where = tmp_path / name
        where.mkdir()
        executor = RayActors(1, **SMALL)
        task = SingleTask(et.pid_then_sleep, executor=executor, **options).with_inputs(str(where))
        async with closing(executor):
            events = task.events([10.0])
            killer = asyncio.create_task(kill_when_started(executor, where))
            collected = [event async for event in events]
            await killer
        return collected

    retried, skipped, failed = await asyncio.wait_for(
        asyncio.gather(
            run("retried", retry_attempts=2),
            run("skipped", on_error="skip_item"),
            run("failed"),
        ),
        timeout=60,
    )
    assert [type(event).__name__ for event in retried] == ["ResultEvent", "EndEvent"]
    assert retried[0].value != int((tmp_path / "retried" / "pid-0").read_text())
    (skip,) = [event for event in skipped if isinstance(event, ItemErrorEvent)]
    (fail,) = [event for event in failed if isinstance(event, RunErrorEvent)]
    for error in (skip, fail):
        assert error.error.startswith(
            "WorkerLost: stage 'pid_then_sleep': the Ray actor running the call was lost "
            "(ActorDiedError"
        )
        assert isinstance(error.exception, WorkerLost)
    assert (skipped[-1].status, skipped[-1].stats.skipped) == ("succeeded", 1)
    assert failed[-1].status == "failed" and isinstance(failed[-1], EndEvent)


async def kill_when_started(executor: RayActors, where: Path) -> None:
    deadline = time.monotonic() + 30
    while not (where / "pid-0").exists():  # noqa: ASYNC110 - only the file tells
        assert time.monotonic() < deadline, "the call never started"
        await asyncio.sleep(0.02)
    (actor,) = executor.actor_handles()
    ray.kill(actor)


async def test_at_most_replicas_times_max_concurrency_calls_at_once(tmp_path: Path) -> None:
    actors = RayActors(2, max_concurrency=2, **SMALL)
    tasks = RayTasks(max_in_flight=3, **TASKS)
    assert (actors.max_in_flight, tasks.max_in_flight) == (4, 3)
    assert (describe(actors), describe(tasks)) == ("ray-actors x2", "ray-tasks")
    async with closing(actors, tasks):
        for name, executor, bound in (("actors", actors, 4), ("tasks", tasks, 3)):
            where = tmp_path / name
            where.mkdir()
            task = SingleTask(et.in_flight_span, executor=executor).with_inputs(str(where))
            assert task.effective_concurrency_limit == bound
            assert await task([0.3] * 12).collect() == [0.3] * 12
            assert 2 <= et.most_at_once(str(where)) <= bound


async def test_a_stubborn_actor_call_is_stopped_by_killing_its_actor(tmp_path: Path) -> None:
    executor = RayActors(1, cancel_grace_s=0.5, **SMALL)
    task = SingleTask(et.stubborn, executor=executor).with_inputs(str(tmp_path))
    async with closing(executor):
        consumer = asyncio.ensure_future(task([LONG]).collect())
        await started(tmp_path)
        cancelled_at = time.time()
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert time.time() - cancelled_at < STOPPED_WITHIN_S
        await assert_stopped(tmp_path, cancelled_at)
        square = SingleTask(et.square, executor=executor)
        assert await square(range(3)).collect() == [0, 1, 4]  # on a new actor


async def test_an_actor_the_cluster_cannot_place_fails_clearly() -> None:
    executor = RayActors(1, num_cpus=64, start_timeout_s=1.0)
    events = SingleTask(et.square, executor=executor, on_error="skip_item").events([1])
    async with closing(executor):
        collected = [event async for event in events]
    (error,) = [event for event in collected if isinstance(event, ItemErrorEvent)]
    assert error.error.startswith(
        "WorkerLost: stage 'square': a Ray actor did not start within 1 s: does the cluster "
        "have {'num_cpus': 64, 'num_gpus': 0} free"
    )
    assert isinstance(collected[-1], EndEvent) and collected[-1].status == "succeeded"
