"""The body of a RayActors actor (imported with Ray, by `conveyor_core.ray` and Ray workers)."""

from __future__ import annotations

import threading
from typing import Any

import ray

from ._remote import Payload, invoke

__all__ = ["Replica"]

_ABANDONED = 4096  # call ids an actor remembers as cancelled before they started


class Replica:
    """A Ray actor's body: the task's callable made once (a class instantiated once), then
    called for each item or batch. `abandon` (in its own concurrency group, so it runs at once)
    tells whether a cancelled call is running; one that has not started is skipped when it does.
    (The group is declared here, on the method: Ray's client does not take it per call.)
    """

    def __init__(self, payload: Payload) -> None:
        self._func = payload.resolve()
        self._lock = threading.Lock()
        self._running: set[int] = set()
        self._abandoned: dict[int, None] = {}  # ordered: the oldest are forgotten first

    def call(self, call_id: int, item: Any, side: tuple[tuple[Any, ...], dict[str, Any]]) -> Any:
        with self._lock:
            if call_id in self._abandoned:  # cancelled before it started
                del self._abandoned[call_id]
                return None
            self._running.add(call_id)
        try:
            args, kwargs = side
            return invoke(self._func, item, args, kwargs)
        finally:
            with self._lock:
                self._running.discard(call_id)

    @ray.method(concurrency_group="control")
    def abandon(self, call_id: int) -> bool:
        """The call was cancelled: True if it is running now, else it will not run."""
        with self._lock:
            if call_id in self._running:
                return True
            self._abandoned[call_id] = None
            while len(self._abandoned) > _ABANDONED:
                del self._abandoned[next(iter(self._abandoned))]
            return False
