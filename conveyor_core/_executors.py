"""Executors: where a task's calls run when not in the event loop (a thread, processes, Ray).

The protocol, for the built-in executors and your own:

    class Executor:
        max_in_flight: int | None            # calls of one stage at once in a run (None: no bound)
        def describe(self) -> str            # "thread", "process", "ray-actors x2", ...
        def check(self, target) -> None      # at declaration: raise PipelineDefinitionError if
                                             # this executor cannot run the task
        def bind(self, target) -> call       # per run: call(item) -> awaitable of the result
        async def aclose(self) -> None       # release pools, actors (idempotent; may be reused)

`target` (a `CallTarget`) holds what calls need: the function or class, the object of a method,
the run's resolved side inputs, the stage's name. Awaiting `call(item)` runs one call elsewhere
and returns its value, or raises the task's own exception (a worker that died: `WorkerLost`).
Cancelling that await cancels the call where it runs, and the await ends once it has stopped.
The engine treats the call like any async call: ordering, batching, retries, skips, handlers,
events and stage timings work as they do in the loop; the stage runs at most
`min(concurrency_limit, executor.max_in_flight)` calls at once (`Task.effective_concurrency_limit`).
"""

from __future__ import annotations

import abc
import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ._errors import PipelineDefinitionError

__all__ = [
    "CallTarget",
    "Executor",
    "ThreadExecutor",
    "resolve_executor",
]

RAY_HINT = 'pip install "conveyor-streaming-core[ray]"'

Call = Callable[[Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True, eq=False)
class CallTarget:
    """What the calls of one stage in one run need, wherever they run.

    `func` is the task's function, or its class for a decorated class (`is_class`: instantiate
    it where the calls run, then call the instance); `instance` the object of a method task;
    `args` and `kwargs` the run's side inputs, already resolved. `local()` gives the callable
    in this process (a class instantiated once per task).
    """

    name: str
    func: Callable[..., Any]
    instance: Any = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    is_class: bool = False
    is_async: bool = False
    is_generator: bool = False
    local: Callable[[], Callable[..., Any]] | None = field(default=None, repr=False)

    def local_callable(self) -> Callable[..., Any]:
        """The callable in this process, as the task runs it without an executor."""
        if self.local is not None:
            return self.local()
        return self.func


class Executor(abc.ABC):
    """Runs a task's calls somewhere else than the event loop (see the module's docstring)."""

    max_in_flight: int | None = None

    @abc.abstractmethod
    def describe(self) -> str:
        """A short name for listings: "thread", "process", "ray-actors x2", ..."""

    def check(self, target: CallTarget) -> None:
        """Raise `PipelineDefinitionError` if this executor cannot run `target` (at declaration).

        By default, generator functions are refused: their values would come back at once.
        """
        if target.is_generator:
            raise PipelineDefinitionError(
                f"task {target.name}: executor {self.describe()!r} does not run generator "
                "functions; return a list instead"
            )

    @abc.abstractmethod
    def bind(self, target: CallTarget) -> Call:
        """The async callable that runs one call of `target` per item (or batch)."""

    async def aclose(self) -> None:  # noqa: B027 (an optional hook: nothing to release here)
        """Release what this executor holds (pools, actors). Safe to call again."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class ThreadExecutor(Executor):
    """`executor="thread"` (or `run_in_thread=True`): a blocking sync function runs in the
    event loop's default thread pool, so the loop stays free. A thread cannot be stopped: a call
    whose await is cancelled goes on in its thread until it returns, and its result is dropped."""

    def describe(self) -> str:
        return "thread"

    def check(self, target: CallTarget) -> None:
        if target.is_async or target.is_generator:
            raise PipelineDefinitionError(
                f"task {target.name}: run_in_thread (executor='thread') is for plain "
                "(blocking) functions"
            )

    def bind(self, target: CallTarget) -> Call:
        func = target.local_callable()
        args, kwargs = target.args, target.kwargs

        def call(item: Any) -> Awaitable[Any]:
            return asyncio.to_thread(func, item, *args, **kwargs)

        return call


_THREAD = ThreadExecutor()
_default_process: Executor | None = None
_default_lock = threading.Lock()


def _process_executor() -> Executor:
    """The one `ProcessExecutor` that `executor="process"` means, shared by every such task."""
    global _default_process
    with _default_lock:
        if _default_process is None:
            from ._process import ProcessExecutor

            _default_process = ProcessExecutor()
        return _default_process


def resolve_executor(executor: str | Executor | None, run_in_thread: bool) -> Executor | None:
    """The executor an `executor=` option (and `run_in_thread`) stands for; None: the loop."""
    if run_in_thread:
        if executor not in (None, "thread") and not isinstance(executor, ThreadExecutor):
            raise PipelineDefinitionError(
                f"run_in_thread=True means executor='thread', not {executor!r}: give one of them"
            )
        return _THREAD
    if executor is None or isinstance(executor, Executor):
        return executor
    if executor == "thread":
        return _THREAD
    if executor == "process":
        return _process_executor()
    hint = ""
    if isinstance(executor, str) and executor.startswith("ray"):
        hint = " (for Ray: from conveyor_core.ray import RayActors, RayTasks)"
    raise PipelineDefinitionError(
        f"executor must be 'thread', 'process' or an Executor instance, got {executor!r}{hint}"
    )
