"""app.metrics: series labelled once, then reused."""

from __future__ import annotations

from app.metrics import Metrics
from tests.app.conftest import metric


def test_a_labelled_series_is_bound_once_and_counts_as_before() -> None:
    metrics = Metrics()
    first = metrics.runs.labels("p", "stream", "succeeded")
    assert metrics.runs.labels("p", "stream", "succeeded") is first
    assert metrics.runs.labels(pipeline="p", kind="stream", status="succeeded") is first
    first.inc()
    metrics.runs.labels("p", "stream", "succeeded").inc(2)
    metrics.runs.labels("p", "job", "failed").inc()
    metrics.run_duration.labels("p", "stream").observe(0.3)
    metrics.runs_in_progress.labels("p", "stream").inc()
    text = metrics.render().decode()
    assert metric(text, "conveyor_runs_total", pipeline="p", kind="stream", status="succeeded") == 3
    assert metric(text, "conveyor_runs_total", pipeline="p", kind="job", status="failed") == 1
    assert metric(text, "conveyor_run_duration_seconds_count", pipeline="p", kind="stream") == 1
    assert metric(text, "conveyor_runs_in_progress", pipeline="p", kind="stream") == 1
    assert Metrics().runs.labels("p", "stream", "succeeded") is not first  # per app
