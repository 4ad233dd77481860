"""Events on the wire: one JSON form, framed as NDJSON lines or as Server-Sent Events.

A wire event is DESIGN.md's JSON object plus `"type"`:
`{"type": "result", "seq": 0, "value": 22, "sources": [0, 1, 2]}`. NDJSON sends it as one line;
SSE sends `id: <seq>`, `event: <type>` and `data:` the object without `"type"`. Values that JSON
has no form for are encoded the way pydantic does (models, dataclasses, tuples, datetimes);
bytes become base64 strings (pydantic's `bytes_mode="base64"`: the URL-safe alphabet, `-` and
`_`, with `=` padding; `b"\\xff\\x00"` is `"_wA="`); NaN and infinities become `null`; anything
else its `repr()` string.

The encoding is total: `encode_event` encodes a run's event once, and a result that still has no
JSON form (a string with a lone surrogate, a `repr()` that raises, a circular list) raises
`UnencodableResult`, which `app.runs.Run` turns into the run's failure: an `error` event
(`"stage": null`, `"error": "UnencodableResult: str: UnicodeEncodeError: ..."`) then `end`
failed, the same on every route. Text of other events (error messages) is made encodable
instead: a lone surrogate becomes `\\udxxx`.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json, to_jsonable_python

from conveyor_core import Event

__all__ = [
    "NDJSON",
    "SSE",
    "EncodedEvent",
    "UnencodableResult",
    "dumps",
    "encode_event",
    "jsonable",
    "ndjson_line",
    "printable",
    "sse_message",
    "wants_sse",
    "wire_event",
]

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


_JSON_ERROR = "Error serializing to JSON: "  # pydantic's prefix of a serialisation error


def dumps(value: Any) -> bytes:
    """Compact JSON bytes of any value a task may produce (ValueError when it has no form)."""
    return to_json(value, inf_nan_mode="null", bytes_mode="base64", fallback=repr)


def jsonable(value: Any) -> Any:
    """The same value as plain JSON types (what a job store keeps)."""
    return to_jsonable_python(value, inf_nan_mode="null", bytes_mode="base64", fallback=repr)


def printable(text: str) -> str:
    """`text` with what UTF-8 cannot encode (lone surrogates) escaped as `\\udxxx`."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


class UnencodableResult(ValueError):
    """A result has no JSON form: the run fails (`error`: "UnencodableResult: <type>: ...")."""

    def __init__(self, value: Any, exc: Exception) -> None:
        message = str(exc).removeprefix(_JSON_ERROR) or type(exc).__name__
        super().__init__(printable(f"{type(value).__name__}: {message}"))


class EncodedEvent(dict[str, Any]):
    """A wire event and `data`, its JSON object without `"type"`, encoded once.

    The framing functions send `data` as it is; the dict is there for whoever reads the
    event's fields (invoke's collector, the job runner).
    """

    __slots__ = ("data",)

    def __init__(self, event_type: str, fields: dict[str, Any], data: bytes) -> None:
        super().__init__(type=event_type, **fields)
        self.data = data


def encode_event(event: Event) -> EncodedEvent:
    """The engine's event on the wire, encoded; `UnencodableResult` when a result cannot be."""
    fields = event.to_dict()
    try:
        data = dumps(fields)
    except Exception as exc:
        if event.type == "result":
            raise UnencodableResult(fields.get("value"), exc) from exc
        fields = {k: printable(v) if isinstance(v, str) else v for k, v in fields.items()}
        data = dumps(fields)
    return EncodedEvent(event.type, fields, data)


def wire_event(event: Event) -> dict[str, Any]:
    """The event as a dict with `"type"` first; its values are not converted yet."""
    return {"type": event.type, **event.to_dict()}


def _data(event: dict[str, Any]) -> bytes:
    if isinstance(event, EncodedEvent):
        return event.data
    return dumps({key: value for key, value in event.items() if key != "type"})


def ndjson_line(event: dict[str, Any]) -> bytes:
    """One NDJSON line: the wire event with its `"type"` first."""
    data = _data(event)  # an object with at least `seq`: b'{"seq":...}'
    return b'{"type":%s,%s\n' % (dumps(event["type"]), data[1:])


def sse_message(event: dict[str, Any]) -> bytes:
    """One SSE message: `id` the seq, `event` the type, `data` the object without `"type"`."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event["seq"], event["type"].encode(), _data(event))


def wants_sse(accept: str | None) -> bool:
    """True when the Accept header lists `text/event-stream` (with a non-zero q)."""
    for part in (accept or "").split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        if media.lower() == SSE:
            return not any(
                p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params
            )
    return False
