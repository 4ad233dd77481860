"""app.encoding: the wire forms of events."""

from __future__ import annotations

import math

import pytest
from pydantic import BaseModel

from app.encoding import (
    EncodedEvent,
    UnencodableResult,
    dumps,
    encode_event,
    jsonable,
    ndjson_line,
    printable,
    sse_message,
    wants_sse,
    wire_event,
)
from conveyor_core import (
    EndEvent,
    ItemErrorEvent,
    ResultEvent,
    RunErrorEvent,
    RunStats,
    describe_error,
)
from tests.app.wire import parse_sse


class Point(BaseModel):
    x: int
    y: int


def test_wire_event_adds_the_type_first() -> None:
    event = wire_event(ResultEvent(0, 22, [0, 1, 2]))
    assert list(event) == ["type", "seq", "value", "sources"]
    assert event == {"type": "result", "seq": 0, "value": 22, "sources": [0, 1, 2]}
    error = wire_event(ItemErrorEvent(3, "sum_batch", [6], "ValueError: x", "skip_item"))
    assert error["type"] == "item_error" and error["action"] == "skip_item"
    assert wire_event(RunErrorEvent(4, "add_ten", "ValueError: y"))["type"] == "error"
    end = wire_event(EndEvent(5, "succeeded", RunStats(inputs=7, results=3, elapsed_s=0.08)))
    assert end["stats"] == {
        "inputs": 7,
        "results": 3,
        "skipped": 0,
        "dropped": 0,
        "elapsed_s": 0.08,
    }


def test_ndjson_line() -> None:
    line = ndjson_line(wire_event(ResultEvent(0, Point(x=1, y=2), [0])))
    assert line == b'{"type":"result","seq":0,"value":{"x":1,"y":2},"sources":[0]}\n'


def test_sse_message_parses_back() -> None:
    message = sse_message(wire_event(ResultEvent(7, "multi\nline", [1])))
    [parsed] = parse_sse(message.decode())
    assert parsed.event == "result" and parsed.last_event_id == "7"
    assert parsed.json() == {"seq": 7, "value": "multi\nline", "sources": [1]}


def test_values_json_has_no_form_for() -> None:
    assert dumps({"nan": math.nan, "inf": math.inf, "t": (1, 2)}) == (
        b'{"nan":null,"inf":null,"t":[1,2]}'
    )
    assert dumps(object()).startswith(b'"<object object')
    assert jsonable({"p": Point(x=1, y=2), "s": (1,)}) == {"p": {"x": 1, "y": 2}, "s": [1]}


def test_bytes_are_base64() -> None:
    assert dumps(b"\xff\x00") == b'"_wA="'  # not UTF-8: base64, URL-safe alphabet
    assert dumps({"b": bytearray(b"ab")}) == b'{"b":"YWI="}'
    assert jsonable([b"\xfb\xff\xfe"]) == ["-__-"]


def test_encode_event_once_for_both_framings() -> None:
    event = encode_event(ResultEvent(4, b"\xff\x00", [1]))
    assert (
        isinstance(event, EncodedEvent) and event.data == b'{"seq":4,"value":"_wA=","sources":[1]}'
    )
    assert list(event) == ["type", "seq", "value", "sources"]
    assert ndjson_line(event) == b'{"type":"result","seq":4,"value":"_wA=","sources":[1]}\n'
    assert ndjson_line(event) == ndjson_line(wire_event(ResultEvent(4, b"\xff\x00", [1])))
    [parsed] = parse_sse(sse_message(event).decode())
    assert parsed.last_event_id == "4" and parsed.json()["value"] == "_wA="


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("\ud800", "UnencodableResult: str: UnicodeEncodeError: 'utf-8' codec can't encode"),
        (_BadRepr(), "UnencodableResult: _BadRepr: RuntimeError: no repr"),
        ({"x": "\udcff"}, "UnencodableResult: dict: UnicodeEncodeError"),
    ],
)
def test_a_result_without_json_form_is_unencodable(value: object, error: str) -> None:
    with pytest.raises(UnencodableResult) as raised:
        encode_event(ResultEvent(0, value, [0]))
    assert describe_error(raised.value).startswith(error)  # as the run's error event says it
    dumps({"error": describe_error(raised.value)})  # the error itself can always be sent


def test_error_texts_are_made_encodable() -> None:
    event = encode_event(ItemErrorEvent(1, "parse", [2], "ValueError: bad \udcff", "skip_item"))
    assert event["error"] == "ValueError: bad \\udcff"
    assert b"bad \\\\udcff" in ndjson_line(event)
    assert printable("plain é") == "plain é"


@pytest.mark.parametrize(
    ("accept", "sse"),
    [
        ("text/event-stream", True),
        ("application/json, text/event-stream;q=0.5", True),
        ("TEXT/EVENT-STREAM", True),
        ("text/event-stream;q=0", False),
        ("*/*", False),
        ("application/x-ndjson", False),
        (None, False),
        ("", False),
    ],
)
def test_wants_sse(accept: str | None, sse: bool) -> None:
    assert wants_sse(accept) is sse
