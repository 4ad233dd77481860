"""The error policy, in one place: retries with backoff, custom handlers, skip or fail.

A task call that raises is retried up to `RetryConfig.max_attempts` times in all. When every
attempt failed, the task's `error_handler` decides first if it has one: `(True, value)` goes on
with `value`, `(False, _)` re-raises the error (the run fails). Without a handler, `on_error`
decides: "fail" re-raises the task's own exception, "skip_item" / "skip_batch" report an item
error and drop the item or batch. A batch task with "skip_item" probes its members one by one,
skips the ones that fail alone, and runs the batch again on the others.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = [
    "SKIPPED",
    "ErrorAction",
    "ErrorHandler",
    "LoggingErrorHandler",
    "Observer",
    "OnError",
    "Reporter",
    "RetryConfig",
    "StagePolicy",
]

logger = logging.getLogger("conveyor_core")

OnError = Literal["fail", "skip_item", "skip_batch"]
ErrorAction = OnError  # conveyor-streaming 1.2.1's name for the same
ON_ERROR_CHOICES: tuple[str, ...] = ("fail", "skip_item", "skip_batch")

_sleep = asyncio.sleep  # patched by tests to run retries on a virtual clock


class _Skipped:
    __slots__ = ()

    def __repr__(self) -> str:
        return "SKIPPED"


SKIPPED: Any = _Skipped()
"""Returned by the policy in place of a result when the item or batch was skipped."""


@dataclass
class RetryConfig:
    """How often and how patiently a failing call is tried again.

    `max_attempts` counts every attempt (1 or less: no retry). The delay before attempt n+1 is
    `base_delay * backoff_multiplier ** (n - 1)` with exponential backoff, else `base_delay`;
    never more than `max_delay`. It may be changed after a task was declared with it.
    """

    max_attempts: int = 3
    base_delay: float = 1.0
    exponential_backoff: bool = True
    max_delay: float = 60.0
    backoff_multiplier: float = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int):
            raise ValueError(f"retry_attempts must be an int, got {self.max_attempts!r}")
        for name in ("base_delay", "max_delay", "backoff_multiplier"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"RetryConfig.{name} must be a number >= 0, got {value!r}")

    @property
    def attempts(self) -> int:
        """Attempts in all, at least one."""
        return max(self.max_attempts, 1)

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        factor = self.backoff_multiplier ** (attempt - 1) if self.exponential_backoff else 1
        return min(self.base_delay * factor, self.max_delay)


class ErrorHandler:
    """Decides about an error once all attempts of a call failed.

    `handle_error` returns `(True, value)` to go on with `value` in place of the result (None
    filters the item out), or `(False, _)` to re-raise the error, which fails the run whatever
    the task's `on_error` says. For a batch task, `item` is the batch (a list).
    """

    async def handle_error(
        self, error: Exception, item: Any, task_name: str, attempt: int
    ) -> tuple[bool, Any]:
        return False, None


class LoggingErrorHandler(ErrorHandler):
    """Logs the error at ERROR (on `logger`, else "conveyor.error_handling") and goes on with
    `replacement_value` (None: the item is filtered out)."""

    def __init__(self, logger: logging.Logger | None = None, replacement_value: Any = None) -> None:
        self.logger = logger or logging.getLogger("conveyor.error_handling")
        self.replacement_value = replacement_value

    async def handle_error(
        self, error: Exception, item: Any, task_name: str, attempt: int
    ) -> tuple[bool, Any]:
        self.logger.error("Error in %s (attempt %d): %s", task_name, attempt, error)
        return True, self.replacement_value


class Reporter(Protocol):
    """What the policy tells the run: an item error it absorbed, or the error that fails it."""

    def item_error(
        self, stage: str, sources: list[int], exc: BaseException, action: str
    ) -> None: ...

    def fail(self, stage: str | None, exc: BaseException) -> None: ...


Observer = Callable[[list[int], int, float, float, str, "BaseException | None"], None]
"""Told of every attempt of a traced call: `(sources, attempt, started, ended, outcome, error)`,
times on the run's clock, `outcome` one of "ok", "retry", "error", "skipped", "cancelled"."""


