"""Single and batch tasks: their options, side inputs and calling conventions."""

from __future__ import annotations

import asyncio
import collections.abc as cabc
import copy
import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from ._base_task import BaseTask
from ._context import get_current_context
from ._errors import InvalidRunError, PipelineDefinitionError
from ._executors import CallTarget, Executor, ThreadExecutor, resolve_executor
from ._policy import ErrorHandler, RetryConfig, StagePolicy, check_on_error
from ._stage import In, Out

if TYPE_CHECKING:
    from ._pipeline import AsyncStream

__all__ = ["BatchTask", "SingleTask", "Task"]

_UNRESOLVED = object()


class Task(BaseTask[In, Out]):
    """A function applied by a pipeline: to each item (`SingleTask`) or to batches (`BatchTask`).

    Options shared by both kinds:
    `on_error` ("fail", "skip_item", "skip_batch" for batches), `retry_attempts` (attempts in all;
    1 or less: no retry), `retry_delay`, `retry_exponential_backoff`, `retry_max_delay` (or
    `retry_config`), `error_handler`, `task_name`, `concurrency_limit` (calls at once within a
    run; None or 0: no limit), `executor` (where calls run: "thread", "process" or an
    `Executor`; None: the event loop) and `run_in_thread` (the same as `executor="thread"`).

    A class whose instances are callable may be decorated: its `__call__` is the task's function
    (types and sync or async read from it); it is instantiated once per task, or once per
    worker with an executor that has workers ("process", Ray actors).
    """

    kind: ClassVar[str]

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        on_error: str = "fail",
        retry_attempts: int = 1,
        retry_delay: float = 1.0,
        retry_exponential_backoff: bool = True,
        retry_max_delay: float = 60.0,
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        concurrency_limit: int | None = None,
        run_in_thread: bool = False,
        executor: str | Executor | None = None,
    ) -> None:
        if not callable(func):
            raise PipelineDefinitionError(f"a task needs a callable, got {func!r}")
        if error_handler is not None and not hasattr(error_handler, "handle_error"):
            raise PipelineDefinitionError("error_handler must have a handle_error method")
        if not isinstance(retry_attempts, int):
            raise ValueError(f"retry_attempts must be an int, got {retry_attempts!r}")
        self.func = func
        self.task_name = task_name or str(getattr(func, "__name__", type(func).__name__))
        retry = retry_config or RetryConfig(
            max(retry_attempts, 1), retry_delay, retry_exponential_backoff, retry_max_delay
        )
        self.policy = StagePolicy(
            self.task_name, check_on_error(on_error, self.kind == "batch"), retry, error_handler
        )
        self.concurrency_limit = _check_limit(concurrency_limit)
        call = _class_call(func)
        self.is_class = call is not None
        self._spec: Callable[..., Any] = call or func  # types, sync or async are read from it
        self._local_instance: list[Any] = []  # a class's one local instance, shared by copies
        self.is_async_gen = inspect.isasyncgenfunction(self._spec)
        self.is_gen = inspect.isgeneratorfunction(self._spec)
        self.is_coroutine = _is_coroutine_function(self._spec)
        self.executor = resolve_executor(executor, run_in_thread)
        self.run_in_thread = isinstance(self.executor, ThreadExecutor)
        self._instance: Any = None
        self._raw_args: tuple[Any, ...] = ()  # the side inputs as given
        self._raw_kwargs: dict[str, Any] = {}
        self._args: tuple[Any, ...] = ()  # the same, shared (see _share)
        self._kwargs: dict[str, Any] = {}
        self._resolved: Any = _UNRESOLVED
        self._without_item = False  # called with the side inputs only (pipeline() with no data)
        self._engine_process = False  # run by the engine even if a subclass overrides process()
        self._attr_name: str | None = None
        functools.update_wrapper(self, func, updated=())
        if self.executor is not None:
            self.executor.check(self._target((), {}))

    # -- the attributes of conveyor-streaming 1.2.1 ---------------------------------------

    @property
    def on_error(self) -> str:
        return self.policy.on_error

    @on_error.setter
    def on_error(self, value: str) -> None:
        on_error = check_on_error(value, self.kind == "batch")
        self.policy = dataclasses.replace(self.policy, on_error=on_error)

    @property
    def retry_config(self) -> RetryConfig:
        return self.policy.retry

    @retry_config.setter
    def retry_config(self, value: RetryConfig | None) -> None:
        retry = value or RetryConfig(max_attempts=1)
        self.policy = dataclasses.replace(self.policy, retry=retry)

    @property
    def error_handler(self) -> ErrorHandler | None:
        return self.policy.handler

    @error_handler.setter
    def error_handler(self, value: ErrorHandler | None) -> None:
        self.policy = dataclasses.replace(self.policy, handler=value)

    @property
    def _side_args(self) -> list[Any]:
        return list(self._raw_args)

    @_side_args.setter
    def _side_args(self, value: cabc.Iterable[Any]) -> None:
        self._raw_args = tuple(value)
        self._args = tuple(_share(a) for a in self._raw_args)
        self._resolved = _UNRESOLVED

    @property
    def _side_kwargs(self) -> dict[str, Any]:
        return dict(self._raw_kwargs)

    @_side_kwargs.setter
    def _side_kwargs(self, value: cabc.Mapping[str, Any]) -> None:
        self._raw_kwargs = dict(value)
        self._kwargs = {k: _share(v) for k, v in self._raw_kwargs.items()}
        self._resolved = _UNRESOLVED

    # -- binding: methods and side inputs -------------------------------------------------

    def __set_name__(self, owner: type, name: str) -> None:
        self._attr_name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        bound = self._copy()
        bound._instance = instance
        if self._attr_name is not None:
            try:
                instance.__dict__[self._attr_name] = bound
            except (AttributeError, TypeError):
                pass
        return bound

    def with_inputs(self, *args: Any, **kwargs: Any) -> typing.Self:
        """A copy of this task whose function receives these side inputs after the item, in
        place of the ones bound before.

        Values are passed as they are; a coroutine is awaited once, an `AsyncStream` gives its
        first item, and a raw async iterator is passed through, safe to consume concurrently.
        """
        bound = self._copy()
        bound._side_args = args
        bound._side_kwargs = kwargs
        return bound

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Bind side inputs if the function still needs them, else run on the data given."""
        if (args or kwargs) and self._missing_arguments() > 0:
            bound = self._copy()  # binding by calling adds to the inputs bound before
            bound._raw_args = self._raw_args + args
            bound._args = self._args + tuple(_share(a) for a in args)
            bound._raw_kwargs = {**self._raw_kwargs, **kwargs}
            bound._kwargs = {**self._kwargs, **{k: _share(v) for k, v in kwargs.items()}}
            return bound
        return super().__call__(*args, **kwargs)

    async def process(self, items: Any) -> AsyncStream[Out]:
        """The results of this task on `items`, as a run of its own in the current context's
        mode (ordered without one)."""
        from ._pipeline import Pipeline

        engine = self._copy()
        engine._engine_process = True  # a subclass's process() calling this one: no loop
        return Pipeline(engine, context=get_current_context())(items)

    def for_run(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], *, without_item: bool
    ) -> Task[In, Out]:
        """A copy for one run: `args` in place of its positional side inputs (if any), `kwargs`
        added to its keyword ones, and, `without_item`, called with the side inputs alone."""
        run = self._copy()
        if args:
            run._side_args = args
        if kwargs:
            run._raw_kwargs = {**self._raw_kwargs, **kwargs}
            run._kwargs = {**self._kwargs, **{k: _share(v) for k, v in kwargs.items()}}
        if without_item:
            run._without_item = True
            run._check_takes_no_item()
        return run

    def _check_takes_no_item(self) -> None:
        if self.kind != "single":
            raise InvalidRunError(f"{self.name} is a {self.kind} task: call the pipeline with data")
        signature = self._signature()
        if signature is None:
            return
        instance = () if self._instance is None else (self._instance,)
        try:
            signature.bind(*instance, *self._args, **self._kwargs)
        except TypeError as exc:
            raise InvalidRunError(
                f"{self.name} takes an item ({exc}): call the pipeline with data"
            ) from None

    def _copy(self) -> typing.Self:
        clone = copy.copy(self)
        clone._resolved = _UNRESOLVED
        return clone

    def _signature(self) -> inspect.Signature | None:
        try:
            return inspect.signature(self._spec)
        except (TypeError, ValueError):
            return None

    def _missing_arguments(self) -> int:
        signature = self._signature()
        if signature is None:
            return 0
        params = list(signature.parameters.values())
        skip = 2 if self._instance is not None or self.is_class else 1
        missing = 0
        positional = len(self._args)
        for param in params[skip:]:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if param.default is not param.empty or param.name in self._kwargs:
                continue
            if param.kind is not param.KEYWORD_ONLY and positional > 0:
                positional -= 1
                continue
            missing += 1
        return missing

    async def resolve_inputs(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The side inputs as the function receives them (awaited once, then kept)."""
        if self._resolved is _UNRESOLVED:
            args = [await _resolve_side_input(a) for a in self._args]
            kwargs = {k: await _resolve_side_input(v) for k, v in self._kwargs.items()}
            self._resolved = (tuple(args), kwargs)
        resolved: tuple[tuple[Any, ...], dict[str, Any]] = self._resolved
        return resolved

    @property
    def effective_concurrency_limit(self) -> int | None:
        """Calls of this task at once within a run: `concurrency_limit`, and the executor's
        bound (`max_in_flight`), whichever is lower; None: no bound of its own."""
        executor_bound = self.executor.max_in_flight if self.executor is not None else None
        bounds = [self.concurrency_limit, executor_bound]
        return min((b for b in bounds if b is not None), default=None)

    def make_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[[Any], Any]:
        """A one-argument callable applying the function to an item (or batch); with an
        executor, the executor's bound call (it returns an awaitable)."""
        if self._without_item:  # side inputs only: in the loop, or in a thread
            alone = functools.partial(self._local(), *args, **kwargs)
            if self.run_in_thread:
                return lambda _: asyncio.to_thread(alone)
            return lambda _: alone()
        if self.executor is not None:
            return self.executor.bind(self._target(args, kwargs))
        func = self._local()
        if kwargs:
            return lambda item: func(item, *args, **kwargs)
        if args:
            return lambda item: func(item, *args)
        return func

    def _local(self) -> Callable[..., Any]:
        """The callable in this process: the function, a bound method, or the class's instance."""
        if self.is_class:
            if not self._local_instance:
                self._local_instance.append(self.func())
            return self._local_instance[0]  # type: ignore[no-any-return]
        if self._instance is not None:
            return types.MethodType(self.func, self._instance)
        return self.func

    def _target(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> CallTarget:
        return CallTarget(
            name=self.name,
            func=self.func,
            instance=self._instance,
            args=args,
            kwargs=kwargs,
            is_class=self.is_class,
            is_async=self.is_coroutine or self.is_async_gen,
            is_generator=self.is_gen or self.is_async_gen,
            local=self._local,
        )

    # -- description and types --------------------------------------------------------------

    @property
    def description(self) -> str | None:
        doc = inspect.getdoc(self.func) or (inspect.getdoc(self._spec) if self.is_class else None)
        return doc.split("\n\n")[0].strip() if doc else None

    def _hints(self) -> dict[str, Any]:
        try:
            return typing.get_type_hints(self._spec, include_extras=True)
        except Exception:
            return {}

    def _item_annotation(self) -> Any:
        signature = self._signature()
        if signature is None:
            return Any
        params = list(signature.parameters.values())
        index = 1 if _looks_like_method(self._spec, params) else 0
        if len(params) <= index:
            return Any
        return self._hints().get(params[index].name, Any)

    @property
    def output_type(self) -> Any:
        annotation = self._hints().get("return", Any)
        annotation = _strip_none(annotation)
        if self.is_gen or self.is_async_gen:
            return _first_arg(annotation)
        origin = typing.get_origin(annotation)
        if origin in (list, cabc.Iterator, cabc.AsyncIterator, cabc.Generator, cabc.AsyncGenerator):
            return _first_arg(annotation)
        return annotation

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class SingleTask(Task[In, Out]):
    """Applies its function to each item: `@single_task` or `@single_task(**options)`.

    `SingleTask(func, _side_args, _side_kwargs, on_error, retry_config, error_handler,
    task_name, concurrency_limit)` as in conveyor-streaming 1.2.1, positional or keyword; the
    other options of `Task` by keyword.
    """

    kind: ClassVar[str] = "single"

    def __init__(
        self,
        func: Callable[..., Any],
        _side_args: cabc.Iterable[Any] | None = None,
        _side_kwargs: cabc.Mapping[str, Any] | None = None,
        on_error: str = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        concurrency_limit: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            func,
            on_error=on_error,
            retry_config=retry_config,
            error_handler=error_handler,
            task_name=task_name,
            concurrency_limit=concurrency_limit,
            **options,
        )
        self._side_args = _side_args or ()
        self._side_kwargs = _side_kwargs or {}

    @property
    def input_type(self) -> Any:
        return self._item_annotation()


class BatchTask(Task[In, Out]):
    """Applies its function to lists of items: `@batch_task(min_size, max_size, ...)`.

    A batch holds at most `max_size` items (None: `min_size`). A partial batch is flushed when
    `max_wait` seconds passed since its first item (once it holds `min_size` items), and when
    the input ends if it holds at least `min_size` items; a smaller remainder is dropped and
    counted. `BatchTask(func, min_size, max_size, _side_args, _side_kwargs, on_error,
    retry_config, error_handler, task_name)` as in conveyor-streaming 1.2.1.
    """

    kind: ClassVar[str] = "batch"

    def __init__(
        self,
        func: Callable[..., Any],
        min_size: int = 1,
        max_size: int | None = None,
        _side_args: cabc.Iterable[Any] | None = None,
        _side_kwargs: cabc.Mapping[str, Any] | None = None,
        on_error: str = "fail",
        retry_config: RetryConfig | None = None,
        error_handler: ErrorHandler | None = None,
        task_name: str | None = None,
        *,
        max_wait: float | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(min_size, int) or min_size < 1:
            raise ValueError(f"min_size must be an int >= 1, got {min_size!r}")
        if max_size is None or max_size == 0:  # 1.2.1: `max_size or min_size`
            max_size = min_size
        if not isinstance(max_size, int) or max_size < min_size:
            raise ValueError(f"max_size must be an int >= min_size ({min_size}), got {max_size!r}")
        if max_wait is not None and not max_wait > 0:
            raise ValueError(f"max_wait must be a number of seconds > 0, got {max_wait!r}")
        super().__init__(
            func,
            on_error=on_error,
            retry_config=retry_config,
            error_handler=error_handler,
            task_name=task_name,
            **options,
        )
        self.max_size = max_size
        self.min_size = min_size
        self.max_wait = max_wait
        self._side_args = _side_args or ()
        self._side_kwargs = _side_kwargs or {}

    @property
    def input_type(self) -> Any:
        annotation = self._item_annotation()
        if typing.get_origin(annotation) in (list, cabc.Sequence, cabc.Iterable):
            return _first_arg(annotation)
        return Any


# -- side inputs ------------------------------------------------------------------------------


class _SharedIterator:
    """A raw async iterator given as a side input, which concurrent calls may consume: one
    step at a time. An async generator's `asend`, `athrow` and `aclose` work as on itself."""

    def __init__(self, iterator: AsyncIterator[Any]) -> None:
        self._iterator: Any = iterator
        self._lock = asyncio.Lock()

    def __aiter__(self) -> _SharedIterator:
        return self

    async def __anext__(self) -> Any:
        async with self._lock:
            return await self._iterator.__anext__()

    async def asend(self, value: Any) -> Any:
        async with self._lock:
            return await self._iterator.asend(value)

    async def athrow(self, *args: Any) -> Any:
        async with self._lock:
            return await self._iterator.athrow(*args)

    async def aclose(self) -> None:
        async with self._lock:
            await self._iterator.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._iterator, name)


class _Once:
    """A coroutine side input, awaited the first time a run needs it."""

    def __init__(self, awaitable: cabc.Awaitable[Any]) -> None:
        self._awaitable = awaitable
        self._future: asyncio.Future[Any] | None = None

    async def get(self) -> Any:
        # one future shared by every run: overlapping runs wait for the same value, and a run
        # cancelled meanwhile does not cancel it for the others
        if self._future is None:
            self._future = asyncio.ensure_future(_contained(self._awaitable))
        try:
            return await asyncio.shield(self._future)
        except _Contained as contained:
            raise contained.error from None


class _Contained(Exception):
    """Carries a SystemExit or KeyboardInterrupt out of a task, which would stop the loop."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def _contained(awaitable: cabc.Awaitable[Any]) -> Any:
    try:
        return await awaitable
    except (SystemExit, KeyboardInterrupt) as error:
        raise _Contained(error) from error


def _share(value: Any) -> Any:
    from ._pipeline import AsyncStream

    if isinstance(value, AsyncStream):
        return _Once(_first_or_none(value))
    if inspect.isawaitable(value):
        return _Once(value)
    if isinstance(value, cabc.AsyncIterator):
        return _SharedIterator(value)
    return value


async def _first_or_none(stream: AsyncStream[Any]) -> Any:
    """A stream side input's first item (None if it has none, as in 1.2.1)."""
    try:
        return await stream.first()
    except StopAsyncIteration:
        return None


async def _resolve_side_input(value: Any) -> Any:
    return await value.get() if isinstance(value, _Once) else value


# -- small helpers ------------------------------------------------------------------------------


def _check_limit(limit: Any) -> int | None:
    """A concurrency limit: None or 0 for none, else an int >= 1."""
    if limit is None or limit == 0:
        return None
    if not isinstance(limit, int) or limit < 0:
        raise ValueError(f"concurrency_limit must be an int >= 0 (0: no limit), got {limit!r}")
    return limit


def _is_coroutine_function(func: Any) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004
    return call is not None and inspect.iscoroutinefunction(call)


def _class_call(func: Any) -> Callable[..., Any] | None:
    """The `__call__` of a class whose instances are callable; None for anything else, such as
    a function or a type used as one (`int`, `str`)."""
    if inspect.isclass(func):
        for klass in func.__mro__[:-1]:  # object's own does not count
            if "__call__" in vars(klass):
                return vars(klass)["__call__"]  # type: ignore[no-any-return]
    return None


def _looks_like_method(func: Any, params: list[inspect.Parameter]) -> bool:
    return (
        bool(params)
        and params[0].name in ("self", "cls")
        and "." in getattr(func, "__qualname__", "")
    )


def _first_arg(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    return args[0] if args else Any


def _strip_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
        if rest:
            return typing.Union[tuple(rest)]  # noqa: UP007
    return annotation
