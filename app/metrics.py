"""Prometheus metrics of one app: runs, results, item errors, latencies, HTTP requests.

Each app has its own registry (tests build many apps in one process); `/metrics` renders it
followed by the process-wide default registry (process and Python collectors, and any metric a
user's pipelines module registers there).
"""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, disable_created_metrics
from prometheus_client import Counter as _Counter
from prometheus_client import Gauge as _Gauge
from prometheus_client import Histogram as _Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics import MetricWrapperBase

__all__ = ["BATCH_BUCKETS", "Metrics"]

disable_created_metrics()  # no `_created` series beside every counter and histogram

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
)


class _BoundOnce(MetricWrapperBase):
    """`labels(...)` of prometheus-client, remembered: every request labels the same few series,
    and prometheus-client checks the values and takes a lock each time (a few microseconds,
    several times a request). The series are never removed, so what is remembered stays true."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bound: dict[tuple[object, ...], Any] = {}

    def labels(self, *labelvalues: Any, **labelkwargs: Any) -> Any:
        if labelkwargs:
            return super().labels(**labelkwargs)
        try:
            return self._bound[labelvalues]
        except KeyError:
            child = self._bound[labelvalues] = super().labels(*labelvalues)
            return child


class Counter(_BoundOnce, _Counter):
    pass


class Gauge(_BoundOnce, _Gauge):
    pass


class Histogram(_BoundOnce, _Histogram):
    pass


class HoldsItems(Protocol):
    """A run (`conveyor_core.RunEvents`): the input items it holds now."""

    @property
    def in_flight(self) -> int: ...


BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """The service's metrics; labels: pipeline, kind (stream, invoke, job), status, stage."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.runs = Counter(
            "conveyor_runs",
            "Runs that ended, by pipeline, kind and final status",
            ["pipeline", "kind", "status"],
            registry=registry,
        )
        self.runs_in_progress = Gauge(
            "conveyor_runs_in_progress",
            "Runs going on now",
            ["pipeline", "kind"],
            registry=registry,
        )
        self.inputs = Counter(
            "conveyor_inputs", "Input items pulled into runs", ["pipeline"], registry=registry
        )
        self.results = Counter(
            "conveyor_results", "Results produced", ["pipeline"], registry=registry
        )
        self.item_errors = Counter(
            "conveyor_item_errors",
            "Items or batches that failed in a stage (the run went on)",
            ["pipeline", "stage", "action"],
            registry=registry,
        )
        self.run_errors = Counter(
            "conveyor_run_errors",
            "Runs that failed, by the stage that failed them (empty: outside any stage, e.g. "
            "a bad input line or an unencodable result)",
            ["pipeline", "stage"],
            registry=registry,
        )
        self.stage_latency = Histogram(
            "conveyor_stage_latency_seconds",
            "Duration of one task call (retries included)",
            ["pipeline", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "conveyor_batch_size",
            "Items in one call of a batch stage",
            ["pipeline", "stage"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.stage_queue = Histogram(
            "conveyor_stage_queue_seconds",
            "From a call's input being ready (a batch: released) to the call's start",
            ["pipeline", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.items_in_flight = Gauge(
            "conveyor_items_in_flight",
            "Input items the pipeline's runs hold now (admitted, not yet delivered)",
            ["pipeline"],
            registry=registry,
        )
        self._live: dict[str, set[Any]] = {}  # pipeline: the runs going on (for the gauge)
        self.first_result = Histogram(
            "conveyor_time_to_first_result_seconds",
            "From a run's start to its first result",
            ["pipeline", "kind"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.run_duration = Histogram(
            "conveyor_run_duration_seconds",
            "From a run's start to its end",
            ["pipeline", "kind"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.jobs_running = Gauge(
            "conveyor_jobs_running", "Jobs this process runs now", registry=registry
        )
        self.http_requests = Counter(
            "conveyor_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "conveyor_http_request_duration_seconds",
            "From a request's arrival to the end of its response (streams included)",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def track(self, pipeline: str, run: HoldsItems) -> None:
        """Count `run`'s items in flight in its pipeline's gauge (read when scraped)."""
        runs = self._live.get(pipeline)
        if runs is None:
            runs = self._live[pipeline] = set()
            self.items_in_flight.labels(pipeline).set_function(
                lambda: float(sum(r.in_flight for r in runs))
            )
        runs.add(run)

    def untrack(self, pipeline: str, run: HoldsItems) -> None:
        self._live.get(pipeline, set()).discard(run)

    def render(self) -> bytes:
        """The Prometheus text format of this app's metrics and the process-wide ones."""
        return generate_latest(self.registry) + generate_latest(REGISTRY)
