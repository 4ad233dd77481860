"""The JSON side of a pipeline's item types: a JSON schema and a validator per annotation."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import PydanticSchemaGenerationError, TypeAdapter, ValidationError
from pydantic_core import from_json

from ..encoding import dumps
from ..errors import InvalidInput

__all__ = ["ItemType", "item_errors"]

log = logging.getLogger("conveyor.service.registry")

MAX_LISTED_ERRORS = 20  # a 422 lists this many errors in detail; `positions` lists them all


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

    def validate_many(self, items: list[Any]) -> list[Any]:
        """The items as the pipeline takes them; `InvalidInput` naming every bad position."""
        if self._many is None:
            return items
        try:
            return self._many.validate_json(dumps(items), strict=True)
        except ValidationError as exc:
            errors = item_errors(exc)
            positions = sorted({e["position"] for e in errors})
            raise InvalidInput(
                f"{len(positions)} item(s) do not match the pipeline's input schema, "
                f"at positions {_preview(positions)}",
                positions=positions,
                errors=errors[:MAX_LISTED_ERRORS],
            ) from None

    def validate_line(self, line: bytes) -> Any:
        """One item from its JSON text; ValueError with a readable reason when it is bad."""
        if self._one is None:
            try:
                return from_json(line)
            except ValueError as exc:
                raise ValueError(f"malformed JSON: {exc}") from None
        try:
            return self._one.validate_json(line, strict=True)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            if first["type"] == "json_invalid":
                raise ValueError(f"malformed JSON: {first['ctx']['error']}") from None
            where = "".join(f"[{part!r}]" for part in first["loc"])
            raise ValueError(f"{where + ': ' if where else ''}{first['msg']}") from None


def item_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors of a list of items, keyed by the item's position."""
    out = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        position, *loc = error["loc"] or (None,)
        out.append({"position": position, "loc": loc, "msg": error["msg"], "type": error["type"]})
    return out


def _preview(positions: list[int], limit: int = 10) -> str:
    shown = ", ".join(map(str, positions[:limit]))
    return f"[{shown}{', ...' if len(positions) > limit else ''}]"
