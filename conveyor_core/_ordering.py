"""Ordering, in one place: where a segment's results leave it in input order or as they come.

Every unit of work entering a segment gets a `Slot`. A slot is resolved with a value, resolved
empty (filtered, skipped), or grows siblings (`insert_after`) when a task fans out. The ordered
sequencer keeps slots in a linked list and emits from the head as soon as the head is resolved,
so results leave in input order as early as that order allows. The immediate sequencer emits
each value the moment it is resolved. Both call `close_downstream` once the input is closed and
every slot is resolved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["ImmediateSequencer", "OrderedSequencer", "Sequencer", "Slot"]

Emit = Callable[[Any, list[int]], None]

_PENDING, _READY, _EMPTY = 0, 1, 2


class Slot:
    """A position in a segment's output."""

    __slots__ = ("next", "state", "value", "sources")

    next: Slot | None
    state: int
    value: Any  # set when resolved
    sources: list[int]  # set when resolved

    def __init__(self) -> None:
        self.next = None
        self.state = _PENDING


class OrderedSequencer:
    """Emits resolved values in slot order."""

    def __init__(self, emit: Emit, close_downstream: Callable[[], None]) -> None:
        self._emit = emit
        self._close_downstream = close_downstream
        self._head: Slot | None = None  # first slot not yet emitted
        self._tail: Slot | None = None
        self._closed = False

    def new_slot(self) -> Slot:
        slot = Slot()
        if self._tail is None:
            self._head = slot
        else:
            self._tail.next = slot
        self._tail = slot
        return slot

    def insert_after(self, slot: Slot | None) -> Slot:
        assert slot is not None
        new = Slot()
        new.next = slot.next
        slot.next = new
        if self._tail is slot:
            self._tail = new
        return new

    def resolve(self, slot: Slot | None, value: Any, sources: list[int]) -> None:
        assert slot is not None
        slot.state = _READY
        slot.value = value
        slot.sources = sources
        if slot is self._head:
            self._advance()

    def resolve_empty(self, slot: Slot | None) -> None:
        assert slot is not None
        slot.state = _EMPTY
        if slot is self._head:
            self._advance()

    def close(self) -> None:
        self._closed = True
        if self._head is None:
            self._close_downstream()

    def _advance(self) -> None:
        node = self._head
        emit = self._emit
        while node is not None and node.state != _PENDING:
            if node.state == _READY:
                emit(node.value, node.sources)
                node.value = None
            node = node.next
        self._head = node
        if node is None:
            self._tail = None
            if self._closed:
                self._close_downstream()


class ImmediateSequencer:
    """Emits each value as soon as it is resolved (as-completed mode)."""

    def __init__(self, emit: Emit, close_downstream: Callable[[], None]) -> None:
        self._emit = emit
        self._close_downstream = close_downstream
        self._pending = 0
        self._closed = False

    def new_slot(self) -> None:
        self._pending += 1

    def insert_after(self, slot: Slot | None) -> None:
        self._pending += 1

    def resolve(self, slot: Slot | None, value: Any, sources: list[int]) -> None:
        self._pending -= 1
        self._emit(value, sources)
        if self._closed and not self._pending:
            self._close_downstream()

    def resolve_empty(self, slot: Slot | None) -> None:
        self._pending -= 1
        if self._closed and not self._pending:
            self._close_downstream()

    def close(self) -> None:
        self._closed = True
        if not self._pending:
            self._close_downstream()


Sequencer = OrderedSequencer | ImmediateSequencer
