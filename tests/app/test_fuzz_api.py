"""Schema-driven fuzzing of the API from its own OpenAPI document: no input gives a 5xx.

Bounded: a few dozen examples per operation, pipelines that answer at once. The `name` path
parameter is narrowed to the served pipelines plus an unknown one, so bodies reach validation.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from app.core.config import Settings
from app.main import create_app

PIPELINES = ["echo", "greet", "fragile", "no-such-pipeline"]


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def _fuzz_app() -> Any:
    settings_ = Settings(
        pipelines=["tests.app.svc_pipelines"],
        builtin_pipelines=False,
        max_items=20,
        max_running_jobs=5,
        sse_ping_s=0,
    )
    app = create_app(settings_)
    document = copy.deepcopy(app.openapi())
    for path in document["paths"].values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "name" and parameter["in"] == "path":
                    parameter["schema"] = {"type": "string", "enum": PIPELINES}
    return app, document


APP, DOCUMENT = _fuzz_app()
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.app = APP


@pytest.mark.filterwarnings("ignore")
@schema.exclude(
    path_regex="^/pipelines/\\{name\\}/(stream|invoke|jobs)$", method="POST"
).parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_reads_never_fail(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])


@pytest.mark.filterwarnings("ignore")
@schema.include(
    path_regex="^/pipelines/\\{name\\}/(stream|invoke|jobs)$", method="POST"
).parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_runs_never_fail(case: schemathesis.Case) -> None:
    if case.path_parameters and case.path_parameters.get("name") == "sleepy":
        return
    case.call_and_validate(checks=[not_a_server_error])


def test_fuzzing_reached_the_pipelines() -> None:
    """After the two fuzz tests: runs happened, and bad input was answered with 4xx."""
    text = APP.state.services.metrics.render().decode()
    if "conveyor_http_requests_total{" not in text:
        pytest.skip("run with the fuzz tests above")
    statuses = {
        line.split('status="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("conveyor_http_requests_total{")
    }
    assert "200" in statuses and "422" in statuses and "404" in statuses
    assert not any(status.startswith("5") for status in statuses)
    assert "conveyor_runs_total{" in text
