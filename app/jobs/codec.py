"""Stored events as JSON bytes, and back: what both job stores keep of each event."""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import from_json, to_json

__all__ = ["dumps", "loads"]

_DIGITS = 4000  # under sys.get_int_max_str_digits()'s default, 4300


def dumps(value: Any) -> bytes:
    """Compact JSON of a JSON-ready value (a stored event, a record field)."""
    return to_json(value, inf_nan_mode="null")


def loads(data: bytes | str) -> Any:
    """JSON written by `dumps`, integers of any length included.

    pydantic's parser, like `int(str)`, refuses integers over Python's digit limit (4300 by
    default) which `dumps` writes all the same; such documents go to the standard parser,
    whose integers are converted in pieces below the limit.
    """
    try:
        return from_json(data)
    except ValueError:
        return json.loads(data, parse_int=_int)


def _int(text: str) -> int:
    """`int(text)` for a JSON integer of any length."""
    if len(text) <= _DIGITS:
        return int(text)
    digits = text.lstrip("-")
    value = 0
    for start in range(0, len(digits), _DIGITS):
        piece = digits[start : start + _DIGITS]
        value = value * 10 ** len(piece) + int(piece)
    return -value if text.startswith("-") else value
