"""W3C trace context on the client's requests, when the application uses OpenTelemetry.

`trace_headers()` gives the `traceparent` (and `tracestate`, baggage: whatever the configured
propagators write) of the current span, so that the service's spans of a request, and of the
run it starts, join the caller's trace. An application that has not imported OpenTelemetry's
API gets nothing, and nothing is imported for it.
"""

from __future__ import annotations

import sys

__all__ = ["trace_headers"]


def trace_headers() -> dict[str, str]:
    """The propagation headers of the current OpenTelemetry context; {} without OpenTelemetry."""
    if "opentelemetry.trace" not in sys.modules:
        return {}
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
