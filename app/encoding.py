"""Events on the wire: one JSON form, framed as NDJSON lines or as Server-Sent Events.

A wire event is DESIGN.md's JSON object plus `"type"`:
`{"type": "result", "seq": 0, "value": 22, "sources": [0, 1, 2]}`. NDJSON sends it as one line;
SSE sends `id: <seq>`, `event: <type>` and `data:` the object without `"type"`. Values that JSON
has no form for are encoded the way pydantic does (models, dataclasses, tuples, datetimes);
NaN and infinities become `null`; anything else its `repr()` string.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json, to_jsonable_python

from conveyor_core import Event

__all__ = [
    "NDJSON",
    "SSE",
    "dumps",
    "jsonable",
    "ndjson_line",
    "sse_message",
    "wants_sse",
    "wire_event",
]

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


def dumps(value: Any) -> bytes:
    """Compact JSON bytes of any value a task may produce."""
    return to_json(value, inf_nan_mode="null", fallback=repr)


def jsonable(value: Any) -> Any:
    """The same value as plain JSON types (what a job store keeps)."""
    return to_jsonable_python(value, inf_nan_mode="null", fallback=repr)


def wire_event(event: Event) -> dict[str, Any]:
    """The event as a dict with `"type"` first; its values are not converted yet."""
    return {"type": event.type, **event.to_dict()}


def ndjson_line(event: dict[str, Any]) -> bytes:
    """One NDJSON line: the wire event with its `"type"`."""
    return dumps(event) + b"\n"


def sse_message(event: dict[str, Any]) -> bytes:
    """One SSE message: `id` the seq, `event` the type, `data` the object without `"type"`."""
    data = {key: value for key, value in event.items() if key != "type"}
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event["seq"], event["type"].encode(), dumps(data))


def wants_sse(accept: str | None) -> bool:
    """True when the Accept header lists `text/event-stream` (with a non-zero q)."""
    for part in (accept or "").split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        if media.lower() == SSE:
            return not any(
                p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params
            )
    return False
