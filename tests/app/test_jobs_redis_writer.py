"""app.jobs.redis_writer.EventWriter alone, on a fake `write`: what outages and cancellations do."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from app.jobs.redis_writer import Behind, EventWriter, Pending
from app.jobs.store import StoreUnavailable


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


class _LostReply:
    """A `write` to a fake Redis log: the first batch is stored but its reply lost, then Redis
    stays unreachable until released; a batch starting before the log's end is `Behind`."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.log: list[int] = []

    async def __call__(self, batch: list[Pending], token: str) -> None:
        if not self.log:
            self.log += [p.seq for p in batch]
            raise ConnectionError("reply lost")
        if not self.release.is_set():
            raise ConnectionError("refused")
        if batch[0].seq < len(self.log):
            raise Behind(len(self.log))
        assert batch[0].seq == len(self.log)
        self.log += [p.seq for p in batch]


async def test_an_event_sent_before_giving_up_is_not_taken_back() -> None:
    write = _LostReply()
    writer = _writer(write)
    with pytest.raises(StoreUnavailable) as given_up:
        await writer.append(Pending(0, b"{}"))  # stored, but no answer within retry_s
    assert given_up.value.kept and writer.next_seq == 1  # its seq is not reused
    write.release.set()
    await writer.append(Pending(1, b"{}", end=("failed", b"null", 0.0)))
    assert write.log == [0, 1] and writer.written_seq == 1


async def test_an_abandoned_writer_drops_its_queue_and_stops() -> None:
    write = _Stalled()
    writer = _writer(write, retry_s=30)
    first = asyncio.create_task(writer.append(Pending(0, b"{}")))
    await asyncio.sleep(0.05)  # its write is in flight
    writer.abandon()
    write.release.set()
    await writer.drain(5)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert writer._flusher is not None
    await asyncio.wait_for(asyncio.shield(writer._flusher), 5)
    assert not writer._pending and writer._pending_bytes == 0
    with pytest.raises(StoreUnavailable):
        await writer.append(Pending(1, b"{}"))
