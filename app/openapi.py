"""The OpenAPI document: FastAPI's, plus the run request body and every pipeline's item schemas.

Each pipeline `<name>` adds `pipeline.<name>.input` and `pipeline.<name>.output` (and the models
they use, as `pipeline.<name>.<Model>`) to `components.schemas`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from .api.models import RunRequest, WireEvent
from .pipelines import Registry
from .pipelines.schema import ItemType

__all__ = ["build_openapi"]

REF = "#/components/schemas/{model}"


def build_openapi(app: FastAPI, registry: Registry) -> dict[str, Any]:
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        _add(schemas, "RunRequest", RunRequest.model_json_schema(ref_template=REF))
        events = TypeAdapter(WireEvent).json_schema(ref_template=REF)
        _add(schemas, "WireEvent", events)
        for name, entry in registry.items():
            for end, item_type in (("input", entry.input), ("output", entry.output)):
                _add(schemas, f"pipeline.{name}.{end}", _schema(item_type, f"pipeline.{name}."))
        app.openapi_schema = document
    return app.openapi_schema


def _schema(item_type: ItemType, prefix: str) -> dict[str, Any]:
    if not item_type.validates:
        return {}
    return TypeAdapter(item_type.annotation).json_schema(
        ref_template=REF.replace("{model}", prefix + "{model}")
    )


def _add(schemas: dict[str, Any], key: str, schema: dict[str, Any]) -> None:
    defs = schema.pop("$defs", {})
    prefix = key.rsplit(".", 1)[0] + "." if key.startswith("pipeline.") else ""
    for name, definition in defs.items():
        schemas.setdefault(prefix + name, definition)
    schemas[key] = schema
