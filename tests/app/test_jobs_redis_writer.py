"""app.jobs.redis_writer.EventWriter alone, on a fake `write`: what outages and cancellations do."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from app.jobs.redis_writer import EventWriter, Pending


class _Stalled:
    """A `write` that hangs (a stalled Redis) until released; records what reached Redis."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.sent: list[list[int]] = []
        self.written: list[int] = []

    async def __call__(self, batch: list[Pending], token: str) -> None:
        self.sent.append([p.seq for p in batch])
        await self.release.wait()
        self.written += [p.seq for p in batch]


def _writer(write: _Stalled, retry_s: float = 0.1) -> EventWriter:
    tokens = (str(n) for n in itertools.count())
    return EventWriter(
        write,
        retry_s=retry_s,
        unreachable=(ConnectionError,),
        token=lambda: next(tokens),
        on_done=lambda _: None,
        what="test events",
    )


async def test_a_cancel_while_the_writer_stops_is_not_swallowed() -> None:
    write = _Stalled()
    writer = _writer(write)
    append = asyncio.create_task(writer.append(Pending(0, b"{}")))
    # retry_s goes by: the append then waits for the flusher to stop
    await asyncio.wait_for(writer._abort.wait(), 5)
    append.cancel()
    with pytest.raises(asyncio.CancelledError):
        await append
    assert not writer._abort.is_set()
    write.release.set()  # the write in flight ends: the event cancelled is kept and written
    await writer.drain(5)
    assert write.written == [0] and writer.written_seq == 0
