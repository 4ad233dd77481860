"""Tracing of the service with OpenTelemetry, only when it is asked for.

Tracing is on when the `otel` extra is installed and the standard variables ask for it:
`OTEL_TRACES_EXPORTER` names one or more exporters (`otlp`, `console`, ...; `none` or unset:
off), and `OTEL_SDK_DISABLED` is not `true`. Everything else is read by OpenTelemetry itself
(`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_*`, `OTEL_BSP_*`,
`OTEL_TRACES_SAMPLER`, `OTEL_PROPAGATORS`). Otherwise this module imports nothing of
OpenTelemetry and a run costs nothing more: `Run` gets no `RunTrace`.

The implementation is `app.otel` (imported only when tracing is on); what a run needs of it is
the small interface below, so that `app.runs` never imports OpenTelemetry.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from conveyor_core import StageEvent

if TYPE_CHECKING:
    from fastapi import FastAPI

    from conveyor_core import RunEvents

__all__ = ["RunTrace", "Tracing", "tracing_from_environment", "tracing_requested"]

log = logging.getLogger("conveyor.service.telemetry")


class RunTrace(Protocol):
    """The spans of one run (`app.otel.OtelRunTrace`)."""

    def current(self) -> AbstractContextManager[Any]:
        """The run's span as the current one, while the engine starts the run's tasks."""

    def call(self, event: StageEvent) -> None:
        """One call of a stage ended (the engine's `on_call`)."""

    def first_result(self) -> None:
        """The run's first result is out."""

    def finish(self, status: str, inputs: int, results: int, error: str | None) -> None:
        """The run ended (`error`: the failure's text)."""


class Tracing(Protocol):
    """The service's tracer (`app.otel.OtelTracing`)."""

    def instrument(self, app: FastAPI) -> None:
        """Give every HTTP request a span (honouring an incoming `traceparent`)."""

    def start_run(self, pipeline: str, kind: str, mode: str, engine: RunEvents) -> RunTrace | None:
        """The spans of a run starting now, under the current span (None: not sampled)."""

    def shutdown(self) -> None:
        """Export what is left (the app's lifespan ends)."""


def tracing_requested(environ: Mapping[str, str] | None = None) -> bool:
    """True when the OTEL_* variables ask for traces to be exported."""
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = [name.strip() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    return any(name and name != "none" for name in exporters)


def tracing_from_environment(
    environ: Mapping[str, str] | None = None, *, link_window: int = 65536
) -> Tracing | None:
    """The service's tracing as the OTEL_* variables ask, or None (nothing imported)."""
    environ = os.environ if environ is None else environ
    if not tracing_requested(environ):
        return None
    if importlib.util.find_spec("opentelemetry.sdk") is None:
        log.warning(
            "OTEL_TRACES_EXPORTER is set but OpenTelemetry is not installed: no traces "
            '(pip install "conveyor-streaming-core[otel]")'
        )
        return None
    from .otel import OtelTracing  # the one place the service imports OpenTelemetry

    return OtelTracing.from_environment(environ, link_window=link_window)
