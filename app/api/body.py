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
import codecs
import json
import re
from typing import Any

from pydantic import ValidationError

from ..errors import InvalidInput, ItemTooLarge, TooManyItems
from ..pipelines.schema import decode_json
from .models import RunRequest

__all__ = ["INLINE_BYTES", "STEP_BYTES", "STEP_ITEMS", "parse_run_body"]

INLINE_BYTES = 1 << 20  # a body up to this size is decoded in one call
STEP_BYTES = 256 << 10  # a larger one hands the event loop back after each such stretch
STEP_ITEMS = 512  # ... and after each such number of items
FIRST_WINDOW = 256  # the bytes an item's end is first looked for in; then 8 times more
KEY_WINDOW = 1024  # the bytes a key is looked for in
SHAPE = (
    'the body must be {"items": [...], "mode": "ordered" | "as_completed", "trace": true | false}'
)

_WS = re.compile(rb"[ \t\n\r]*")
_RAW = json.JSONDecoder()
_scanstring = json.decoder.scanstring  # type: ignore[attr-defined]


async def parse_run_body(
    body: bytes | bytearray, *, max_items: int, max_item_bytes: int
) -> RunRequest:
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
    return _request(await _Walk(body, max_items, max_item_bytes).body())


class _Walk:
    """The outer object of a large body, walked through; each value decoded on its own.

    Positions are in bytes; only the windows of text looked at are decoded from UTF-8.
    """

    def __init__(self, data: bytes | bytearray, max_items: int, max_item_bytes: int) -> None:
        self.data = data
        self.max_items = max_items
        self.max_item_bytes = max_item_bytes

    async def body(self) -> dict[str, Any] | None:
        """The outer object's fields (None when the body is no object: refused undecoded)."""
        fields: dict[str, Any] = {}
        pos = self._ws(0)
        if not self.data.startswith(b"{", pos):
            return None
        pos = self._ws(pos + 1)
        if self.data.startswith(b"}", pos):
            return self._end(fields, pos + 1)
        while True:
            pos = self._ws(pos)
            if not self.data.startswith(b'"', pos):
                raise self._error(pos, "expected '\"'")
            key, pos = self._key(pos)
            pos = self._ws(self._expect(self._ws(pos), b":"))
            if key == "items" and self.data.startswith(b"[", pos):
                fields[key], pos = await self._items(pos + 1)
            elif key in RunRequest.model_fields:
                fields[key], pos = await self._value(pos)
            else:  # refused whatever it holds: not decoded
                fields[key] = None
                return fields
            pos = self._ws(pos)
            if self.data.startswith(b"}", pos):
                return self._end(fields, pos + 1)
            pos = self._expect(pos, b",")

    def _key(self, pos: int) -> tuple[str, int]:
        text = self._text(pos, KEY_WINDOW)
        try:
            key, end = _scanstring(text, 1)
        except ValueError as exc:
            raise self._error(pos, str(exc)) from None
        return key, pos + _byte_length(text, end)

    async def _items(self, pos: int) -> tuple[list[Any], int]:
        items: list[Any] = []
        pos = self._ws(pos)
        if self.data.startswith(b"]", pos):
            return items, pos + 1
        handed_back = pos
        while True:
            item, pos = await self._value(pos, position=len(items))
            items.append(item)
            _check_count(len(items), self.max_items)
            if pos - handed_back >= STEP_BYTES or len(items) % STEP_ITEMS == 0:
                await asyncio.sleep(0)
                handed_back = pos
            pos = self._ws(pos)
            if self.data.startswith(b"]", pos):
                return items, pos + 1
            pos = self._ws(self._expect(pos, b","))

    async def _value(self, pos: int, position: int | None = None) -> tuple[Any, int]:
        """The value starting at `pos`, and where it ends. Its end is looked for in a window of
        the text that grows up to the item limit, so that a larger item costs no more."""
        size, limit, window = len(self.data), self.max_item_bytes, FIRST_WINDOW
        while True:
            stop = min(size, pos + window)
            text = self._text(pos, window)
            try:
                _, end = _RAW.raw_decode(text)
                whole = end < len(text) or stop == size  # (a number may go on)
            except ValueError as exc:
                if stop == size:
                    where = pos + _byte_length(text, getattr(exc, "pos", 0))
                    raise self._error(where, getattr(exc, "msg", str(exc))) from None
                whole = False
            if whole:
                length = _byte_length(text, end)
                if length > limit:
                    raise _too_large(limit, position)
                if length > STEP_BYTES:
                    await asyncio.sleep(0)
                try:
                    return decode_json(self.data[pos : pos + length]), pos + length
                except ValueError as exc:
                    raise self._error(pos, str(exc).removeprefix("malformed JSON: ")) from None
            if window > limit:
                raise _too_large(limit, position)
            window = min(window * 8, limit + 1)
            if window > STEP_BYTES:
                await asyncio.sleep(0)

    def _text(self, pos: int, size: int) -> str:
        """The text of `size` bytes from `pos` (less a character cut at its end)."""
        piece = self.data[pos : pos + size]
        try:
            return codecs.utf_8_decode(piece, "strict", pos + size >= len(self.data))[0]
        except UnicodeDecodeError as exc:
            raise self._error(pos + exc.start, "invalid UTF-8") from None

    def _end(self, fields: dict[str, Any], pos: int) -> dict[str, Any]:
        if self._ws(pos) != len(self.data):
            raise self._error(self._ws(pos), "trailing characters")
        return fields

    def _ws(self, pos: int) -> int:
        match = _WS.match(self.data, pos)
        return pos if match is None else match.end()

    def _expect(self, pos: int, char: bytes) -> int:
        if not self.data.startswith(char, pos):
            raise self._error(pos, f"expected {char.decode()!r}")
        return pos + 1

    def _error(self, pos: int, message: str) -> InvalidInput:
        line = self.data.count(b"\n", 0, pos) + 1
        column = pos - self.data.rfind(b"\n", 0, pos)
        return _malformed(f"{message} (the value at line {line} column {column})")


def _byte_length(text: str, end: int) -> int:
    """The UTF-8 length of `text[:end]`."""
    return end if text.isascii() else len(text[:end].encode())


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
