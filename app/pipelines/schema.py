"""The JSON side of a pipeline's item types: a JSON schema and a validator per annotation.

Every item the service takes, from a JSON body or an NDJSON line, goes one way: its JSON text is
decoded by `decode_json` (strict JSON: no `NaN` or `Infinity`, and no number too large for a
double, such as `1e999`), then validated against the item type in pydantic's strict JSON mode.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from typing import Any

from pydantic import PydanticSchemaGenerationError, TypeAdapter, ValidationError
from pydantic_core import from_json

from ..encoding import dumps
from ..errors import InvalidInput

__all__ = ["ItemType", "decode_json", "item_errors"]

log = logging.getLogger("conveyor.service.registry")

MAX_LISTED_ERRORS = 20  # a 422 lists this many errors in detail; `positions` lists them all
STEP_BYTES = 256 << 10  # items validated at once; then other requests get the event loop
_OVERFLOW_HINT = (re.compile(rb"[eE]|\d{309}"), re.compile(r"[eE]|\d{309}"))  # bytes, str


def decode_json(text: bytes | bytearray | str) -> Any:
    """A JSON value as the service takes it; ValueError (`malformed JSON: ...`) otherwise.

    Strict JSON: `NaN`, `Infinity` are refused, and so is a number that has no finite double
    (`1e999`), which a parser would read as infinity.
    """
    try:
        value = from_json(text, allow_inf_nan=False)
    except ValueError as exc:
        raise ValueError(f"malformed JSON: {exc}") from None
    hint = _OVERFLOW_HINT[isinstance(text, str)]
    if hint.search(text) is not None and not _finite(value):  # type: ignore[arg-type]
        raise ValueError("malformed JSON: a number out of range (no finite double)")
    return value


def _finite(value: Any) -> bool:
    """True unless a float in `value` (lists and dicts walked) is infinite."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, float):
            if not math.isfinite(node):
                return False
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
    return True


class ItemType:
    """One item annotation (`int`, a pydantic model, `Any`...) as a JSON schema and a validator.

    Items are validated as JSON in pydantic's strict mode: `"3"` is not an `int`, an object is
    a model. An annotation pydantic cannot describe (an arbitrary class) accepts any JSON value.
    """

    def __init__(self, annotation: Any, *, where: str) -> None:
        self.annotation = annotation
        self._one: TypeAdapter[Any] | None = None
        self._many: TypeAdapter[list[Any]] | None = None
        self.schema: dict[str, Any] = {}
        if annotation is Any or annotation is object:
            return
        try:
            self._one = TypeAdapter(annotation)
            self._many = TypeAdapter(list[annotation])  # type: ignore[valid-type]
            self.schema = self._one.json_schema()
        except (PydanticSchemaGenerationError, TypeError, ValueError) as exc:
            log.warning("no JSON schema for %s (%r): any JSON value is accepted", where, exc)
            self._one = self._many = None
            self.schema = {}

    @property
    def validates(self) -> bool:
        return self._many is not None

    async def validate_many(self, items: list[Any]) -> list[Any]:
        """The items (decoded by `decode_json`) as the pipeline takes them; `InvalidInput`
        naming every bad position. Validated `STEP_BYTES` of JSON at a time, so that a large
        body does not hold the event loop."""
        if self._many is None:
            return items
        out: list[Any] = []
        errors: list[dict[str, Any]] = []
        start, parts, size = 0, [], 0
        for position, item in enumerate(items):  # encoded and validated STEP_BYTES at a time
            parts.append(dumps(item))
            size += len(parts[-1]) + 1
            if size >= STEP_BYTES or position == len(items) - 1:
                try:
                    out += self._many.validate_json(b"[%s]" % b",".join(parts), strict=True)
                except ValidationError as exc:
                    errors += item_errors(exc, offset=start)
                start, parts, size = position + 1, [], 0
                if start < len(items):
                    await asyncio.sleep(0)
        if errors:
            positions = sorted({e["position"] for e in errors})
            raise InvalidInput(
                f"{len(positions)} item(s) do not match the pipeline's input schema, "
                f"at positions {_preview(positions)}",
                positions=positions,
                errors=errors[:MAX_LISTED_ERRORS],
            )
        return out

    def validate_line(self, line: bytes) -> Any:
        """One item from its JSON text (an NDJSON line): `decode_json`, then the item type, as
        for the items of a JSON body; ValueError with a readable reason when it is bad."""
        value = decode_json(line)
        if self._one is None:
            return value
        try:
            return self._one.validate_json(line, strict=True)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = "".join(f"[{part!r}]" for part in first["loc"])
            raise ValueError(f"{where + ': ' if where else ''}{first['msg']}") from None


def item_errors(exc: ValidationError, offset: int = 0) -> list[dict[str, Any]]:
    """Pydantic's errors of a list of items, keyed by the item's position (+ `offset`)."""
    out = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        position, *loc = error["loc"] or (None,)
        if isinstance(position, int):
            position += offset
        out.append({"position": position, "loc": loc, "msg": error["msg"], "type": error["type"]})
    return out


def _preview(positions: list[int], limit: int = 10) -> str:
    shown = ", ".join(map(str, positions[:limit]))
    return f"[{shown}{', ...' if len(positions) > limit else ''}]"
