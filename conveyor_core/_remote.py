"""What a worker elsewhere runs (a process of a pool, a Ray actor or task): one call of a task.

A task's function travels as a `Payload`. A decorated function or class cannot be pickled by
reference as it is (its module's name holds the task, not the function), so a payload pickles as
a reference to that name when it resolves here, and the worker imports it and takes the task's
function or class; anything else pickles as itself. A decorated class is instantiated once per
worker process and its instance is called. Standard library only: workers import this module.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

__all__ = ["CallInterrupted", "Payload", "invoke", "run_bound"]

_instances: dict[Any, Any] = {}  # in a worker: each decorated class's one instance
_instances_lock = threading.Lock()


class CallInterrupted(BaseException):
    """Raised inside a worker's call that was cancelled. A BaseException, so that a task's own
    `except Exception` does not swallow it."""


class Payload:
    """A picklable reference to what a task calls: its function (with the object of a method) or
    its class. `main_by_reference`: a name in `__main__` pickles as a reference too (right for
    spawned processes, which import the main module again; not for Ray workers)."""

    __slots__ = ("func", "instance", "is_class", "main_by_reference")

    def __init__(
        self,
        func: Callable[..., Any],
        instance: Any = None,
        is_class: bool = False,
        main_by_reference: bool = True,
    ) -> None:
        self.func = func
        self.instance = instance
        self.is_class = is_class
        self.main_by_reference = main_by_reference

    def __reduce__(self) -> tuple[Any, ...]:
        module = getattr(self.func, "__module__", None)
        qualname = getattr(self.func, "__qualname__", "")
        if module and (self.main_by_reference or module != "__main__"):
            found = _lookup(module, qualname, load=False)
            if found is self.func or getattr(found, "func", None) is self.func:
                return (_by_reference, (module, qualname, self.instance, self.is_class))
        return (Payload, (self.func, self.instance, self.is_class, self.main_by_reference))

    def resolve(self) -> Callable[..., Any]:
        """The callable in this process (a class: its one instance in this process)."""
        if self.is_class:
            with _instances_lock:
                instance = _instances.get(self.func)
                if instance is None:
                    instance = _instances[self.func] = self.func()
            return instance  # type: ignore[no-any-return]
        if self.instance is not None:
            return types.MethodType(self.func, self.instance)
        return self.func


def invoke(func: Callable[..., Any], item: Any, args: tuple[Any, ...], kwargs: Any) -> Any:
    """One call, as a worker makes it: an awaitable result is run to its end, a generator
    returned (not a generator function) is collected into a list, which fans out the same."""
    result = func(item, *args, **kwargs)
    if inspect.isawaitable(result):
        result = asyncio.run(_awaited(result))
    if isinstance(result, types.GeneratorType):
        result = list(result)
    elif isinstance(result, types.AsyncGeneratorType):
        result = asyncio.run(_collected(result))
    return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


async def _collected(agen: Any) -> list[Any]:
    return [value async for value in agen]


def _by_reference(module: str, qualname: str, instance: Any, is_class: bool) -> Payload:
    found = _lookup(module, qualname, load=True)
    func = getattr(found, "func", found) if _is_task(found) else found
    return Payload(func, instance, is_class)


def _lookup(module: str, qualname: str, *, load: bool) -> Any:
    target: Any = importlib.import_module(module) if load else sys.modules.get(module)
    for part in qualname.split("."):
        if target is None or part == "<locals>":
            return None
        target = getattr(target, part, None)
    return target


def _is_task(obj: Any) -> bool:
    from ._tasks import Task

    return isinstance(obj, Task)


def run_bound(bound: tuple[Payload, tuple[Any, ...], dict[str, Any]], item: Any) -> Any:
    """A Ray task's body: one call of the bound payload with its side inputs."""
    payload, args, kwargs = bound
    return invoke(payload.resolve(), item, args, kwargs)
