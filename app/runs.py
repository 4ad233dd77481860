"""Running a registered pipeline for the API: its events as wire dicts, counted and measured.

`Run.events()` is what every route consumes (stream, invoke, jobs): the engine's events, seq
0, 1, 2, ... without gaps and an `end` last, each encoded here, once (`app.encoding.encode_event`).
The engine numbers and ends every run itself: `cancel()` (a job's DELETE, the service's shutdown)
makes the run end with its own `end`, status `cancelled`; a result that has no JSON form fails
the run through the engine too (`RunEvents.cancel(error)`: an `error` event, then `end`
failed), on every route alike. When the consumer leaves early nothing more is sent (the run is
cancelled and awaited). `closing_events` gives the events of a run that could not end by
itself (the engine broke, or its job's store did).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Iterator
from contextlib import aclosing
from enum import StrEnum
from typing import Any, cast

import anyio

from conveyor_core import (
    EndEvent,
    Event,
    ItemErrorEvent,
    ResultEvent,
    RunErrorEvent,
    RunEvents,
    RunStats,
    StageEvent,
    describe_error,
)

from .encoding import EncodedEvent, UnencodableResult, encode_event, printable
from .metrics import Metrics
from .pipelines import PipelineEntry
from .telemetry import RunTrace, Tracing

__all__ = ["Collector", "Run", "RunKind", "collect"]

log = logging.getLogger("conveyor.service.runs")

CLEANUP_TIMEOUT_S = 10.0  # how long a cancelled run may take to stop its calls


class RunKind(StrEnum):
    """Who asked for a run (a label of the run metrics)."""

    STREAM = "stream"  # POST /pipelines/{name}/stream
    INVOKE = "invoke"  # POST /pipelines/{name}/invoke
    JOB = "job"  # POST /pipelines/{name}/jobs


class Run:
    """One run of `entry` over `data` (a list or an async iterable of validated items)."""

    def __init__(
        self,
        entry: PipelineEntry,
        data: Iterable[Any] | AsyncIterable[Any],
        *,
        mode: str,
        kind: RunKind,
        metrics: Metrics,
        trace: bool = False,
        tracing: Tracing | None = None,
    ) -> None:
        self.entry = entry
        self.mode = mode
        self.kind = kind
        self.trace = trace  # `stage` events on the wire
        self.tracing = tracing  # OpenTelemetry spans (app.telemetry), when configured
        self.inputs = 0  # items pulled from `data`
        self.results = 0
        self.skipped = 0
        self.last_seq = -1  # seq of the last event yielded
        self.status: str | None = None  # the end's status, or "cancelled"
        self._data = data
        self._metrics = metrics
        self._timers: dict[str, Any] = {}
        self._started = 0.0
        self._spans: RunTrace | None = None
        self._error: str | None = None  # the failure's text, for the run's span
        self._engine: RunEvents = entry.pipeline.events(
            self._counted(), mode=mode, trace=trace, on_call=self._on_call
        )

    def cancel(self) -> None:
        """Stop the run: it ends with its own `end`, status `cancelled` (see `events`)."""
        self._engine.cancel()

    async def events(self) -> AsyncGenerator[dict[str, Any], None]:
        """The run's wire events; closing this iterator cancels the run."""
        name, kind = self.entry.name, self.kind.value
        self._metrics.runs_in_progress.labels(name, kind).inc()
        self._started = time.perf_counter()
        run_events = self._engine
        engine = cast(AsyncGenerator[Event, None], run_events)
        self._metrics.track(name, run_events)
        if self.tracing is not None:
            self._spans = self.tracing.start_run(name, kind, self.mode, run_events)
        results = self._metrics.results.labels(name)
        events = engine if self._spans is None else self._started_under_span(engine)
        try:
            async for event in events:
                try:
                    wire = encode_event(event)
                except UnencodableResult as exc:  # no JSON form: the run fails here
                    log.warning("pipeline %s: %s", name, exc)
                    run_events.reject(exc)  # the run fails here: error (in its seq), then end
                    continue
                self.last_seq = event.seq
                if isinstance(event, ResultEvent):
                    if self.results == 0:
                        self._observe(self._metrics.first_result)
                        if self._spans is not None:
                            self._spans.first_result()
                    self.results += 1
                    results.inc()
                elif isinstance(event, ItemErrorEvent):
                    self._item_error(event.stage, event.action)
                elif isinstance(event, RunErrorEvent):
                    self._run_error(event.stage)
                    self._error = event.error
                elif isinstance(event, EndEvent):
                    self.status = event.status
                yield wire
                if self.status is not None:
                    return
        except Exception as exc:  # the engine broke its contract: still end the stream cleanly
            log.exception("pipeline %s: the run raised instead of failing with an event", name)
            for failure in self.closing_events(self.last_seq + 1, exc):
                self.last_seq = failure["seq"]
                yield failure
            self.status = "failed"
            self._error = printable(describe_error(exc))
            self._run_error(None)
        finally:
            with anyio.move_on_after(CLEANUP_TIMEOUT_S, shield=True):
                if events is not engine:
                    await events.aclose()
                await engine.aclose()
            self._finish()

    def closing_events(self, seq: int, failure: BaseException | None) -> list[EncodedEvent]:
        """The last events of a run that could not end by itself, from `seq` on: `end`
        cancelled, or `error` (outside any stage, `failure`) then `end` failed. The stats are
        the engine's."""
        stats = getattr(self._engine, "stats", None)  # (an engine replaced by a test has none)
        if stats is None:
            stats = RunStats(inputs=self.inputs, results=self.results, skipped=self.skipped)
        if failure is None:
            return [encode_event(EndEvent(seq, "cancelled", stats))]
        error = RunErrorEvent(seq, None, printable(describe_error(failure)), failure)
        return [encode_event(error), encode_event(EndEvent(seq + 1, "failed", stats))]

    async def _started_under_span(
        self, engine: AsyncGenerator[Event, None]
    ) -> AsyncGenerator[Event, None]:
        """The engine's events; its first step (which starts the run's tasks, in a copy of the
        current context) under the run's span, so that what the tasks call joins the trace."""
        if self._spans is not None:
            with self._spans.current():
                first = await anext(engine, None)
            if first is None:
                return
            yield first
        async for event in engine:
            yield event

    def _counted(self) -> Iterator[Any] | AsyncIterator[Any]:
        if isinstance(self._data, AsyncIterable):
            return self._count_async(self._data)
        return self._count_sync(self._data)

    def _count_sync(self, data: Iterable[Any]) -> Iterator[Any]:
        for item in data:
            self.inputs += 1
            yield item

    async def _count_async(self, data: AsyncIterable[Any]) -> AsyncIterator[Any]:
        async for item in data:
            self.inputs += 1
            yield item

    def _run_error(self, stage: str | None) -> None:
        # stage "": the run failed outside any stage (its input, or the service: see metrics)
        self._metrics.run_errors.labels(self.entry.name, stage or "").inc()

    def _item_error(self, stage: str, action: str) -> None:
        if action != "handled":
            self.skipped += 1
        self._metrics.item_errors.labels(self.entry.name, stage, action).inc()

    def _on_call(self, event: StageEvent) -> None:
        """Told of every call attempt by the engine: the stage metrics, and its span."""
        timers = self._timers.get(event.stage)
        if timers is None:
            timers = self._timers[event.stage] = self._stage_metrics(event.stage, event.kind)
        latency, queue, batch = timers
        latency.observe(event.ended_s - event.started_s)
        if event.attempt == 1:  # a retry's wait is its backoff, not a queue
            queue.observe(max(0.0, event.started_s - event.queued_s))
            if batch is not None:
                batch.observe(event.size)
        if self._spans is not None:
            self._spans.call(event)

    def _stage_metrics(self, stage: str, kind: str) -> tuple[Any, Any, Any]:
        metrics, name = self._metrics, self.entry.name
        batch = metrics.batch_size.labels(name, stage) if kind == "batch" else None
        latency = metrics.stage_latency.labels(name, stage)
        return latency, metrics.stage_queue.labels(name, stage), batch

    def _observe(self, histogram: Any) -> None:
        histogram.labels(self.entry.name, self.kind.value).observe(
            time.perf_counter() - self._started
        )

    def _finish(self) -> None:
        name, kind = self.entry.name, self.kind.value
        if self.status is None:
            self.status = "cancelled"
        if self._engine is not None:
            self._metrics.untrack(name, self._engine)
        if self._spans is not None:
            self._spans.finish(self.status, self.inputs, self.results, self._error)
            self._spans = None
        self._metrics.runs_in_progress.labels(name, kind).dec()
        self._metrics.runs.labels(name, kind, self.status).inc()
        self._metrics.inputs.labels(name).inc(self.inputs)
        self._observe(self._metrics.run_duration)
        if not log.isEnabledFor(logging.INFO):
            return
        log.info(
            "run ended",
            extra={
                "pipeline": name,
                "kind": kind,
                "mode": self.mode,
                "status": self.status,
                "inputs": self.inputs,
                "results": self.results,
                "elapsed_s": round(time.perf_counter() - self._started, 6),
            },
        )


