"""Fan-out: one call's result becoming several values, in order.

What a call returns decides (`shape`): None filters the value out; a list gives its items (a
`None` inside a list is an item); a generator or an async generator gives its items as they are
yielded; a batch task's other iterators and sized collections give their items too (a `map`, a
`set`, a `range`, a `deque`, a dict view, an array), except `str`, `bytes`, `tuple` and
mappings. Anything else is one value, iterable or not (a pydantic model iterates over its
fields, but it is one result).

The values of a fan-out share the hold of the value they came from (see `_budget`) and take
slots right after its slot (see `_ordering`), so in ordered mode they leave in the order they
were produced, where the one value would have left. A list is spread at once (`spread`); a
stream (`stream`) goes on while it yields, and waits while the segment's queue or the consumer
is a whole bound behind, so an endless generator cannot outrun them.
"""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sized
from typing import Any

from ._budget import Budget, Holding
from ._channel import Channel

__all__ = ["LIST", "NONE", "ONE", "STREAM", "shape", "spread", "stream"]

NONE, ONE, LIST, STREAM = 0, 1, 2, 3
_STREAMED = (types.GeneratorType, types.AsyncGeneratorType)
_ONE_VALUE = (str, bytes, bytearray, memoryview, tuple, Mapping)


def shape(result: Any, batch: bool) -> int:
    """How a call's result goes on: NONE, ONE value, a LIST to spread, a STREAM to iterate."""
    if result is None:
        return NONE
    kind = type(result)
    if kind is list:
        return LIST
    if kind in _STREAMED:
        return STREAM
    if isinstance(result, list):
        return LIST
    if (
        batch
        and isinstance(result, Iterable)
        and isinstance(result, (Iterator, Sized))
        and not isinstance(result, _ONE_VALUE)
    ):
        return STREAM
    return ONE


def spread(
    segment: Any,
    index: int,
    items: list[Any],
    holding: Holding,
    slot: Any,
    tag: Any,
    budget: Budget,
) -> tuple[Any, Holding]:
    """Queue all items but the first for stage `index`, each in its slot after `slot`; return
    the first, which goes on in `slot`, and the holding they all share."""
    if len(items) == 1:
        return items[0], holding
    hold = budget.share(holding, len(items) - 1)
    insert_after = segment.sequencer.insert_after
    put = segment.workers.put
    cursor = slot
    for item in items[1:]:
        cursor = insert_after(cursor)
        put((index, item, hold, cursor, tag))
    return items[0], hold


async def stream(
    segment: Any,
    index: int,
    values: AsyncIterator[Any],
    holding: Holding,
    slot: Any,
    tags: Any,
    budget: Budget,
    channel: Channel,
    limit: int,
) -> None:
    """Queue each value `values` yields for stage `index` as it comes, in order after `slot`.

    `tags()` gives the tag of a value yielded now (None: untraced). Waits while the segment's
    queue or the consumer's backlog holds `limit` events or more. The work parked behind the
    concurrency limit of a later stage counts as queued (not the work parked before the stage
    that streams: it may be waiting for this very call), and so does the work of the later
    segments, queued or running (a batch stage's calls): not the values waiting in a partial
    batch, which may be waiting for this very generator's next ones.
    """
    sequencer = segment.sequencer
    workers = segment.workers
    queue = workers.queue
    drained = channel.drained
    parked = [site.parked for site in segment.stages[index:] if site.limit is not None]
    later = segment.later
    hold = budget.share(holding, 0)
    cursor = slot
    async for value in values:
        following = sequencer.insert_after(cursor)
        hold.refs += 1
        workers.put((index, value, hold, cursor, None if tags is None else tags()))
        cursor = following
        while (
            len(queue) >= limit
            or len(channel) >= limit
            or (parked and len(queue) + sum(map(len, parked)) >= limit)
            or (later and _pending(later) >= limit)
        ):
            await drained.wait()  # the workers or the consumer are behind
    budget.release(hold)
    sequencer.resolve_empty(cursor)


def _pending(later: list[Any]) -> int:
    """The pieces of work queued in or running through the later segments."""
    return sum(len(workers.queue) + workers.waiting for workers in later)


async def each(iterable: Iterable[Any]) -> AsyncIterator[Any]:
    """A plain iterable as an async iterator (a batch task's `range`, `map`, generator...)."""
    for value in iterable:
        yield value
