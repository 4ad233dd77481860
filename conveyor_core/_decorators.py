"""`@single_task` and `@batch_task`, typed so that an editor knows what a task takes and yields.

`single_task` gives a `SingleTask[In, Out]` and `batch_task` a `BatchTask[In, Out]`: `In` is the
type of the item (of a batch's members), `Out` the type of each result. A returned list, a
generator or an async generator fans out, so its element type is `Out`; a returned `None`
filters the item out, so `Out` never includes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

from ._policy import ErrorAction, ErrorHandler
from ._tasks import BatchTask, SingleTask

__all__ = ["batch_task", "single_task"]

P = ParamSpec("P")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


class SingleDecorator(Protocol):
    """What `single_task(**options)` returns: apply it to a function."""

    @overload
    def __call__(self, func: Callable[Concatenate[I, P], AsyncIterable[O]]) -> SingleTask[I, O]: ...
    @overload
    def __call__(
        self, func: Callable[Concatenate[I, P], Coroutine[Any, Any, list[O]]]
    ) -> SingleTask[I, O]: ...
    @overload
    def __call__(
        self, func: Callable[Concatenate[I, P], Coroutine[Any, Any, O | None]]
    ) -> SingleTask[I, O]: ...
    @overload
    def __call__(self, func: Callable[Concatenate[I, P], Iterator[O]]) -> SingleTask[I, O]: ...
    @overload
    def __call__(self, func: Callable[Concatenate[I, P], list[O]]) -> SingleTask[I, O]: ...
    @overload
    def __call__(self, func: Callable[Concatenate[I, P], O | None]) -> SingleTask[I, O]: ...
    @overload
    def __call__(self, func: Callable[..., Any]) -> SingleTask[Any, Any]: ...


class BatchDecorator(Protocol):
    """What `batch_task(...)` returns: apply it to a function of a list."""

    @overload
    def __call__(
        self, func: Callable[Concatenate[list[I], P], AsyncIterable[O]]
    ) -> BatchTask[I, O]: ...
    @overload
    def __call__(
        self, func: Callable[Concatenate[list[I], P], Coroutine[Any, Any, list[O]]]
    ) -> BatchTask[I, O]: ...
    @overload
    def __call__(
        self, func: Callable[Concatenate[list[I], P], Coroutine[Any, Any, O | None]]
    ) -> BatchTask[I, O]: ...
    @overload
    def __call__(self, func: Callable[Concatenate[list[I], P], Iterator[O]]) -> BatchTask[I, O]: ...
    @overload
    def __call__(self, func: Callable[Concatenate[list[I], P], list[O]]) -> BatchTask[I, O]: ...
    @overload
    def __call__(self, func: Callable[Concatenate[list[I], P], O | None]) -> BatchTask[I, O]: ...
    @overload
    def __call__(self, func: Callable[..., Any]) -> BatchTask[Any, Any]: ...


@overload
def single_task(func: Callable[Concatenate[I, P], AsyncIterable[O]], /) -> SingleTask[I, O]: ...
@overload
def single_task(
    func: Callable[Concatenate[I, P], Coroutine[Any, Any, list[O]]], /
) -> SingleTask[I, O]: ...
@overload
def single_task(
    func: Callable[Concatenate[I, P], Coroutine[Any, Any, O | None]], /
) -> SingleTask[I, O]: ...
@overload
def single_task(func: Callable[Concatenate[I, P], Iterator[O]], /) -> SingleTask[I, O]: ...
@overload
def single_task(func: Callable[Concatenate[I, P], list[O]], /) -> SingleTask[I, O]: ...
@overload
def single_task(func: Callable[Concatenate[I, P], O | None], /) -> SingleTask[I, O]: ...
@overload
def single_task(func: Callable[..., Any], /) -> SingleTask[Any, Any]: ...
@overload
def single_task(
    func: None = None,
    /,
    on_error: ErrorAction = "fail",
    retry_attempts: int = 1,
    retry_delay: float = 1.0,
    retry_exponential_backoff: bool = True,
    retry_max_delay: float = 60.0,
    error_handler: ErrorHandler | None = None,
    task_name: str | None = None,
    concurrency_limit: int | None = None,
    **options: Any,
) -> SingleDecorator: ...


def single_task(
    func: Callable[..., Any] | None = None,
    /,
    on_error: str = "fail",
    retry_attempts: int = 1,
    retry_delay: float = 1.0,
    retry_exponential_backoff: bool = True,
    retry_max_delay: float = 60.0,
    error_handler: ErrorHandler | None = None,
    task_name: str | None = None,
    concurrency_limit: int | None = None,
    **options: Any,
) -> Any:
    """Declare a task that processes one item at a time: `@single_task` or
    `@single_task(on_error=..., retry_attempts=..., ...)` (see `Task` for every option)."""

    def decorate(f: Callable[..., Any]) -> SingleTask[Any, Any]:
        return SingleTask(
            f,
            on_error=on_error,
            error_handler=error_handler,
            task_name=task_name,
            concurrency_limit=concurrency_limit,
            retry_attempts=retry_attempts,
            retry_delay=retry_delay,
            retry_exponential_backoff=retry_exponential_backoff,
            retry_max_delay=retry_max_delay,
            **options,
        )

    return decorate if func is None else decorate(func)


@overload
def batch_task(func: Callable[Concatenate[list[I], P], AsyncIterable[O]], /) -> BatchTask[I, O]: ...
@overload
def batch_task(
    func: Callable[Concatenate[list[I], P], Coroutine[Any, Any, list[O]]], /
) -> BatchTask[I, O]: ...
@overload
def batch_task(
    func: Callable[Concatenate[list[I], P], Coroutine[Any, Any, O | None]], /
) -> BatchTask[I, O]: ...
@overload
def batch_task(func: Callable[Concatenate[list[I], P], Iterator[O]], /) -> BatchTask[I, O]: ...
@overload
def batch_task(func: Callable[Concatenate[list[I], P], list[O]], /) -> BatchTask[I, O]: ...
@overload
def batch_task(func: Callable[Concatenate[list[I], P], O | None], /) -> BatchTask[I, O]: ...
@overload
def batch_task(func: Callable[..., Any], /) -> BatchTask[Any, Any]: ...
@overload
def batch_task(
    min_size: int = 1,
    max_size: int | None = None,
    on_error: ErrorAction = "fail",
    retry_attempts: int = 1,
    retry_delay: float = 1.0,
    retry_exponential_backoff: bool = True,
    retry_max_delay: float = 60.0,
    error_handler: ErrorHandler | None = None,
    task_name: str | None = None,
    **options: Any,
) -> BatchDecorator: ...


def batch_task(
    min_size: Any = 1,
    max_size: int | None = None,
    on_error: str = "fail",
    retry_attempts: int = 1,
    retry_delay: float = 1.0,
    retry_exponential_backoff: bool = True,
    retry_max_delay: float = 60.0,
    error_handler: ErrorHandler | None = None,
    task_name: str | None = None,
    **options: Any,
) -> Any:
    """Declare a task that processes lists of items: `@batch_task(min_size, max_size, ...)`
    (`max_size` None: `min_size`; see `BatchTask` and `Task` for every option)."""
    func = min_size if callable(min_size) else None  # bare @batch_task
    if func is not None:
        min_size = 1

    def decorate(f: Callable[..., Any]) -> BatchTask[Any, Any]:
        return BatchTask(
            f,
            min_size,
            max_size,
            on_error=on_error,
            error_handler=error_handler,
            task_name=task_name,
            retry_attempts=retry_attempts,
            retry_delay=retry_delay,
            retry_exponential_backoff=retry_exponential_backoff,
            retry_max_delay=retry_max_delay,
            **options,
        )

    return decorate if func is None else decorate(func)
