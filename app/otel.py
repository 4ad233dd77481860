"""The service's OpenTelemetry traces (imported only when tracing is on: see app.telemetry).

A request that runs a pipeline gives one trace:

    POST /pipelines/{name}/stream         the HTTP span (opentelemetry-instrumentation-fastapi)
    └── run <pipeline>                    mode, inputs, results, status; event "first result"
        ├── stage <name>                  one per call attempt: kind, sources, attempt, outcome
        └── stage <name>                  a call fed by others links their spans (a batch: one
                                          link per member's producing call)

A job's run span is a child of its POST's span and outlives it (it also links to it). Stage
spans are built after the fact, from the engine's `StageEvent`s, with their own start and end
times (the run's wall-clock start plus the event's seconds). The run's span is the current one
while its tasks start, so that what they call (a `RemotePipeline`, any instrumented client)
joins the trace.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from conveyor_core import StageEvent

if TYPE_CHECKING:
    from fastapi import FastAPI

    from conveyor_core import RunEvents

__all__ = ["MAX_SOURCES", "OtelRunTrace", "OtelTracing"]

log = logging.getLogger("conveyor.service.telemetry")

SCOPE = "conveyor"
DEFAULT_SERVICE_NAME = "conveyor-streaming"
MAX_SOURCES = 64  # sources put on a stage span (conveyor.sources.count has them all)
_EXPORTERS = "opentelemetry_traces_exporter"  # the entry points the SDK's exporters register


class OtelTracing:
    """Spans of requests and runs, from one tracer provider."""

    def __init__(
        self, provider: trace.TracerProvider, *, owned: bool = False, link_window: int = 65536
    ) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer(SCOPE)
        self.link_window = link_window
        self._owned = owned  # built here from the environment: shut down with the app

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], *, link_window: int) -> OtelTracing:
        """A provider with the exporters of OTEL_TRACES_EXPORTER, each behind a batch processor
        (the SDK reads OTEL_BSP_*, OTEL_TRACES_SAMPLER and the resource variables itself)."""
        attributes = {}
        if "OTEL_SERVICE_NAME" not in environ and "service.name" not in environ.get(
            "OTEL_RESOURCE_ATTRIBUTES", ""
        ):
            attributes[SERVICE_NAME] = DEFAULT_SERVICE_NAME
        provider = TracerProvider(resource=Resource.create(attributes))
        for exporter in _exporters(environ):
            provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider, owned=True, link_window=link_window)

    def instrument(self, app: FastAPI) -> None:
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            meter_provider=NoOpMeterProvider(),
            exclude_spans=["receive", "send"],  # not one span per chunk of a stream
            excluded_urls="healthz,readyz,metrics",
        )

    def start_run(
        self, pipeline: str, kind: str, mode: str, engine: RunEvents
    ) -> OtelRunTrace | None:
        parent = trace.get_current_span().get_span_context()
        links = []
        if kind == "job" and parent.is_valid:  # the POST that started it has answered
            links.append(Link(parent, {"conveyor.link": "submitted by"}))
        span = self.tracer.start_span(
            f"run {pipeline}",
            kind=SpanKind.INTERNAL,
            links=links,
            attributes={
                "conveyor.pipeline": pipeline,
                "conveyor.run.kind": kind,
                "conveyor.mode": mode,
            },
        )
        if not span.is_recording():
            return None
        return OtelRunTrace(self.tracer, span, engine, self.link_window)

    def shutdown(self) -> None:
        if self._owned and isinstance(self.provider, TracerProvider):
            self.provider.shutdown()


class OtelRunTrace:
    """The run span and its stage spans (see the module docstring)."""

    __slots__ = ("_tracer", "_span", "_engine", "_parent", "_calls", "_window")

    def __init__(
        self, tracer: trace.Tracer, span: trace.Span, engine: RunEvents, link_window: int
    ) -> None:
        self._tracer = tracer
        self._span = span
        self._engine = engine
        self._parent = trace.set_span_in_context(span)
        # the span of each recent call, for the links of the calls its results feed; bounded
        self._calls: OrderedDict[int, trace.SpanContext] = OrderedDict()
        self._window = link_window

    @contextmanager
    def current(self) -> Iterator[None]:
        with trace.use_span(
            self._span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            yield

    def call(self, event: StageEvent) -> None:
        started_at = self._engine.started_at or 0.0
        links = [
            Link(context) for call in event.inputs if (context := self._calls.get(call)) is not None
        ]
        attributes: dict[str, Any] = {
            "conveyor.stage": event.stage,
            "conveyor.stage.kind": event.kind,
            "conveyor.sources": event.sources[:MAX_SOURCES],
            "conveyor.sources.count": len(event.sources),
            "conveyor.attempt": event.attempt,
            "conveyor.outcome": event.outcome,
            "conveyor.queue_s": round(max(0.0, event.started_s - event.queued_s), 6),
        }
        if event.kind == "batch":
            attributes["conveyor.batch.size"] = event.size
        span = self._tracer.start_span(
            f"stage {event.stage}",
            context=self._parent,
            start_time=_ns(started_at + event.started_s),
            links=links,
            attributes=attributes,
        )
        end = _ns(started_at + event.ended_s)
        if event.error is not None:
            kind, _, message = event.error.partition(": ")
            span.add_event(
                "exception",
                {"exception.type": kind, "exception.message": message},
                timestamp=end,
            )
            if event.outcome != "retry":
                span.set_status(Status(StatusCode.ERROR, event.error))
        span.end(end_time=end)
        calls = self._calls
        calls[event.call] = span.get_span_context()
        if len(calls) > self._window:
            calls.popitem(last=False)

    def first_result(self) -> None:
        self._span.add_event("first result")

    def finish(self, status: str, inputs: int, results: int, error: str | None) -> None:
        span = self._span
        span.set_attributes(
            {"conveyor.status": status, "conveyor.inputs": inputs, "conveyor.results": results}
        )
        if status == "failed":
            span.set_status(Status(StatusCode.ERROR, error))
        self._calls.clear()
        span.end()


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    """The exporters OTEL_TRACES_EXPORTER names, found as the SDK finds them (entry points);
    `otlp` is the one of OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL (default http/protobuf)."""
    available = {point.name: point for point in entry_points(group=_EXPORTERS)}
    exporters = []
    for name in environ.get("OTEL_TRACES_EXPORTER", "").split(","):
        name = name.strip()
        if name in ("", "none"):
            continue
        if name == "otlp":
            protocol = environ.get(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            )
            name = "otlp_proto_grpc" if protocol.strip() == "grpc" else "otlp_proto_http"
        point = available.get(name)
        if point is None:
            log.error(
                "OTEL_TRACES_EXPORTER: no exporter %r is installed (installed: %s)",
                name,
                ", ".join(sorted(available)) or "none",
            )
            continue
        exporters.append(point.load()())
    return exporters
