"""The JSON body of a run, `{"items": [...], "mode": ...}`, decoded within its bounds.

A body of at most `INLINE_BYTES` is decoded in one call (a few milliseconds at most). A larger
one is decoded item by item, and refused as soon as it holds more than CONVEYOR_MAX_ITEMS items
(413) or an item larger than CONVEYOR_MAX_ITEM_BYTES (413), before the rest is decoded: memory
stays proportional to the limits, and the decoding gives the event loop to other requests after
every `STEP_BYTES`, so that a large body stalls nobody. Items are decoded by
`app.pipelines.schema.decode_json`, as NDJSON lines are.

Walking the body's outer object is hand-written: no JSON library here stops at an item count
or an item size, or hands the event loop back, while it parses (the standard library's
`raw_decode` finds where each item ends, which `decode_json` then decodes).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from pydantic import ValidationError

from app.api.models import RunRequest
from app.errors import InvalidInput, ItemTooLarge, TooManyItems
from app.pipelines.schema import decode_json

__all__ = ["INLINE_BYTES", "STEP_BYTES", "parse_run_body"]

INLINE_BYTES = 1 << 20  # a body up to this size is decoded in one call
STEP_BYTES = 256 << 10  # a larger one hands the event loop back after each such stretch
FIRST_WINDOW = 4096  # the text an item's end is first looked for in; then 8 times more
SHAPE = 'the body must be {"items": [...], "mode": "ordered" | "as_completed"}'

_WS = re.compile(r"[ \t\n\r]*")
_RAW = json.JSONDecoder()
_scanstring = json.decoder.scanstring  # type: ignore[attr-defined]


async def parse_run_body(body: bytes, *, max_items: int, max_item_bytes: int) -> RunRequest:
    """The run request in `body`: 422 malformed or off the shape, 413 over a limit."""
    if len(body) <= min(INLINE_BYTES, max_item_bytes):  # no item can be over its limit
        try:
            data = decode_json(body)
        except ValueError as exc:
            raise _malformed(str(exc).removeprefix("malformed JSON: ")) from None
        items = data.get("items") if isinstance(data, dict) else None
        if isinstance(items, list):
            _check_count(len(items), max_items)
        return _request(data)
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise _malformed(f"invalid UTF-8: {exc}") from None
    return _request(await _Walk(text, max_items, max_item_bytes).body())


class _Walk:
    """The outer object of a large body, walked through; each value decoded on its own."""

    def __init__(self, text: str, max_items: int, max_item_bytes: int) -> None:
        self.text = text
        self.max_items = max_items
        self.max_item_bytes = max_item_bytes

    async def body(self) -> dict[str, Any] | None:
        """The outer object's fields (None when the body is no object: refused undecoded)."""
        fields: dict[str, Any] = {}
        pos = self._ws(0)
        if not self.text.startswith("{", pos):
            return None
        pos += 1
        if self.text.startswith("}", pos):
            return self._end(fields, pos + 1)
        while True:
            start = self._expect(self._ws(pos), '"')
            try:
                key, pos = _scanstring(self.text, start)
            except ValueError as exc:
                raise self._error(start - 1, str(exc)) from None
            pos = self._ws(self._expect(pos, ":"))
            if key == "items" and self.text.startswith("[", pos):
                fields[key], pos = await self._items(pos + 1)
            elif key in RunRequest.model_fields:
                fields[key], pos = self._value(pos)
            else:  # refused whatever it holds: not decoded
                fields[key] = None
                return fields
            pos = self._ws(pos)
            if self.text.startswith("}", pos):
                return self._end(fields, pos + 1)
            pos = self._expect(pos, ",")

    async def _items(self, pos: int) -> tuple[list[Any], int]:
        items: list[Any] = []
        pos = self._ws(pos)
        if self.text.startswith("]", pos):
            return items, pos + 1
        handed_back = pos
        while True:
            item, pos = self._value(pos, position=len(items))
            items.append(item)
            _check_count(len(items), self.max_items)
            if pos - handed_back >= STEP_BYTES:
                await asyncio.sleep(0)
                handed_back = pos
            pos = self._ws(pos)
            if self.text.startswith("]", pos):
                return items, pos + 1
            pos = self._ws(self._expect(pos, ","))

    def _value(self, pos: int, position: int | None = None) -> tuple[Any, int]:
        """The value starting at `pos`, and where it ends. Its end is looked for in a window of
        the text that grows up to the item limit, so that a larger item costs no more."""
        text, limit = self.text, self.max_item_bytes
        window = FIRST_WINDOW
        while True:
            stop = min(len(text), pos + window)
            try:
                _, end = _RAW.raw_decode(text[pos:stop])
                whole = end < stop - pos or stop == len(text)  # (a number may go on)
            except ValueError as exc:
                if stop == len(text):
                    where = pos + getattr(exc, "pos", 0)
                    raise self._error(where, getattr(exc, "msg", str(exc))) from None
                whole = False
            if whole:
                span = text[pos : pos + end]
                if len(span) > limit or (not span.isascii() and len(span.encode()) > limit):
                    raise _too_large(limit, position)
                try:
                    return decode_json(span), pos + end
                except ValueError as exc:
                    raise self._error(pos, str(exc).removeprefix("malformed JSON: ")) from None
            if window > limit:
                raise _too_large(limit, position)
            window = min(window * 8, limit + 1)

    def _end(self, fields: dict[str, Any], pos: int) -> dict[str, Any]:
        if self._ws(pos) != len(self.text):
            raise self._error(self._ws(pos), "trailing characters")
        return fields

    def _ws(self, pos: int) -> int:
        match = _WS.match(self.text, pos)
        return pos if match is None else match.end()

    def _expect(self, pos: int, char: str) -> int:
        if not self.text.startswith(char, pos):
            raise self._error(pos, f"expected {char!r}")
        return pos + 1

    def _error(self, pos: int, message: str) -> InvalidInput:
        line = self.text.count("\n", 0, pos) + 1
        column = pos - self.text.rfind("\n", 0, pos)
        return _malformed(f"{message} (the value at line {line} column {column})")


def _check_count(count: int, limit: int) -> None:
    if count > limit:
        raise TooManyItems(
            f"more than {limit} items; the limit is {limit} per request (CONVEYOR_MAX_ITEMS)",
            limit=limit,
        )


def _too_large(limit: int, position: int | None) -> ItemTooLarge:
    what = "a field" if position is None else f"the item at position {position}"
    return ItemTooLarge(
        f"{what} is larger than {limit} bytes (CONVEYOR_MAX_ITEM_BYTES)", limit=limit
    )


def _malformed(message: str) -> InvalidInput:
    error = {"loc": [], "msg": f"Invalid JSON: {message}", "type": "json_invalid"}
    return InvalidInput(f"malformed JSON body: {message}", errors=[error])


def _request(data: Any) -> RunRequest:
    try:
        return RunRequest.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        plain = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
        raise InvalidInput(SHAPE, errors=plain) from None
