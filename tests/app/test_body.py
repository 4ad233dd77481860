"""app.api.body and the one way items are decoded: a JSON body is refused at the first item over
a limit, hands the event loop back while it decodes, and takes the same values as an NDJSON line
(no NaN, Infinity or 1e999 in either)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.api import body as body_module
from app.api.body import parse_run_body
from app.api.models import RunRequest
from app.errors import InvalidInput, ItemTooLarge, TooManyItems
from app.pipelines.schema import decode_json
from tests.app.conftest import ClientFactory
from tests.app.wire import ndjson_events

NDJSON = {"Content-Type": "application/x-ndjson"}
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "[1, 1e999]", '{"a": 1e999}']


@pytest.fixture(params=["inline", "walked"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each body decoded both ways: in one call, and walked item by item."""
    if request.param == "walked":
        monkeypatch.setattr(body_module, "INLINE_BYTES", 0)
    return str(request.param)


async def _parse(body: bytes, max_items: int = 100, max_item_bytes: int = 1 << 20) -> RunRequest:
    return await parse_run_body(body, max_items=max_items, max_item_bytes=max_item_bytes)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=100, deadline=None)
@given(
    items=st.lists(json_values, max_size=6),
    mode=st.sampled_from([None, "ordered", "as_completed"]),
    indent=st.sampled_from([None, 1]),
)
async def test_both_ways_decode_the_same_request(
    items: list[Any], mode: str | None, indent: int | None
) -> None:
    data: dict[str, Any] = {"items": items} if mode is None else {"mode": mode, "items": items}
    body = json.dumps(data, indent=indent).encode()
    inline = await _parse(body)
    body_module.INLINE_BYTES, saved = 0, body_module.INLINE_BYTES
    try:
        walked = await _parse(body)
    finally:
        body_module.INLINE_BYTES = saved
    assert inline == walked == RunRequest(items=items, mode=mode)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"items": [1, 2', "malformed JSON"),
        (b"", "malformed JSON"),
        (b'{"items": [1] x', "malformed JSON"),
        (b'{"items": [1]} []', "malformed JSON"),
        (b'{"items": [1,]}', "malformed JSON"),
        (b'{"items": 3}', "the body must be"),
        (b'{"item": [1]}', "the body must be"),
        (b'{"items": [1], "mode": "fastest"}', "the body must be"),
        (b"[1, 2, 3]", "the body must be"),
    ],
)
async def test_malformed_bodies_both_ways(path: str, body: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await _parse(body)
    assert fragment in caught.value.detail and caught.value.extra["errors"]


@pytest.mark.parametrize("number", NON_FINITE)
async def test_a_body_refuses_numbers_json_has_not(path: str, number: str) -> None:
    with pytest.raises(InvalidInput, match="malformed JSON body"):
        await _parse(b'{"items": [1, %s]}' % number.encode())
    assert (await _parse(b'{"items": [1e308, -0.0, 1E-400]}')).items == [1e308, -0.0, 0.0]


async def test_the_item_count_is_enforced_while_decoding(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """66 MB of `0,` was decoded whole before its count was checked; now decoding stops at the
    first item over the limit (the inline way only ever sees small bodies)."""
    decoded: list[int] = []

    def counting(text: bytes | str) -> Any:
        decoded.append(len(text))
        return decode_json(text)

    monkeypatch.setattr(body_module, "decode_json", counting)
    zeros = b'{"items": [' + b"0," * 1_000_000 + b"0]}"
    monkeypatch.setattr(body_module, "INLINE_BYTES", 1 << 20 if path == "inline" else 0)
    with pytest.raises(TooManyItems) as caught:
        await _parse(zeros, max_items=10)
    assert caught.value.extra["limit"] == 10
    assert len(decoded) <= 11 and sum(decoded) < 100  # eleven items of one byte, not 2 MB


async def test_an_item_over_the_limit_is_refused_before_it_is_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[int] = []
    raw = body_module._RAW

    class Counting:
        def raw_decode(self, text: str) -> tuple[Any, int]:
            seen.append(len(text))
            return raw.raw_decode(text)

    monkeypatch.setattr(body_module, "_RAW", Counting())
    huge = b'{"items": [1, [' + b"0," * 5_000_000 + b"0]]}"  # 10 MB
    with pytest.raises(ItemTooLarge, match="the item at position 1 is larger than 65536"):
        await _parse(huge, max_item_bytes=64 << 10)
    assert sum(seen) < 3 * (64 << 10)  # looked at a window of the item, not its 10 MB
    assert (await _parse(b'{"items": ["%s"]}' % (b"x" * 100), max_item_bytes=102)).items


async def test_a_large_body_hands_the_event_loop_back_while_it_decodes() -> None:
    turns = 0

    async def other_client() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    item = b"[" + b"0," * 2000 + b"0]"  # 4 KB of small numbers
    body = b'{"items": [' + b",".join([item] * 1000) + b"]}"  # 4 MB
    ticker = asyncio.create_task(other_client())
    await asyncio.sleep(0)
    before = turns
    request = await _parse(body, max_items=1000)
    ticker.cancel()
    assert len(request.items) == 1000
    assert turns - before >= len(body) // body_module.STEP_BYTES - 1


@pytest.mark.parametrize("number", NON_FINITE)
async def test_ndjson_lines_refuse_what_a_body_refuses(
    client: httpx.AsyncClient, number: str
) -> None:
    response = await client.post(
        "/pipelines/echo/stream", content=b"1\n%s\n" % number.encode(), headers=NDJSON
    )
    events = ndjson_events(response.text)
    assert events[-2]["type"] == "error" and events[-1]["status"] == "failed"
    assert events[-2]["error"].startswith("BadLine: line 2: malformed JSON")
    body = await client.post("/pipelines/echo/invoke", content=b'{"items": [%s]}' % number.encode())
    assert body.status_code == 422 and body.json()["detail"].startswith("malformed JSON body")


async def test_timeline_delays_are_bounded_by_the_schema(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/pipelines/timeline")).json()["input_schema"]
    assert (schema["minimum"], schema["maximum"]) == (0, 60)
    response = await client.post("/pipelines/timeline/invoke", json={"items": [0.1, -1, 61, 60]})
    assert response.status_code == 422 and response.json()["positions"] == [1, 2]
    uploaded = await client.post(
        "/pipelines/timeline/stream", content=b"0.01\n1000\n", headers=NDJSON
    )
    error = ndjson_events(uploaded.text)[-2]["error"]
    assert error.startswith("BadLine: line 2 (item 1): Input should be less than or equal to 60")


async def test_the_item_byte_limit_is_a_setting(make_client: ClientFactory) -> None:
    async with make_client(max_item_bytes=10) as client:
        ok = await client.post("/pipelines/echo/invoke", json={"items": ["12345678"]})
        assert ok.status_code == 200
        big = await client.post("/pipelines/echo/invoke", json={"items": ["123456789"]})
        assert big.status_code == 413 and big.json()["limit"] == 10
        line = await client.post("/pipelines/echo/stream", content=b'"123456789"\n', headers=NDJSON)
        assert "longer than 10 bytes" in ndjson_events(line.text)[-2]["error"]
