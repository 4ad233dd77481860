"""`Signal`: the one way a run's tasks wait for each other.

A waiter checks its own condition and waits while it does not hold:

    while not condition():
        await signal.wait()

and whoever may have made the condition true calls `signal.fire()`, which wakes every task
waiting at that moment. A wake-up is never lost (each waiter has its own future, so one waiter
cannot overwrite another's) and never wrong (a waiter woken for nothing checks again and waits
again). Firing with no waiter costs one truth test.

Hand-written because the standard library has no broadcast of this shape: `asyncio.Event`
needs a `set()` then `clear()` and removes each woken waiter from a deque (quadratic with many
waiters), and `asyncio.Condition` needs a lock held around every wait and notify.
"""

from __future__ import annotations

import asyncio

__all__ = ["Signal"]


class Signal:
    """Wakes every task waiting on it."""

    __slots__ = ("waiters",)

    def __init__(self) -> None:
        # read-only outside: hot paths test `signal.waiters` before calling `fire()`
        self.waiters: list[asyncio.Future[None]] = []

    def __bool__(self) -> bool:
        """True while some task waits."""
        return bool(self.waiters)

    async def wait(self) -> None:
        """Wait for the next `fire()`."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if not waiter.done() or waiter.cancelled():
                try:
                    self.waiters.remove(waiter)
                except ValueError:
                    pass
            raise

    def fire(self) -> None:
        """Wake every task waiting now."""
        if self.waiters:
            waiters, self.waiters = self.waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
