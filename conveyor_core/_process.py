"""`executor="process"`: calls in a `concurrent.futures` process pool, sized by the machine.

A pool cannot stop a call that has started, nor say which worker runs it, so each pool shares a
little memory with its workers (hand-written for that reason): the slot of each worker (its pid
and the call it runs) and a ring of abandoned call ids. Cancelling a call: a call still waiting
in the pool is dropped (or skipped when it starts: its id is in the ring); a running one is
interrupted (SIGUSR1 in its worker raises `CallInterrupted` in the call); a call still running
after `cancel_grace_s` has its worker killed, which breaks the pool: it is replaced, and the
other calls it was running are sent again to the new one. A worker that dies by itself fails
its calls with `WorkerLost`, which the task's retry policy may retry.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import itertools
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Awaitable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ._errors import PipelineDefinitionError, WorkerLost
from ._events import describe_error
from ._executors import Call, CallTarget, Executor
from ._remote import CallInterrupted, Payload, invoke

__all__ = ["ProcessExecutor"]

_RING = 256  # abandoned call ids remembered, for calls that start after they were abandoned
_POLL_S = 0.01  # how often an abandoning call looks at its worker (a call's start is seen in
# shared memory only, so it is polled; at most `cancel_grace_s` long, once per cancelled call)


class _Shared:
    """Memory shared by a pool and its workers: one slot per worker, and the abandoned ring."""

    def __init__(self, context: Any, workers: int) -> None:
        self.pids = context.Array("q", workers, lock=False)
        self.current = context.Array("q", workers, lock=False)  # call id running, 0: none
        self.cancel = context.Array("q", workers, lock=False)  # call id to interrupt
        self.abandoned = context.Array("q", _RING, lock=False)
        self.next_slot = context.Value("i", 0)


# -- in a worker ------------------------------------------------------------------------------

_shared: _Shared | None = None
_slot = -1


def _init_worker(shared: _Shared) -> None:
    global _shared, _slot
    with shared.next_slot.get_lock():
        _slot = shared.next_slot.value
        shared.next_slot.value += 1
    _shared = shared
    shared.pids[_slot] = os.getpid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's to handle
    signal.signal(signal.SIGUSR1, _on_interrupt)


def _on_interrupt(signum: int, frame: Any) -> None:
    shared = _shared
    if shared is not None:
        running = shared.current[_slot]
        if running and running == shared.cancel[_slot]:
            raise CallInterrupted


def _run(call_id: int, payload: Payload, item: Any, args: tuple[Any, ...], kwargs: Any) -> Any:
    shared = _shared
    assert shared is not None
    try:
        shared.current[_slot] = call_id
        if call_id in shared.abandoned[:]:
            return None
        return invoke(payload.resolve(), item, args, kwargs)
    finally:
        shared.current[_slot] = 0


# -- in the parent ----------------------------------------------------------------------------


class _Pool:
    """One `ProcessPoolExecutor` and its shared memory; replaced whole when it breaks."""

    def __init__(self, workers: int, start_method: str) -> None:
        context = multiprocessing.get_context(start_method)
        self.shared = _Shared(context, workers)
        self.workers = workers
        self.executor = cf.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(self.shared,)
        )
        self.recycled = False  # we killed a worker: the calls it broke are sent again
        self.closed = False
        self._ring = itertools.count()

    def slot_of(self, call_id: int) -> int | None:
        current = self.shared.current[:]
        return current.index(call_id) if call_id in current else None

    def abandon(self, call_id: int) -> None:
        self.shared.abandoned[next(self._ring) % _RING] = call_id

    def interrupt(self, slot: int, call_id: int) -> None:
        self.shared.cancel[slot] = call_id
        self._signal(slot, signal.SIGUSR1)

    def kill(self, slot: int) -> None:
        self.recycled = True
        self._signal(slot, signal.SIGKILL)

    def _signal(self, slot: int, signum: int) -> None:
        pid = self.shared.pids[slot]
        if pid:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """Stop every worker now (calls in flight fail: the executor was closed)."""
        self.closed = True
        self.executor.shutdown(wait=False, cancel_futures=True)
        for slot in range(self.workers):
            self._signal(slot, signal.SIGTERM)


class ProcessExecutor(Executor):
    """Calls in a pool of `max_workers` processes (default: the machine's CPUs), started with
    `start_method` ("spawn": each worker imports the task's module, so a script needs its
    `if __name__ == "__main__":` guard). The task's function or class must be defined at module
    level; items, side inputs and results are pickled. A decorated class is instantiated once
    per worker process. `cancel_grace_s`: how long a cancelled call may take to stop before its
    worker is killed. `executor="process"` is one such executor shared by every task."""

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        start_method: str = "spawn",
        cancel_grace_s: float = 1.0,
        max_resends: int = 2,
    ) -> None:
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
            raise PipelineDefinitionError(f"max_workers must be an int >= 1, got {max_workers!r}")
        if start_method not in multiprocessing.get_all_start_methods():
            raise PipelineDefinitionError(f"unknown start_method {start_method!r}")
        if not cancel_grace_s >= 0:
            raise PipelineDefinitionError(f"cancel_grace_s must be >= 0, got {cancel_grace_s!r}")
        self.max_workers = max_workers or os.cpu_count() or 1
        self.max_in_flight = self.max_workers
        self.start_method = start_method
        self.cancel_grace_s = cancel_grace_s
        self.max_resends = max_resends
        self._pool: _Pool | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def describe(self) -> str:
        return "process"

    def check(self, target: CallTarget) -> None:
        super().check(target)
        qualname = getattr(target.func, "__qualname__", "")
        if "<locals>" in qualname or "<lambda>" in qualname:
            raise PipelineDefinitionError(
                f"task {target.name}: executor 'process' needs a function or class defined at "
                f"module level (workers import it by name), not {qualname!r}"
            )

    def bind(self, target: CallTarget) -> Call:
        payload = Payload(target.func, target.instance, target.is_class)
        name, args, kwargs = target.name, target.args, target.kwargs

        def call(item: Any) -> Awaitable[Any]:
            return self._call(name, payload, item, args, kwargs)

        return call

    async def aclose(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            await asyncio.to_thread(pool.executor.shutdown, wait=True)

    def _current(self) -> _Pool:
        with self._lock:
            if self._pool is None:
                self._pool = _Pool(self.max_workers, self.start_method)
            return self._pool

    def _replace(self, broken: _Pool) -> None:
        with self._lock:
            if self._pool is broken:
                self._pool = None
        broken.executor.shutdown(wait=False, cancel_futures=True)

    async def _call(
        self, name: str, payload: Payload, item: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        for sent in itertools.count():
            pool = self._current()
            call_id = next(self._ids)
            try:
                future = pool.executor.submit(_run, call_id, payload, item, args, kwargs)
            except (BrokenProcessPool, RuntimeError):  # broken, or closed meanwhile
                self._replace(pool)
                if sent < self.max_resends:
                    continue
                raise WorkerLost(f"stage {name!r}: the process pool cannot take calls") from None
            try:
                return await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                await self._abandon(pool, call_id, future)
                raise
            except BrokenProcessPool as exc:
                self._replace(pool)
                if pool.recycled and not pool.closed and sent < self.max_resends:
                    continue  # a worker we killed broke this call: it did nothing wrong
                why = "the executor was closed" if pool.closed else "a worker process died"
                raise WorkerLost(f"stage {name!r}: {why} ({describe_error(exc)})") from exc
        raise AssertionError("unreachable")

    async def _abandon(self, pool: _Pool, call_id: int, future: cf.Future[Any]) -> None:
        """The call's await was cancelled: stop the call where it is, within the grace time."""
        if future.cancel():
            return
        pool.abandon(call_id)
        deadline = time.monotonic() + self.cancel_grace_s
        interrupted = False
        while not future.done():
            slot = pool.slot_of(call_id)
            if slot is not None and not interrupted:
                pool.interrupt(slot, call_id)
                interrupted = True
            if time.monotonic() >= deadline:
                if slot is not None:  # it does not stop: its worker goes, the pool is replaced
                    pool.kill(slot)
                    self._replace(pool)
                return  # else it waits in the pool's queue and will be skipped when it starts
            try:
                await asyncio.sleep(_POLL_S)
            except asyncio.CancelledError:
                deadline = 0.0  # cancelled again: no more grace