class Collector:
    """The body of `POST /pipelines/{name}/invoke`, gathered event by event."""

    def __init__(self, trace: bool = False) -> None:
        self.results: list[Any] = []
        self.item_errors: list[dict[str, Any]] = []
        self.stages: list[dict[str, Any]] | None = [] if trace else None  # `stage` events
        self.error: dict[str, Any] | None = None
        self.end: dict[str, Any] | None = None

    def add(self, event: dict[str, Any]) -> None:
        fields = {key: value for key, value in event.items() if key != "type"}
        kind = event["type"]
        if kind == "result":
            self.results.append(event["value"])
        elif kind == "item_error":
            self.item_errors.append(fields)
        elif kind == "stage":
            if self.stages is not None:
                self.stages.append(fields)
        elif kind == "error":
            self.error = fields
        elif kind == "end":
            self.end = fields

    def body(self) -> dict[str, Any]:
        """The body so far (a run that has not ended, its client gone: status cancelled)."""
        last = self.end or {}
        body = {
            "status": last.get("status", "cancelled"),
            "results": self.results,
            "stats": last.get("stats"),
            "item_errors": self.item_errors,
            "error": self.error,
        }
        if self.stages is not None:
            body["stages"] = self.stages
        return body


async def collect(run: Run, into: Collector | None = None) -> dict[str, Any]:
    """Run to the end; the body of `POST /pipelines/{name}/invoke` (gathered `into`)."""
    collector = into or Collector(run.trace)
    async with aclosing(run.events()) as events:
        async for event in events:
            collector.add(event)
    return collector.body()
