"""The sequencers: slots, fan-out groups, and when values leave a segment.

The ordered sequencer is checked against a model: a plain list of the slots in output order,
where `insert_after` puts a new slot right after its parent, and whatever is resolved at the
head of the list leaves at once.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor_core._ordering import ImmediateSequencer, OrderedSequencer


class Out:
    def __init__(self) -> None:
        self.emitted: list[Any] = []
        self.closed = 0

    def emit(self, value: Any, hold: Any, tag: Any) -> None:
        self.emitted.append((value, hold, tag))

    def close(self) -> None:
        self.closed += 1

    @property
    def values(self) -> list[Any]:
        return [value for value, _, _ in self.emitted]


def _ordered() -> tuple[OrderedSequencer, Out]:
    out = Out()
    return OrderedSequencer(out.emit, out.close), out


def test_values_leave_in_slot_order_whatever_order_they_are_resolved_in() -> None:
    sequencer, out = _ordered()
    slots = [sequencer.new_slot() for _ in range(4)]
    assert slots == [0, 1, 2, 3]
    sequencer.resolve(2, "c", "hold c", "tag c")
    sequencer.resolve(1, "b", None, None)
    assert out.emitted == []  # slot 0 holds them back
    sequencer.resolve(0, "a", None, None)
    assert out.values == ["a", "b", "c"]
    assert out.emitted[2] == ("c", "hold c", "tag c")  # hold and tag travel with the value
    sequencer.resolve(3, "d", None, None)
    assert out.values == ["a", "b", "c", "d"] and out.closed == 0


def test_an_empty_slot_lets_the_next_ones_go() -> None:
    sequencer, out = _ordered()
    for _ in range(3):
        sequencer.new_slot()
    sequencer.resolve(2, "c", None, None)
    sequencer.resolve_empty(1)
    assert out.values == []
    sequencer.resolve_empty(0)
    assert out.values == ["c"]


def test_close_downstream_once_every_slot_left() -> None:
    sequencer, out = _ordered()
    slots = sequencer.new_slots(2)
    assert list(slots) == [0, 1]
    sequencer.close()
    assert out.closed == 0
    sequencer.resolve(1, "b", None, None)
    assert out.closed == 0
    sequencer.resolve(0, "a", None, None)
    assert out.closed == 1 and out.values == ["a", "b"]


def test_close_with_nothing_pending_closes_at_once() -> None:
    sequencer, out = _ordered()
    sequencer.close()
    assert out.closed == 1
    immediate_out = Out()
    ImmediateSequencer(immediate_out.emit, immediate_out.close).close()
    assert immediate_out.closed == 1


def test_a_fan_out_leaves_where_its_value_would_have_left() -> None:
    sequencer, out = _ordered()
    for _ in range(3):
        sequencer.new_slot()
    b2 = sequencer.insert_after(1)
    b3 = sequencer.insert_after(b2)
    b2a = sequencer.insert_after(b2)  # b2 fans out again: right after b2, before b3
    sequencer.resolve(2, "c", None, None)
    sequencer.resolve(b3, "b3", None, None)
    sequencer.resolve(b2a, "b2a", None, None)
    sequencer.resolve(0, "a", None, None)
    assert out.values == ["a"]  # slot 1's own value is pending
    sequencer.resolve(1, "b1", None, None)
    assert out.values == ["a", "b1"]
    sequencer.resolve_empty(b2)
    assert out.values == ["a", "b1", "b2a", "b3", "c"]
    sequencer.close()
    assert out.closed == 1


def test_a_child_at_the_head_leaves_as_soon_as_it_is_resolved() -> None:
    sequencer, out = _ordered()
    sequencer.new_slot()
    sequencer.new_slot()
    first = sequencer.insert_after(0)
    second = sequencer.insert_after(first)
    sequencer.resolve(0, "own", None, None)
    assert out.values == ["own"]
    sequencer.resolve(first, "first", None, None)
    assert out.values == ["own", "first"]
    sequencer.resolve(1, "next", None, None)
    assert out.values == ["own", "first"]  # the group still has `second`
    sequencer.resolve(second, "second", None, None)
    assert out.values == ["own", "first", "second", "next"]


def test_a_slot_resolved_but_held_back_can_still_fan_out_after_itself() -> None:
    sequencer, out = _ordered()
    for _ in range(3):
        sequencer.new_slot()
    sequencer.resolve(1, "b", None, None)  # waits behind slot 0
    sequencer.resolve_empty(2)
    late = sequencer.insert_after(1)
    empty_child = sequencer.insert_after(2)
    sequencer.resolve(late, "b'", None, None)
    sequencer.resolve(empty_child, "c'", None, None)
    sequencer.resolve(0, "a", None, None)
    assert out.values == ["a", "b", "b'", "c'"]


def test_the_immediate_sequencer_emits_at_once_and_closes_after_the_last() -> None:
    out = Out()
    sequencer = ImmediateSequencer(out.emit, out.close)
    sequencer.new_slot()
    list(sequencer.new_slots(2))
    child = sequencer.insert_after(None)
    sequencer.resolve(None, "late one first", None, None)
    assert out.values == ["late one first"]
    sequencer.close()
    sequencer.resolve_empty(None)
    sequencer.resolve(child, "child", None, None)
    assert out.closed == 0
    sequencer.resolve(None, "last", None, None)
    assert out.values == ["late one first", "child", "last"] and out.closed == 1


# -- the ordered sequencer against its model ------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_ordered_sequencer_emits_what_the_model_says_as_soon_as_it_can(
    data: st.DataObject,
) -> None:
    sequencer, out = _ordered()
    order: list[int] = []  # the model: keys of slots in output order
    refs: dict[int, Any] = {}  # key -> the sequencer's slot
    resolved: dict[int, Any] = {}  # key -> value, or None for empty
    closed = False

    def pending() -> list[int]:
        return [key for key in order if key not in resolved]

    def held_back() -> list[int]:
        """Keys not emitted yet: from the first pending one on."""
        first = next((i for i, key in enumerate(order) if key not in resolved), len(order))
        return order[first:]

    def expected() -> list[Any]:
        values = []
        for key in order:
            if key not in resolved:
                break
            if resolved[key] is not None:
                values.append(resolved[key])
        return values

    for _ in range(data.draw(st.integers(0, 40), label="steps")):
        choices = ["resolve", "empty", "insert"] if pending() else []
        if not closed:
            choices += ["new", "close"]
        if not choices:
            break
        action = data.draw(st.sampled_from(choices))
        if action == "new":
            key = len(refs)
            refs[key] = sequencer.new_slot()
            order.append(key)
        elif action == "close":
            sequencer.close()
            closed = True
        else:
            # a slot may fan out until it has left (the engine does it while it is pending)
            key = data.draw(st.sampled_from(held_back() if action == "insert" else pending()))
            if action == "insert":
                child = len(refs)
                refs[child] = sequencer.insert_after(refs[key])
                order.insert(order.index(key) + 1, child)
            elif action == "resolve":
                resolved[key] = f"v{key}"
                sequencer.resolve(refs[key], f"v{key}", key, None)
            else:
                resolved[key] = None
                sequencer.resolve_empty(refs[key])
        assert out.values == expected()
        done = closed and not pending()
        assert out.closed == (1 if done else 0)
    if not closed:
        sequencer.close()
    for key in data.draw(st.permutations(pending()), label="the rest"):
        resolved[key] = f"v{key}"
        sequencer.resolve(refs[key], f"v{key}", key, None)
    assert out.values == expected() == [f"v{k}" for k in order if resolved[k] is not None]
    assert [hold for _, hold, _ in out.emitted] == [k for k in order if resolved[k] is not None]
    assert out.closed == 1


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_the_immediate_sequencer_closes_once_after_its_last_slot(data: st.DataObject) -> None:
    out = Out()
    sequencer = ImmediateSequencer(out.emit, out.close)
    count = data.draw(st.integers(0, 10))
    for _ in range(count):
        sequencer.new_slot()
    children = data.draw(st.integers(0, 5))
    for _ in range(children):
        sequencer.insert_after(None)
    close_after = data.draw(st.integers(0, count + children))
    for done in range(count + children):
        if done == close_after:
            sequencer.close()
        assert out.closed == 0
        if data.draw(st.booleans()):
            sequencer.resolve(None, done, None, None)
        else:
            sequencer.resolve_empty(None)
    if close_after == count + children:
        assert out.closed == 0
        sequencer.close()
    assert out.closed == 1