@dataclass(frozen=True, slots=True)
class StagePolicy:
    """The error options of one task."""

    name: str
    on_error: OnError
    retry: RetryConfig
    handler: ErrorHandler | None

    async def call(
        self,
        call: Callable[[Any], Any],
        item: Any,
        sources: list[int],
        reporter: Reporter,
        observe: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> Any:
        """Every attempt of `call(item)`, then the handler or `on_error`.

        Returns the result, a handler's value, or SKIPPED; raises the task's own exception when
        the run fails. `observe`, if given, is told of each attempt.
        """
        return await self._attempts(call, item, sources, reporter, self.give_up, observe, clock)

    async def recover(
        self,
        exc: Exception,
        call: Callable[[Any], Any],
        item: Any,
        sources: list[int],
        reporter: Reporter,
    ) -> Any:
        """`call`, after an untraced first attempt of `call(item)` raised `exc`."""
        return await self._attempts(call, item, sources, reporter, self.give_up, failed=exc)

    async def give_up(
        self, exc: Exception, item: Any, sources: list[int], attempt: int, reporter: Reporter
    ) -> Any:
        """Every attempt failed: ask the handler, else apply on_error."""
        if self.handler is not None:
            handled, value = await _resolve(
                self.handler.handle_error(exc, item, self.name, attempt)
            )
            if handled:
                reporter.item_error(self.name, sources, exc, "handled")
                return value
        if self.on_error == "fail" or self.handler is not None:
            reporter.fail(self.name, exc)
            raise exc
        reporter.item_error(self.name, sources, exc, self.on_error)
        return SKIPPED

    async def call_batch(
        self,
        call: Callable[[Any], Any],
        members: Sequence[tuple[Any, list[int], Any]],
        sources: list[int],
        reporter: Reporter,
        observe: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
        failed: Exception | None = None,
    ) -> tuple[Any, list[int]]:
        """`call` for a batch of `(value, sources, tag)` members; with skip_item, the failing
        members are found and skipped, and the batch runs again on the others.

        Returns the result and the sources it now stands for. `failed`: the error of an
        untraced first attempt.
        """
        batch = [member[0] for member in members]
        if self.on_error != "skip_item" or self.handler is not None or len(members) < 2:
            result = await self._attempts(
                call, batch, sources, reporter, self.give_up, observe, clock, failed
            )
            return result, sources
        try:
            result = await self._attempts(
                call, batch, sources, reporter, _raise, observe, clock, failed
            )
            return result, sources
        except Exception:
            pass
        survivors: list[tuple[Any, list[int], Any]] = []
        for member in members:  # one at a time, one attempt each
            error = await _attempt(call, [member[0]], member[1], observe, clock)
            if error is None:
                survivors.append(member)
            else:
                reporter.item_error(self.name, member[1], error, "skip_item")
        if not survivors:
            return SKIPPED, []
        kept = sorted({source for member in survivors for source in member[1]})
        error = None
        try:
            result = await _observed(
                call, [member[0] for member in survivors], kept, observe, clock
            )
        except Exception as again:
            error = again
        if error is None:
            return result, kept
        for member in survivors:
            reporter.item_error(self.name, member[1], error, "skip_item")
        return SKIPPED, []

    async def _attempts(
        self,
        call: Callable[[Any], Any],
        item: Any,
        sources: list[int],
        reporter: Reporter,
        final: _Final,
        observe: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
        failed: Exception | None = None,
    ) -> Any:
        """Attempt `call(item)` up to `max_attempts` times with backoff; `final` decides once
        every attempt failed. `failed`: the first attempt already failed so."""
        retry = self.retry
        attempt = 1
        exc = failed
        started = ended = 0.0
        while True:
            if exc is None:
                if observe is not None:
                    started = clock()
                try:
                    result = await _resolve(call(item))
                except Exception as error:
                    exc = error
                    if observe is not None:
                        ended = clock()
                except asyncio.CancelledError:
                    if observe is not None:
                        observe(sources, attempt, started, clock(), "cancelled", None)
                    raise
                else:
                    if observe is not None:
                        observe(sources, attempt, started, clock(), "ok", None)
                    return result
            if attempt < retry.attempts:
                if observe is not None:
                    observe(sources, attempt, started, ended, "retry", exc)
                await _sleep(retry.delay_after(attempt))
                attempt += 1
                exc = None
                continue
            assert exc is not None
            return await _given_up(
                final, exc, item, sources, attempt, reporter, observe, started, ended
            )

    async def iterate(
        self,
        start: Callable[[Any], Any],
        item: Any,
        sources: list[int],
        reporter: Reporter,
        first: Any = None,
        observe: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> AsyncIterator[Any]:
        """Values of a generator task, retried while it has yielded nothing.

        `first` is what the first attempt's call returned, if it was made already: a generator,
        or another result that streams (a batch task's `map`, say). Traced, an attempt lasts
        until its generator is exhausted or fails.
        """
        attempt = 0
        started = 0.0
        while True:
            attempt += 1
            if observe is not None:
                started = clock()
            gen = first if first is not None else start(item)
            first = None
            produced = 0
            try:
                if inspect.isasyncgen(gen):
                    async for value in gen:
                        produced += 1
                        yield value
                else:
                    for value in gen:
                        produced += 1
                        yield value
            except Exception as exc:
                ended = clock() if observe is not None else 0.0
                if produced == 0 and attempt < self.retry.attempts:
                    if observe is not None:
                        observe(sources, attempt, started, ended, "retry", exc)
                    await _sleep(self.retry.delay_after(attempt))
                    continue
                value = await _given_up(
                    self.give_up, exc, item, sources, attempt, reporter, observe, started, ended
                )
                if value is not SKIPPED:
                    yield value
                return
            except BaseException:  # cancelled, or closed while it streamed
                if observe is not None:
                    observe(sources, attempt, started, clock(), "cancelled", None)
                raise
            if observe is not None:
                observe(sources, attempt, started, clock(), "ok", None)
            return


_Final = Callable[[Exception, Any, list[int], int, Reporter], Awaitable[Any]]


async def _raise(exc: Exception, item: Any, sources: list[int], attempt: int, _: Reporter) -> Any:
    """The final decision of the whole-batch attempts before members are tried alone."""
    raise exc


async def _given_up(
    final: _Final,
    exc: Exception,
    item: Any,
    sources: list[int],
    attempt: int,
    reporter: Reporter,
    observe: Observer | None,
    started: float,
    ended: float,
) -> Any:
    """`final`'s decision on a call that failed its last attempt, observed as its outcome:
    `skipped` or `error` (also when `final` re-raises)."""
    try:
        value = await final(exc, item, sources, attempt, reporter)
    except BaseException:
        if observe is not None:
            observe(sources, attempt, started, ended, "error", exc)
        raise
    if observe is not None:
        observe(sources, attempt, started, ended, "skipped" if value is SKIPPED else "error", exc)
    return value


async def _observed(
    call: Callable[[Any], Any],
    item: Any,
    sources: list[int],
    observe: Observer | None,
    clock: Callable[[], float],
) -> Any:
    """One attempt of `call(item)`, observed as a call of its own (a batch's members)."""
    started = clock() if observe is not None else 0.0
    try:
        result = await _resolve(call(item))
    except Exception as exc:
        if observe is not None:
            observe(sources, 1, started, clock(), "skipped", exc)
        raise
    except asyncio.CancelledError:
        if observe is not None:
            observe(sources, 1, started, clock(), "cancelled", None)
        raise
    if observe is not None:
        observe(sources, 1, started, clock(), "ok", None)
    return result


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _attempt(
    call: Callable[[Any], Any],
    item: Any,
    sources: list[int],
    observe: Observer | None,
    clock: Callable[[], float],
) -> Exception | None:
    try:
        await _observed(call, item, sources, observe, clock)
    except Exception as exc:
        return exc
    return None


def check_on_error(on_error: str, batch: bool) -> OnError:
    """`on_error` as the policy applies it: a single task's "skip_batch" is "skip_item"."""
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    if on_error == "skip_batch" and not batch:
        return "skip_item"  # a single task's batch is its item (as in 1.2.1)
    return on_error  # type: ignore[return-value]
