"""Stopping background tasks for sure, on Python 3.11 too.

On Python 3.11, `asyncio.wait_for` (which redis-py uses to send each command) can swallow a
cancellation that lands while the command is being sent (CPython gh-86296): the awaited call
returns normally in a task that was asked to stop. A loop that goes on after that never stops,
and whoever waits for it waits forever. Hence two rules for the jobs' background tasks:

- a loop calls `check_cancelled()` after its awaits, which raises `CancelledError` in a task
  whose cancellation was requested (and swallowed);
- whoever stops tasks calls `stop_tasks`, which cancels them again until they are done, within a
  bound, rather than awaiting them once and unboundedly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

__all__ = ["check_cancelled", "stop_tasks"]

log = logging.getLogger("conveyor.service.jobs")

PATIENCE_S = 1.0  # how long `stop_tasks` lets a cancelled task clean up before cancelling again
RECANCEL_S = 0.05  # then how often it cancels again a task that goes on


def check_cancelled() -> None:
    """Raise `CancelledError` if the current task was asked to stop (the request swallowed)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop_tasks(
    tasks: Iterable[asyncio.Task[Any]], within_s: float, *, patience_s: float = PATIENCE_S
) -> bool:
    """Cancel `tasks` and wait for them, up to `within_s` seconds; those still going after
    `patience_s` (their cancellation swallowed) are cancelled again and again. True when all
    are done. Their exceptions are retrieved, not raised."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    wait_s = patience_s
    while pending:
        for task in pending:
            task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(wait_s, remaining))
        wait_s = RECANCEL_S
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: the caller looks at it if it cares
    for task in pending:
        log.warning("task %s did not stop within %ss", task.get_name(), within_s)
    return not pending
