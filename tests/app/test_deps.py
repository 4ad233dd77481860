"""app.api.deps: the routes' dependencies run in the event loop, none in FastAPI's threads."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from fastapi.routing import APIRoute

from app.api.routes import docs, health, jobs, metrics, pipelines, playground


def _calls(dependant: Any) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def test_no_dependency_runs_in_a_worker_thread() -> None:
    """FastAPI runs a plain `def` dependency (or endpoint) in its thread pool: a thread hop for
    each, on every request. Every one here is `async def` (or an object whose `__call__` is)."""
    checked, threaded = 0, []
    routes = [
        r for m in (docs, health, jobs, metrics, pipelines, playground) for r in m.router.routes
    ]
    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        for call in [route.dependant.call, *_calls(route.dependant)]:
            checked += 1
            target = call if inspect.isfunction(call) else type(call).__call__
            if not inspect.iscoroutinefunction(target):
                threaded.append(f"{route.path}: {getattr(call, '__qualname__', call)}")
    assert checked > 20 and threaded == []
