"""The workers of a segment: tasks that carry queued work through the segment's stages.

A worker takes work from its segment's queue and carries it inline (`carry`, see `_calls`),
starting each piece by hand (`send(None)`), so a call that never waits costs no task and no
scheduling; a carry goes on with the next pieces of the queue while nothing waits, so a streak
of quick pieces costs one coroutine. Each worker task runs in its own copy of the run's context,
and so do its pieces: a piece that changes it (sets a context variable) is that worker's last,
and a new worker, with a fresh copy, takes the queue on. When a piece waits (I/O, a retry's
backoff, a thread), the worker stays with it, handing the rest of it to its own task (so
`current_task()`, timeouts and cancellation behave as usual), and the pool makes sure the rest
of the queue keeps moving: an idle worker is woken, or a new one started. A worker whose queue
is empty waits for more work while the segment's input is open (so steady streams reuse workers
instead of starting a task per item), and leaves when woken for nothing or when the input has
ended.

Counts: `active` workers are running or about to (woken), `idle` ones wait for work, `waiting`
ones are inside a piece of work that waits. The run reads them to tell whether anything can
still move (see `Run._unstall`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from ._signal import Signal

__all__ = [
    "FAIRNESS_CHECK",
    "FAIRNESS_S",
    "FAIRNESS_STREAK",
    "Work",
    "Workers",
    "changed",
]

FAIRNESS_STREAK = 256  # pieces a worker finishes without waiting before it lets others run (about
# 0.1-0.2 ms of trivial calls; 64 cost the cpu workload a fifth of its time in loop turns)
FAIRNESS_S = 0.001  # ... or once a streak held the loop this long (slow synchronous calls)
FAIRNESS_CHECK = 32  # pieces between two looks at the clock


def changed(context: contextvars.Context, base: contextvars.Context) -> bool:
    """Whether a call changed `context`, a copy of `base`. Contexts compare their values with
    `==` (at once when none was set), so a value set equal to the run's (False for 0) is not
    seen; a set value whose `==` raises (an array) is a change. An exact test would compare each
    value by identity, in Python, after every call: it would cost trivial calls a fifth more."""
    try:
        return context != base
    except Exception:
        return True


Work = tuple[int, Any, Any, Any, Any]  # (stage index, value, hold, slot, tag)
Carry = Callable[..., Coroutine[Any, Any, bool]]


@types.coroutine
def _resume(coro: Any, yielded: Any) -> Generator[Any, Any, None]:
    """Go on with a coroutine that was started by hand and suspended, yielding `yielded`, as
    part of this task: the task waits on what it yielded, then `yield from` hands the rest of
    the coroutine to the task's own stepping (no Python-level step per resume)."""
    while True:
        try:
            yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # thrown in while it waited (a cancellation): pass it on
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
            continue
        yield from coro
        return


class Workers:
    """The queue of one segment and the worker tasks that run it."""

    __slots__ = (
        "queue",
        "active",
        "idle",
        "waiting",
        "switches",
        "open",
        "work",
        "_segment",
        "_spawn",
        "_carry",
        "_base",
        "_on_idle",
    )

    def __init__(
        self,
        segment: Any,
        spawn: Callable[[Callable[[], Coroutine[Any, Any, None]], contextvars.Context], None],
        carry: Carry,
        base: contextvars.Context,
        on_idle: Callable[[], None],
    ) -> None:
        self.queue: deque[Work] = deque()
        self.active = 0
        self.idle = 0
        self.waiting = 0
        self.switches = 0  # pieces that waited so far
        self.open = True  # the segment's input may still bring work
        self.work = Signal()  # idle workers wait on it
        self._segment = segment
        self._spawn = spawn
        self._carry = carry
        self._base = base
        self._on_idle = on_idle  # a worker found the queue empty

    def put(self, work: Work) -> None:
        self.queue.append(work)
        if not self.active:
            self.start()

    def close(self) -> None:
        """The segment's input ended: idle workers leave (work from within still runs)."""
        self.open = False
        if self.idle:
            self.start()

    def start(self) -> None:
        """Make sure a worker will run the queue: wake the idle ones, or start one."""
        if self.idle:
            self.active += self.idle
            self.idle = 0
            self.work.fire()
        else:
            self.active += 1
            context = self._base.copy()
            self._spawn(functools.partial(self._worker, context), context)

    async def _worker(self, context: contextvars.Context) -> None:
        """A worker task; `context` is the one it runs in, a copy of the run's. Each piece runs
        in it while it is unchanged: a piece that changed it (set a context variable) is this
        worker's last, so the next piece starts from the run's context again, in a new worker."""
        queue = self.queue
        base = self._base
        carry = self._carry
        segment = self._segment
        while True:
            while queue:
                index, value, hold, slot, tag = queue.popleft()
                coro = carry(segment, context, index, value, hold, slot, tag)
                try:
                    yielded = coro.send(None)
                except StopIteration as done:
                    if changed(context, base):
                        return self._leave()
                    if done.value:  # it carried a streak of pieces: let others run
                        await asyncio.sleep(0)
                    continue
                self.active -= 1  # this piece waits: the rest of the queue must move on
                self.switches += 1
                if queue and not self.active:
                    self.start()
                self.waiting += 1
                try:
                    await _resume(coro, yielded)
                finally:
                    self.waiting -= 1
                self.active += 1
                if changed(context, base):
                    return self._leave()
            self.active -= 1
            self._on_idle()
            if not self.open:
                return
            self.idle += 1
            await self.work.wait()  # whoever woke us counted us active again
            if not queue:  # woken for nothing (another took the work): leave
                self.active -= 1
                self._on_idle()
                return

    def _leave(self) -> None:
        """A worker whose context a piece changed leaves; another takes the queue on."""
        self.active -= 1
        if self.queue:
            self.start()
        else:
            self._on_idle()
