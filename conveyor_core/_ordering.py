"""Ordering, in one place: where a segment's values leave it, in input order or as they come.

Every unit of work entering a segment gets a slot. A slot is resolved with a value, resolved
empty (filtered, skipped), or grows siblings (`insert_after`) when a value fans out. The ordered
sequencer emits in slot order as soon as that order allows; the immediate sequencer emits each
value the moment it is resolved. Both call `close_downstream` once the input is closed and every
slot is resolved.

The ordered sequencer numbers the slots of its input (`new_slot` gives 0, 1, 2, ...: an int, no
object) and emits slot `next` as soon as it is resolved, then whatever was resolved after it. A
slot that fans out gets a `_Group`: its own value first, then a chain of child `Slot`s linked in
output order (a child can grow children of its own: they go right after it). The group leaves
when its own value and its whole chain are resolved.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from typing import Any, Union

__all__ = ["ImmediateSequencer", "OrderedSequencer", "Sequencer", "Slot"]

Emit = Callable[[Any, Any, Any], None]  # (value, holding, tag): see `_budget`, `_trace`

_PENDING, _READY, _EMPTY = 0, 1, 2


class Slot:
    """A child position in a segment's output: a value a fan-out added after another."""

    __slots__ = ("next", "state", "value", "hold", "tag", "group")

    value: Any  # set when resolved
    hold: Any
    tag: Any

    def __init__(self, group: _Group, following: Slot | None) -> None:
        self.next = following
        self.state = _PENDING
        self.group = group


class _Group:
    """A numbered slot that fanned out."""

    __slots__ = ("index", "state", "value", "hold", "tag", "first")

    def __init__(self, index: int, state: int, entry: tuple[Any, Any, Any] | None) -> None:
        self.index = index
        self.state = state  # of its own value
        if entry is not None:
            self.value, self.hold, self.tag = entry
        self.first: Slot | None = None  # the first child not emitted yet


SlotRef = Union[int, Slot, None]  # noqa: UP007 - a runtime alias
_EMPTY_ENTRY: Any = object()  # a numbered slot resolved empty, waiting for its turn


class OrderedSequencer:
    """Emits resolved values in slot order."""

    def __init__(self, emit: Emit, close_downstream: Callable[[], None]) -> None:
        self._emit = emit
        self._close_downstream = close_downstream
        self._count = 0  # numbered slots given out
        self._next = 0  # the first numbered slot not emitted yet
        self._ready: dict[int, Any] = {}  # resolved after `_next`: (value, hold, tag) or EMPTY
        self._groups: dict[int, _Group] = {}  # numbered slots that fanned out
        self._closed = False

    def new_slot(self) -> int:
        index = self._count
        self._count = index + 1
        return index

    def new_slots(self, count: int) -> range:
        start = self._count
        self._count = start + count
        return range(start, start + count)

    def insert_after(self, slot: SlotRef) -> Slot:
        """A new slot right after `slot` (before whatever was after it)."""
        if type(slot) is int:
            group = self._groups.get(slot)
            if group is None:
                entry = self._ready.pop(slot, None)
                if entry is None:
                    group = _Group(slot, _PENDING, None)
                elif entry is _EMPTY_ENTRY:
                    group = _Group(slot, _EMPTY, None)
                else:
                    group = _Group(slot, _READY, entry)
                self._groups[slot] = group
            child = Slot(group, group.first)
            group.first = child
            return child
        assert isinstance(slot, Slot)
        child = Slot(slot.group, slot.next)
        slot.next = child
        return child

    def resolve(self, slot: SlotRef, value: Any, hold: Any, tag: Any) -> None:
        if slot == self._next and not self._groups:  # the head (a child Slot is never equal)
            self._emit(value, hold, tag)  # it goes now, and what waited after it
            self._next = slot = slot + 1  # type: ignore[operator]
            if self._ready:
                self._advance()
            elif slot == self._count and self._closed:
                self._close_downstream()
            return
        if type(slot) is int:
            group = self._groups.get(slot)
            if group is None:
                if slot != self._next:
                    self._ready[slot] = (value, hold, tag)
                    return
                self._emit(value, hold, tag)
                self._next = slot + 1
                self._advance()
                return
            group.state = _READY
            group.value, group.hold, group.tag = value, hold, tag
            if slot == self._next:
                self._advance()
            return
        assert isinstance(slot, Slot)
        group = slot.group
        if group.first is slot and group.state == _EMPTY and group.index == self._next:
            self._emit(value, hold, tag)  # the head of a group at the head: it goes now
            following = group.first = slot.next
            if following is None or following.state:
                self._advance()
            return
        slot.state = _READY
        slot.value, slot.hold, slot.tag = value, hold, tag
        if group.index == self._next:
            self._advance()

    def resolve_empty(self, slot: SlotRef) -> None:
        if type(slot) is int:
            group = self._groups.get(slot)
            if group is not None:
                group.state = _EMPTY
            elif slot != self._next:
                self._ready[slot] = _EMPTY_ENTRY
                return
            else:
                self._next = slot + 1
            self._advance()
            return
        assert isinstance(slot, Slot)
        slot.state = _EMPTY
        if slot.group.index == self._next:
            self._advance()

    def close(self) -> None:
        self._closed = True
        if self._next == self._count:
            self._close_downstream()

    def _advance(self) -> None:
        """Emit from `_next` on, as far as the slots are resolved."""
        ready = self._ready
        groups = self._groups
        emit = self._emit
        index = self._next
        while True:
            group = groups.get(index) if groups else None
            if group is not None:
                if not self._drain(group):
                    break
                del groups[index]
            else:
                entry = ready.pop(index, None)
                if entry is None:
                    break
                if entry is not _EMPTY_ENTRY:
                    emit(*entry)
            index += 1
        self._next = index
        if self._closed and index == self._count:
            self._close_downstream()

    def _drain(self, group: _Group) -> bool:
        """Emit what is resolved of a group at the head; True once all of it has left."""
        if group.state == _PENDING:
            return False
        emit = self._emit
        if group.state == _READY:
            emit(group.value, group.hold, group.tag)
            group.state = _EMPTY
            group.value = group.hold = group.tag = None
        node = group.first
        while node is not None and node.state:
            if node.state == _READY:
                emit(node.value, node.hold, node.tag)
                node.value = node.hold = node.tag = None
            node = node.next
        group.first = node
        return node is None


class ImmediateSequencer:
    """Emits each value as soon as it is resolved (as-completed mode)."""

    def __init__(self, emit: Emit, close_downstream: Callable[[], None]) -> None:
        self._emit = emit
        self._close_downstream = close_downstream
        self._pending = 0
        self._closed = False

    def new_slot(self) -> None:
        self._pending += 1

    def new_slots(self, count: int) -> repeat[None]:
        self._pending += count
        return repeat(None, count)

    def insert_after(self, slot: SlotRef) -> None:
        self._pending += 1

    def resolve(self, slot: SlotRef, value: Any, hold: Any, tag: Any) -> None:
        self._pending -= 1
        self._emit(value, hold, tag)
        if self._closed and not self._pending:
            self._close_downstream()

    def resolve_empty(self, slot: SlotRef) -> None:
        self._pending -= 1
        if self._closed and not self._pending:
            self._close_downstream()

    def close(self) -> None:
        self._closed = True
        if not self._pending:
            self._close_downstream()


Sequencer = OrderedSequencer | ImmediateSequencer
