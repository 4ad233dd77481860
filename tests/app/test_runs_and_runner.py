"""app.runs and app.jobs.runner: the event contract kept whatever happens, jobs' ends."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import aclosing
from typing import Any

import pytest

from app.encoding import dumps, jsonable
from app.jobs.memory import MemoryJobStore
from app.jobs.runner import JobRunner
from app.jobs.store import JobRecord, StoreUnavailable
from app.metrics import Metrics
from app.pipelines import PipelineEntry, Registry
from app.runs import Run, RunKind, collect
from tests.app.wire import assert_run_shape


def _entry(name: str = "timeline") -> PipelineEntry:
    return Registry.load()[name]


async def _events(run: Run) -> list[dict[str, Any]]:
    async with aclosing(run.events()) as events:
        return [event async for event in events]


async def test_run_events_and_metrics() -> None:
    metrics = Metrics()
    run = Run(
        _entry("quickstart"), [1, 2, 3, 4], mode="ordered", kind=RunKind.STREAM, metrics=metrics
    )
    events = await _events(run)
    assert_run_shape(events)
    assert run.status == "succeeded" and run.inputs == 4 and run.results == 2


async def test_closing_a_run_cancels_it_and_gives_a_cancelled_end() -> None:
    run = Run(_entry(), [0.01, 30, 30], mode="ordered", kind=RunKind.STREAM, metrics=Metrics())
    events = run.events()
    first = await anext(events)
    await events.aclose()
    assert first["value"] == 0.01 and run.status == "cancelled"
    end = run.cancelled_end()
    assert end["seq"] == 1 and end["status"] == "cancelled"
    assert end["stats"]["results"] == 1 and end["stats"]["inputs"] == 3


async def test_a_run_whose_engine_raises_still_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = _entry("quickstart")

    async def broken(*args: object, **kwargs: object) -> Any:
        raise RuntimeError("engine bug")
        yield  # pragma: no cover

    monkeypatch.setattr(type(entry.pipeline), "events", broken)
    events = await _events(Run(entry, [1], mode="ordered", kind=RunKind.STREAM, metrics=Metrics()))
    assert_run_shape(events)
    assert events[0] == {
        "type": "error",
        "seq": 0,
        "stage": None,
        "error": "RuntimeError: engine bug",
    }
    assert events[1]["status"] == "failed"


async def test_a_result_without_json_form_fails_the_run() -> None:
    from tests.app.svc_pipelines import surrogate

    entry = PipelineEntry.build("surrogate", surrogate)
    metrics = Metrics()
    run = Run(entry, [1, 2, 3, 4], mode="ordered", kind=RunKind.STREAM, metrics=metrics)
    events = await _events(run)
    assert_run_shape(events)
    assert [e["type"] for e in events] == ["result", "error", "end"]
    assert events[1]["stage"] is None
    assert events[1]["error"].startswith("UnencodableResult: str: UnicodeEncodeError")
    assert events[2]["status"] == "failed" and events[2]["stats"]["results"] == 1
    assert run.status == "failed" and run.results == 1
    for event in events:
        dumps(event)


async def test_run_errors_outside_any_stage_have_an_empty_stage_label() -> None:
    from tests.app.svc_pipelines import surrogate

    async def broken_source() -> Any:
        yield 1
        raise ValueError("the source broke")

    metrics = Metrics()
    for entry, data in (
        (_entry("quickstart"), broken_source()),  # the engine: a source error, stage None
        (PipelineEntry.build("surrogate", surrogate), [2]),  # the service: UnencodableResult
        (Registry.load(["tests.app.svc_pipelines"])["fragile"], [3]),  # a stage's error
    ):
        events = await _events(Run(entry, data, mode="ordered", kind=RunKind.JOB, metrics=metrics))
        assert events[-2]["type"] == "error" and events[-1]["status"] == "failed"
    text = metrics.render().decode()
    for pipeline, stage in (("quickstart", ""), ("surrogate", ""), ("fragile", "fragile")):
        sample = f'conveyor_run_errors_total{{pipeline="{pipeline}",stage="{stage}"}} 1.0'
        assert sample in text, text
    assert 'stage="None"' not in text


async def test_collect() -> None:
    run = Run(_entry(), [0.2, 0.01], mode="as_completed", kind=RunKind.INVOKE, metrics=Metrics())
    body = await collect(run)
    assert body["status"] == "succeeded" and body["results"] == [0.01, 0.2]


class _FailingStore(MemoryJobStore):
    """Refuses the second event, as a store that went away would."""

    async def append(self, job_id: str, event: dict[str, Any]) -> None:
        if event["seq"] == 1 and event["type"] == "result":
            raise ConnectionError("store went away")
        await super().append(job_id, event)


async def test_a_job_whose_store_fails_ends_failed() -> None:
    store = _FailingStore()
    runner = JobRunner(store, Metrics(), max_running=5, lease_s=5)
    record = await runner.submit(_entry(), [0.01, 0.02, 0.03], "ordered")
    events = [e async for e in store.events(record.job_id)]
    assert [e["type"] for e in events] == ["result", "error", "end"]
    assert events[1]["error"] == "ConnectionError: store went away"
    assert events[2]["status"] == "failed"
    await asyncio.sleep(0.01)  # the task's done-callback runs after its last write
    assert runner.running == 0


async def test_lease_is_renewed_while_a_job_runs() -> None:
    renewed: list[str] = []

    class Leasing(MemoryJobStore):
        async def renew_lease(self, job_id: str) -> None:
            renewed.append(job_id)

    store = Leasing()
    runner = JobRunner(store, Metrics(), max_running=5, lease_s=0.05)
    record = await runner.submit(_entry(), [0.3], "ordered")
    _ = [e async for e in store.events(record.job_id)]
    assert renewed.count(record.job_id) >= 2


async def test_runner_shutdown_ends_jobs_cancelled() -> None:
    store = MemoryJobStore()
    runner = JobRunner(store, Metrics(), max_running=5, lease_s=5)
    started = [await runner.submit(_entry(), [30], "ordered") for _ in range(3)]
    await asyncio.sleep(0.05)
    await runner.aclose()
    for record in started:
        stored = await store.get(record.job_id)
        assert isinstance(stored, JobRecord) and stored.status == "cancelled"
    assert runner.running == 0


async def test_builtin_examples_are_deterministic() -> None:
    registry = Registry.load()
    expected = {
        "quickstart": [22, 40, 24],
        "filtering": ["Result: 90"],
        "multi_batch": [7.0, 7.0],
        "timeline": [0.1, 0.2, 0.3, 0.4, 0.5, 2.0, 0.7, 0.8],
    }
    for name, results in expected.items():
        entry = registry[name]
        run = Run(
            entry,
            await entry.input.validate_many(entry.example or []),
            mode="ordered",
            kind=RunKind.INVOKE,
            metrics=Metrics(),
        )
        assert (await collect(run))["results"] == results, name
    error_handling = registry["error_handling"]
    bodies = []
    for _ in range(2):
        run = Run(
            error_handling,
            error_handling.example or [],
            mode="ordered",
            kind=RunKind.INVOKE,
            metrics=Metrics(),
        )
        bodies.append(jsonable(await collect(run)))
    body = bodies[0]
    assert [r["items"] for r in body["results"]] == [[3, 4, 5], [6, 7, 8], [14, 15]]
    assert [r["attempts"] for r in body["results"]] == [[1, 3, 1], [1, 1, 3], [1, 1]]
    assert [r["flagged"] for r in body["results"]] == [[], [7], [14]]
    assert bodies[0]["results"] == bodies[1]["results"]
    assert sorted(e["action"] for e in body["item_errors"]) == [
        "handled",
        "handled",
        "skip_batch",
        "skip_item",
    ]
    rag = registry["rag"]
    answers = [
        await collect(
            Run(rag, rag.example or [], mode="ordered", kind=RunKind.INVOKE, metrics=Metrics())
        )
        for _ in range(2)
    ]
    assert answers[0]["results"] == answers[1]["results"]
    assert len(answers[0]["results"]) == 5  # 9 documents in batches of 4, 4, 1: the top two of each
    assert all(
        set(a) >= {"summary", "rank", "sources"} - {"sources"}
        for a in [r.model_dump() for r in answers[0]["results"]]
    )


class _Swallowing(MemoryJobStore):
    """A store whose calls swallow a cancellation, as redis-py's can on Python 3.11 (CPython
    gh-86296: `asyncio.wait_for` returns normally when the cancel lands during the send)."""

    async def renew_lease(self, job_id: str) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)  # the lease task is always in here when the job stops

    async def wait_cancel(self, job_id: str) -> None:
        try:
            await super().wait_cancel(job_id)
        except asyncio.CancelledError:  # swallowed, then it waits on: only a second cancel ends it
            await asyncio.Event().wait()


async def test_a_job_ends_although_its_helpers_swallow_their_cancellation() -> None:
    store = _Swallowing()
    runner = JobRunner(store, Metrics(), max_running=5, lease_s=0.01)
    cancelled = await runner.submit(_entry(), [30], "ordered")
    stopped = await runner.submit(_entry(), [30], "ordered")
    await asyncio.sleep(0.1)  # the lease tasks are in `renew_lease`
    await store.request_cancel(cancelled.job_id)
    await asyncio.wait_for(asyncio.wait([runner._tasks[cancelled.job_id]]), 20)
    await asyncio.wait_for(runner.aclose(), 20)
    for record in (cancelled, stopped):
        events = [e async for e in store.events(record.job_id)]
        assert events[-1]["type"] == "end" and events[-1]["status"] == "cancelled"
    assert runner.running == 0
    leftover = [
        t for t in asyncio.all_tasks() if t.cancelling() and t is not asyncio.current_task()
    ]
    assert not leftover


async def test_an_event_kept_by_a_failed_append_keeps_its_seq() -> None:
    class LostReply(MemoryJobStore):  # seq 1 is stored, but the store says it gave up
        async def append(self, job_id: str, event: dict[str, Any]) -> None:
            await super().append(job_id, event)
            if event["seq"] == 1:
                raise StoreUnavailable("reply lost", kept=True)

    store = LostReply()
    runner = JobRunner(store, Metrics(), max_running=5, lease_s=5)
    record = await runner.submit(_entry(), [0.01, 0.02, 0.03], "ordered")
    events = [e async for e in store.events(record.job_id)]
    assert [(e["seq"], e["type"]) for e in events] == [
        (0, "result"),
        (1, "result"),
        (2, "error"),
        (3, "end"),
    ]
    assert events[-1]["status"] == "failed"


async def test_a_job_whose_end_cannot_be_written_is_abandoned() -> None:
    abandoned: list[str] = []

    class Down(MemoryJobStore):
        async def append(self, job_id: str, event: dict[str, Any]) -> None:
            raise StoreUnavailable("down")

        def abandon(self, job_id: str) -> None:
            abandoned.append(job_id)

    store = Down()
    runner = JobRunner(store, Metrics(), max_running=5, lease_s=5)
    record = await runner.submit(_entry(), [0.01], "ordered")
    await asyncio.wait_for(runner.idle(), 10)
    assert abandoned == [record.job_id]


async def test_error_handling_gives_the_same_events_at_every_run_but_their_interleaving() -> None:
    """What is deterministic (README): the results and their order, and the set of item
    errors. Only the place of each `item_error` among the other events varies with timing."""
    entry = Registry.load()["error_handling"]
    seen = set()
    for _ in range(20):
        events = [event async for event in entry.pipeline.events(entry.example)]
        results = [(e.sources, e.value.model_dump()) for e in events if e.type == "result"]
        errors = sorted(
            (e.stage, tuple(e.sources), e.action) for e in events if e.type == "item_error"
        )
        seen.add((repr(results), tuple(errors)))
        assert events[-1].type == "end" and [e.seq for e in events] == list(range(len(events)))
    assert len(seen) == 1
    results, errors = seen.pop()
    assert errors == (
        ("business_rule", (7,), "handled"),
        ("business_rule", (10,), "handled"),
        ("flaky_call", (9,), "skip_item"),
        ("strict_batch", (0, 1, 2), "skip_batch"),
    )
