"""The registry: every servable pipeline by name, with its description, stages and schemas.

The built-in pipelines come from `app.pipelines.builtin`; each module named in CONVEYOR_PIPELINES
adds its own: it defines `PIPELINES: dict[str, Pipeline | task]` and, optionally,
`EXAMPLES: dict[str, list]` (an example input per pipeline, shown by the playground). A module's
pipeline may replace a built-in one of the same name; two modules may not define the same name.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor_core import Executor, Pipeline, as_pipeline

from ..errors import PipelineNotFound, RegistryError
from .schema import ItemType

__all__ = ["PipelineEntry", "Registry"]

log = logging.getLogger("conveyor.service.registry")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True, slots=True)
class PipelineEntry:
    """One registered pipeline and what the API says about it."""

    name: str
    pipeline: Pipeline
    description: str | None
    input: ItemType = field(repr=False)
    output: ItemType = field(repr=False)
    example: list[Any] | None = None

    @classmethod
    def build(
        cls, name: str, obj: Any, *, description: str | None = None, example: Any = None
    ) -> PipelineEntry:
        if not isinstance(name, str) or not NAME.match(name):
            raise RegistryError(f"invalid pipeline name {name!r}: use letters, digits, _ . -")
        try:
            pipeline = as_pipeline(obj)
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"{name!r} is not a pipeline or task: {exc}") from exc
        if example is not None and not isinstance(example, list):
            raise RegistryError(f"the example of {name!r} must be a list of items")
        return cls(
            name=name,
            pipeline=pipeline,
            description=description or pipeline.description,
            input=ItemType(pipeline.input_type, where=f"the input of {name!r}"),
            output=ItemType(pipeline.output_type, where=f"the output of {name!r}"),
            example=example,
        )

    def stages(self) -> list[dict[str, Any]]:
        out = []
        for stage in self.pipeline.stages:
            info: dict[str, Any] = {"name": stage.name, "kind": stage.kind}
            executor = getattr(stage, "executor", None)
            if executor is not None:  # else its calls run in the service's event loop
                info["executor"] = executor.describe()
            if stage.kind == "batch":
                for option in ("max_size", "min_size", "max_wait"):
                    info[option] = getattr(stage, option, None)
            out.append(info)
        return out

    def executors(self) -> list[Executor]:
        """The executors of its stages (each once), which the service closes when it stops."""
        found: dict[int, Executor] = {}
        for stage in self.pipeline.stages:
            executor = getattr(stage, "executor", None)
            if executor is not None:
                found.setdefault(id(executor), executor)
        return list(found.values())

    def describe(self) -> dict[str, Any]:
        """The entry as `GET /pipelines/{name}` answers it."""
        return {
            "name": self.name,
            "description": self.description,
            "stages": self.stages(),
            "input_schema": self.input.schema,
            "output_schema": self.output.schema,
            "example": self.example,
        }


class Registry(Mapping[str, PipelineEntry]):
    """Name to `PipelineEntry`, in registration order."""

    def __init__(
        self,
        entries: Mapping[str, PipelineEntry] | None = None,
        *,
        max_in_flight: int | None = None,
    ) -> None:
        self._entries: dict[str, PipelineEntry] = {}
        self._max_in_flight = max_in_flight
        for entry in (entries or {}).values():
            self.add(entry)

    def __getitem__(self, name: str) -> PipelineEntry:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def executors(self) -> list[Executor]:
        """Every executor of the registered pipelines' stages, each once."""
        found: dict[int, Executor] = {}
        for entry in self._entries.values():
            for executor in entry.executors():
                found.setdefault(id(executor), executor)
        return list(found.values())

    def entry(self, name: str) -> PipelineEntry:
        """The entry, or `PipelineNotFound` (404)."""
        try:
            return self._entries[name]
        except KeyError:
            raise PipelineNotFound(f"no pipeline named {name!r}", pipelines=list(self)) from None

    def add(self, entry: PipelineEntry) -> None:
        """Register `entry`, giving it the registry's bound if its pipeline sets none."""
        if self._max_in_flight is not None and entry.pipeline.max_in_flight is None:
            entry = replace(entry, pipeline=entry.pipeline.with_max_in_flight(self._max_in_flight))
        self._entries[entry.name] = entry

    @classmethod
    def load(
        cls,
        modules: list[str] | tuple[str, ...] = (),
        *,
        builtin: bool = True,
        max_in_flight: int | None = None,
    ) -> Registry:
        """The built-in pipelines plus those of `modules`; `RegistryError` says what is wrong.

        `max_in_flight` becomes the bound of every pipeline that does not set its own.
        """
        registry = cls(max_in_flight=max_in_flight)
        if builtin:
            from .builtin import builtin_entries

            for entry in builtin_entries():
                registry.add(entry)
        owners: dict[str, str] = {}
        for module_name in modules:
            for entry in _module_entries(module_name):
                if entry.name in owners:
                    raise RegistryError(
                        f"pipeline {entry.name!r} is defined by both {owners[entry.name]} "
                        f"and {module_name}"
                    )
                if entry.name in registry:
                    log.info("pipeline %r of %s replaces the built-in one", entry.name, module_name)
                owners[entry.name] = module_name
                registry.add(entry)
        return registry


def _module_entries(module_name: str) -> list[PipelineEntry]:
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise RegistryError(
            f"CONVEYOR_PIPELINES: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    pipelines = getattr(module, "PIPELINES", None)
    if not isinstance(pipelines, Mapping):
        raise RegistryError(
            f"CONVEYOR_PIPELINES: module {module_name!r} must define "
            f"PIPELINES: dict[str, Pipeline | task], found {type(pipelines).__name__}"
        )
    examples = getattr(module, "EXAMPLES", None) or {}
    if not isinstance(examples, Mapping):
        raise RegistryError(f"{module_name}.EXAMPLES must be a dict of name to a list of items")
    entries = []
    for name, obj in pipelines.items():
        try:
            entries.append(PipelineEntry.build(name, obj, example=examples.get(name)))
        except RegistryError as exc:
            raise RegistryError(f"CONVEYOR_PIPELINES: {module_name}.PIPELINES: {exc}") from exc
    return entries
