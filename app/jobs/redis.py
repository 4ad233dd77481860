"""The Redis job store: every replica sharing one Redis serves every job.

The layout is in `app.jobs.keys`: per job a hash (the record) and a stream (the events, entry id
`0-{seq + 1}`), plus one sorted set of running jobs scored by lease deadline and one pub/sub
channel for cancellations. Each write that has to be atomic is one Lua script
(`app.jobs.redis_scripts`): create (under the running-job limit), append (a batch; `end`
finishes the job), cancel (flag and publish), renew (the lease), lose (the reaper's claim).

Appends go through a per-job `EventWriter` (`app.jobs.redis_writer`): queued, then written in
batches by one flusher task, so the run does not wait a round trip per event. Followers read in
bulk with a script that returns the events as one JSON array; once caught up, they wait on the
job's `Tail` (`app.jobs.redis_tail`): one blocking `XREAD` per job and process, woken by the
next append, whatever the number of local followers; a bounded block lets it notice expiry.
Two background tasks live between `start()` and `close()`: the reaper, which fails jobs
whose lease is three periods old (WorkerLost), and the listener that turns cancellation messages
into the local `wait_cancel` wake-ups (the lease renewal also reports a requested cancellation,
in case a message was missed).

The key prefix (`conveyor:`) can be changed with a `prefix` query parameter of the URL
(`redis://host:6379/0?prefix=staging:`), so that several deployments can share one Redis.

Outages: a call that cannot reach Redis raises `StoreUnavailable` after a short retry, except
`append` and live followers, which retry with backoff for `retry_s` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from . import redis_scripts as lua
from .codec import dumps as _dumps
from .codec import loads as _loads
from .keys import DEFAULT_PREFIX, EVENT_FIELD, Keys, entry_id
from .redis_tail import Tail
from .redis_writer import Behind, EventWriter, Pending
from .store import (
    JobLimitReached,
    JobNotFound,
    JobPage,
    JobRecord,
    JobStatus,
    JobStore,
    StoreUnavailable,
    WireEvent,
    list_key,
    page_cursor,
    read_cursor,
    resume_after,
)
from .tasks import check_cancelled, stop_tasks

__all__ = ["WORKER_LOST", "RedisJobStore"]

log = logging.getLogger("conveyor.service.jobs.redis")

WORKER_LOST = "WorkerLost: the replica running this job stopped renewing its lease"
LOST_AFTER = 3  # lease periods without renewal after which a job is lost
BLOCK_MS = 2_000  # one blocking XREAD; then a follower checks the job still exists
READ_COUNT = 512  # events per bulk read
WAKE_COUNT = 64  # events per blocking read; when it is full, the rest is read in bulk
CLOSE_GRACE_S = 5.0  # how long `close` lets queued events reach Redis
STOP_S = 5.0  # how long `close` waits for its background tasks to stop
SOCKET_TIMEOUT_S = 10.0  # must exceed BLOCK_MS
CONNECT_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 1_000  # redis-py's default, 100, is low for jobs followed at once
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 1.0
LIST_BUDGET = 2_000  # index entries one page of GET /jobs looks at, at most (filters skip some)
PRUNE_COUNT = 500  # expired jobs taken out of the indexes per round, at most
PRUNE_EVERY_S = 5.0  # how often the reaper does that round (GET /jobs skips expired jobs anyway)

UNREACHABLE = (rexc.ConnectionError, rexc.TimeoutError, rexc.ReadOnlyError, OSError)


@dataclass(slots=True)
class _Waiter:
    """Local `wait_cancel` callers of one job."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    count: int = 0


class RedisJobStore(JobStore):
    """Jobs in Redis; see the module docstring for the layout and the scripts."""

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float = 3600.0,
        lease_s: float = 5.0,
        prefix: str | None = None,
        retry_s: float = 30.0,
        timeout_s: float = 2.0,
    ) -> None:
        url, url_prefix = _split_prefix(url)
        self.url = _without_password(url)
        self.lease_s = lease_s
        self.retry_s = retry_s
        self.timeout_s = timeout_s
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._lost_ms = max(1, round(LOST_AFTER * lease_s * 1000))
        self._keys = Keys(prefix or url_prefix or DEFAULT_PREFIX)
        self._redis: Redis = Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            max_connections=MAX_CONNECTIONS,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
            health_check_interval=30,
        )
        script = self._redis.register_script  # EVALSHA, loaded again after a Redis restart
        self._create = script(lua.CREATE)
        self._append = script(lua.APPEND)
        self._fetch = script(lua.FETCH)
        self._cancel = script(lua.CANCEL)
        self._renew = script(lua.RENEW)
        self._expired = script(lua.EXPIRED)
        self._lose = script(lua.LOSE)
        self._list = script(lua.LIST)
        self._prune = script(lua.PRUNE)
        self._tokens = (f"{uuid.uuid4().hex[:12]}:{n}" for n in itertools.count())
        self._writers: dict[str, EventWriter] = {}
        self._tails: dict[str, Tail] = {}
        self._waiters: dict[str, _Waiter] = {}
        self._listener: asyncio.Task[None] | None = None
        self._reaper: asyncio.Task[None] | None = None

    # -- the contract ----------------------------------------------------------------------

    async def create(self, record: JobRecord, *, max_running: int) -> None:
        keys = [
            self._keys.job(record.job_id),
            self._keys.running,
            self._keys.index,
            self._keys.pipeline_index(record.pipeline),
        ]
        args: list[Any] = [record.job_id, max_running, self._lost_ms, next(self._tokens)]
        args.append(list_key(record)[0])
        async with self._bounded():
            code, count = await self._create(keys, [*args, *_fields(record, self._lost_ms)])
        if code == 1:
            raise ValueError(f"job {record.job_id!r} exists")
        if code == 2:
            raise JobLimitReached(int(count), max_running)

    async def get(self, job_id: str) -> JobRecord | None:
        await self._settle(job_id)
        async with self._bounded():
            data = await self._redis.hgetall(self._keys.job(job_id))
        return _record(cast(dict[bytes, bytes], data)) if data else None

    async def append(self, job_id: str, event: WireEvent) -> None:
        writer = self._writers.get(job_id)
        if writer is None:
            writer = self._writers[job_id] = EventWriter(
                lambda batch, token: self._write(job_id, batch, token),
                retry_s=self.retry_s,
                unreachable=UNREACHABLE,
                token=lambda: next(self._tokens),
                on_done=lambda done: self._forget(job_id, done),
                what=f"job {job_id} events",
            )
        await writer.append(_pending(event))

    async def events(
        self, job_id: str, *, after: int = -1, follow: bool = True
    ) -> AsyncIterator[WireEvent]:
        await self._settle(job_id)
        backoff = _Backoff(self.retry_s, f"read job {job_id}")
        last = resume_after(after)
        while True:
            # catching up: a script call returns many events as one JSON array
            if follow:  # a follower rides through an outage, for `retry_s`
                status, events, count = await self._retrying(backoff, self._read_bulk, job_id, last)
            else:  # a snapshot (results) is a request's: bounded
                async with self._bounded():
                    status, events, count = await self._read_bulk(job_id, last)
            check_cancelled()
            for event in events:
                yield event
                if event["type"] == "end":
                    return
            if events:
                last = events[-1]["seq"]
            if len(events) == READ_COUNT:
                continue
            if not follow or status != JobStatus.RUNNING.value:
                return  # done, unknown or expired: the script read status and events at once
            # caught up: wait on the job's tail, one blocking read shared by the local followers;
            # it starts at the job's last event even when this follower resumes past it
            tail = self._tail(job_id, min(last, count - 1))
            try:
                while (new := tail.since(last)) is not None:
                    for event in new:
                        yield event
                        if event["type"] == "end":
                            return
                        last = event["seq"]
                    if tail.finished:
                        if tail.error is not None:
                            raise tail.error
                        break  # the bulk read tells what is left
                    await tail.wait(last)
            finally:
                self._leave(tail, job_id)

    async def request_cancel(self, job_id: str) -> JobRecord | None:
        async with self._bounded():
            flat = await self._cancel([self._keys.job(job_id)], [self._keys.cancel, job_id])
        if not flat:
            return None
        return _record(dict(zip(flat[::2], flat[1::2], strict=True)))

    async def wait_cancel(self, job_id: str) -> None:
        self._ensure_listener()
        waiter = self._waiters.setdefault(job_id, _Waiter())
        waiter.count += 1
        try:
            try:
                async with self._bounded():
                    flag = await self._redis.hget(self._keys.job(job_id), "cancel_requested")
                check_cancelled()
            except StoreUnavailable as exc:  # the listener checks again once Redis is back
                log.warning("cannot check job %s for cancellation: %s", job_id, exc)
            else:
                if flag is None:
                    raise JobNotFound(job_id)
                if flag == b"1":
                    return
            await waiter.event.wait()
        finally:
            waiter.count -= 1
            if not waiter.count and self._waiters.get(job_id) is waiter:
                del self._waiters[job_id]

    async def list_jobs(
        self,
        *,
        pipeline: str | None = None,
        status: JobStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        before, before_id = ("+inf", "") if cursor is None else read_cursor(cursor)
        index = self._keys.index if pipeline is None else self._keys.pipeline_index(pipeline)
        args = [before, before_id, limit, "" if status is None else status.value]
        async with self._bounded():
            flats, score, last_id, cut = await self._list(
                [index], [*args, self._keys.job(""), LIST_BUDGET]
            )
        records = [_record(dict(zip(flat[::2], flat[1::2], strict=True))) for flat in flats]
        if len(records) > limit:  # one more exists: there is a next page
            records = records[:limit]
            return JobPage(records, page_cursor(list_key(records[-1])))
        if cut:  # the budget ran out: go on after the last entry looked at
            return JobPage(records, page_cursor((int(float(score)), last_id.decode())))
        return JobPage(records, None)

    async def prune_index(self) -> int:
        """Take the jobs whose retention is over out of the indexes; how many were."""
        keys = [self._keys.expiring, self._keys.index]
        async with self._bounded():
            return int(await self._prune(keys, [self._keys.prefix, PRUNE_COUNT]))

    async def running_count(self) -> int:
        async with self._bounded():
            return int(await self._redis.zcard(self._keys.running))

    async def ping(self) -> None:
        async with self._bounded():
            await self._redis.ping()

    def abandon(self, job_id: str) -> None:
        writer = self._writers.pop(job_id, None)
        if writer is not None:
            writer.abandon()

    async def renew_lease(self, job_id: str) -> None:
        async with self._bounded():
            state = await self._renew([self._keys.job(job_id), self._keys.running], [job_id])
        if state:  # 1: cancellation requested (a missed message); -1: the job was lost
            if state < 0:
                log.warning("job %s is no longer running here: stopping it", job_id)
            self._wake(job_id)

    async def start(self) -> None:
        """Start the reaper and the cancellation listener (the app's lifespan calls this)."""
        self._ensure_listener()
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_forever(), name="conveyor-reaper")

    async def close(self) -> None:
        tails = list(self._tails.values())
        for tail in tails:
            tail.close()
        writers = list(self._writers.values())
        await asyncio.gather(*(writer.close(CLOSE_GRACE_S) for writer in writers))
        tasks = [t for t in (self._listener, self._reaper) if t is not None]
        self._listener = self._reaper = None
        await stop_tasks([*tasks, *(tail.task for tail in tails)], STOP_S)
        await self._redis.aclose()

    # -- the reaper --------------------------------------------------------------------------

    async def reap(self) -> list[str]:
        """Fail the jobs whose lease is past its deadline; the ids this replica failed."""
        with self._unavailable():
            ids = await self._expired([self._keys.running], [100])
            lost = []
            message = json.dumps(WORKER_LOST)
            for raw in ids:
                job_id = raw.decode()
                keys = [
                    self._keys.job(job_id),
                    self._keys.events(job_id),
                    self._keys.running,
                    self._keys.expiring,
                ]
                if await self._lose(keys, [job_id, message, self._ttl_ms, time.time()]):
                    lost.append(job_id)
        for job_id in lost:
            log.warning("job %s lost its replica: marked failed (WorkerLost)", job_id)
        return lost

    async def _reap_forever(self) -> None:
        """Every half lease period, `reap`; not before Redis has answered for LOST_AFTER periods
        after an outage, so that owners have renewed the leases the outage let expire."""
        loop = asyncio.get_running_loop()
        healthy_since: float | None = -float("inf")
        pruned = -float("inf")
        while True:
            await asyncio.sleep(self.lease_s / 2)
            try:
                if healthy_since is None:
                    await self.ping()
                    healthy_since = loop.time()
                if loop.time() - healthy_since >= LOST_AFTER * self.lease_s:
                    await self.reap()
                if loop.time() - pruned >= PRUNE_EVERY_S:
                    await self.prune_index()
                    pruned = loop.time()
                check_cancelled()  # a cancel landing in a command may have been swallowed
            except StoreUnavailable as exc:
                if healthy_since is not None:
                    log.warning("reaper: %s", exc)
                healthy_since = None
            except Exception:
                log.exception("reaper failed; trying again")

    # -- cancellation --------------------------------------------------------------------------

    def _ensure_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="conveyor-cancel-listener")

    async def _listen(self) -> None:
        """Wake local waiters on the cancel channel; after each (re)subscription, check their
        flags, since a message sent while unsubscribed is lost."""
        backoff = BACKOFF_FIRST_S
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._keys.cancel)
                await self._check_waiters()
                check_cancelled()  # a cancel landing in a command may have been swallowed
                if backoff > BACKOFF_FIRST_S:
                    log.info("cancel listener: subscribed again")
                backoff = BACKOFF_FIRST_S
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                    check_cancelled()
                    if message is not None and message["type"] == "message":
                        self._wake(message["data"].decode())
            except UNREACHABLE as exc:
                if backoff == BACKOFF_FIRST_S:
                    log.warning("cancel listener: %s; resubscribing", self._error(exc))
            except Exception:
                log.exception("cancel listener failed; resubscribing")
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            check_cancelled()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _check_waiters(self) -> None:
        for job_id in list(self._waiters):
            flag = await self._redis.hget(self._keys.job(job_id), "cancel_requested")
            if flag == b"1":
                self._wake(job_id)

    def _wake(self, job_id: str) -> None:
        waiter = self._waiters.get(job_id)
        if waiter is not None:
            waiter.event.set()

    # -- helpers ---------------------------------------------------------------------------------

    async def _write(self, job_id: str, batch: list[Pending], token: str) -> None:
        """One script call for `batch` (consecutive events of the job)."""
        first, last = batch[0], batch[-1]
        end: list[Any] = ["", "", ""] if last.end is None else list(last.end)
        args: list[Any] = [job_id, self._ttl_ms, token, first.seq]
        args += [sum(p.results for p in batch), sum(p.skipped for p in batch), *end]
        keys = [
            self._keys.job(job_id),
            self._keys.events(job_id),
            self._keys.running,
            self._keys.expiring,
        ]
        code, expected = await self._append(keys, [*args, *(p.data for p in batch)])
        if code == 1:
            raise JobNotFound(job_id)
        if code == 2:
            raise ValueError(f"job {job_id!r} has ended")
        if code == 3:
            if first.seq < expected <= last.seq + 1:
                raise Behind(expected)
            raise ValueError(f"event seq {first.seq} != next seq {expected}")

    def _forget(self, job_id: str, writer: EventWriter) -> None:
        if self._writers.get(job_id) is writer:
            del self._writers[job_id]

    async def _settle(self, job_id: str) -> None:
        """Let this replica's queued events of the job reach Redis first (read your writes)."""
        writer = self._writers.get(job_id)
        if writer is not None:
            await writer.drain(1.0)

    async def _read_bulk(self, job_id: str, last: int) -> tuple[str, list[WireEvent], int]:
        """The job's status, up to READ_COUNT events after seq `last`, and its event count."""
        keys = [self._keys.job(job_id), self._keys.events(job_id)]
        status, n, blob, count = await self._fetch(keys, [entry_id(last + 1), READ_COUNT])
        return status.decode(), _loads(blob) if n else [], int(count)

    def _tail(self, job_id: str, after: int) -> Tail:
        """The job's tail in this process (started after seq `after` if there is none)."""
        tail = self._tails.get(job_id)
        if tail is None or tail.finished:
            backoff = _Backoff(self.retry_s, f"follow job {job_id}")

            async def read(last: int) -> tuple[list[WireEvent], int]:
                return await self._retrying(backoff, self._read_live, job_id, last)

            async def status() -> str | None:
                return await self._retrying(backoff, self._status, job_id)

            tail = self._tails[job_id] = Tail(read, status, after)
        tail.users += 1
        return tail

    def _leave(self, tail: Tail, job_id: str) -> None:
        tail.users -= 1
        if not tail.users:
            tail.close()
            if self._tails.get(job_id) is tail:
                del self._tails[job_id]

    async def _read_live(self, job_id: str, last: int) -> tuple[list[WireEvent], int]:
        """The events after seq `last`, waiting up to BLOCK_MS for the first one; and the size of
        their JSON."""
        streams: dict[Any, Any] = {self._keys.events(job_id): entry_id(last)}
        reply: Any = await self._redis.xread(streams, count=WAKE_COUNT, block=BLOCK_MS)
        blobs = [fields[EVENT_FIELD] for _, fields in reply[0][1]] if reply else []
        events = [_loads(blob) for blob in blobs]
        size = sum(len(blob) for blob in blobs)
        if len(events) == WAKE_COUNT:  # more are waiting: read them in bulk
            keys = [self._keys.job(job_id), self._keys.events(job_id)]
            _, n, blob, _ = await self._fetch(keys, [entry_id(events[-1]["seq"] + 1), READ_COUNT])
            if n:
                events += _loads(blob)
                size += len(blob)
        return events, size

    async def _status(self, job_id: str) -> str | None:
        status = cast(bytes | None, await self._redis.hget(self._keys.job(job_id), "status"))
        return None if status is None else status.decode()

    async def _retrying(self, backoff: _Backoff, call: Any, *args: Any) -> Any:
        while True:
            try:
                result = await call(*args)
            except UNREACHABLE as exc:
                await backoff.wait(self._error(exc))
            else:
                backoff.reset()
                return result

    @contextlib.asynccontextmanager
    async def _bounded(self) -> AsyncIterator[None]:
        """A call someone waits on (a request, the runner): `StoreUnavailable` when Redis does
        not answer within `timeout_s` (frozen, not only down), or cannot be reached."""
        try:
            async with asyncio.timeout(self.timeout_s):
                yield
        except TimeoutError as exc:  # before UNREACHABLE: a TimeoutError is an OSError
            raise StoreUnavailable(
                f"Redis at {self.url} did not answer within {self.timeout_s}s"
            ) from exc
        except UNREACHABLE as exc:
            raise self._error(exc) from exc

    @contextlib.contextmanager
    def _unavailable(self) -> Iterator[None]:
        try:
            yield
        except UNREACHABLE as exc:
            raise self._error(exc) from exc

    def _error(self, exc: BaseException) -> StoreUnavailable:
        reason = str(exc) or type(exc).__name__
        return StoreUnavailable(f"Redis at {self.url} cannot be reached: {reason}")


class _Backoff:
    """Waits between attempts, doubling, until `budget_s` has passed since the first failure."""

    def __init__(self, budget_s: float, what: str) -> None:
        self.budget_s = budget_s
        self.what = what
        self._since: float | None = None
        self._delay = BACKOFF_FIRST_S

    async def wait(self, error: StoreUnavailable) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since = now
            log.warning("%s: %s; retrying for up to %ss", self.what, error, self.budget_s)
        if now + self._delay - self._since > self.budget_s:
            raise error
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, BACKOFF_MAX_S)

    def reset(self) -> None:
        if self._since is not None:
            log.info("%s: Redis answers again", self.what)
        self._since = None
        self._delay = BACKOFF_FIRST_S


def _pending(event: WireEvent) -> Pending:
    kind = event["type"]
    item = Pending(int(event["seq"]), _dumps(event))
    if kind == "result":
        item.results = 1
    elif kind == "item_error" and str(event.get("action", "")).startswith("skip"):
        item.skipped = len(event.get("sources") or ())
    elif kind == "end":
        item.end = (JobStatus(event["status"]).value, _dumps(event.get("stats")), time.time())
    return item


def _fields(record: JobRecord, lost_ms: int) -> list[Any]:
    return [
        *("job_id", record.job_id, "pipeline", record.pipeline, "mode", record.mode),
        *("items", record.items, "created_at", repr(record.created_at)),
        *("status", record.status.value, "stats", _dumps(record.stats)),
        *("finished_at", "" if record.finished_at is None else repr(record.finished_at)),
        *("cancel_requested", "1" if record.cancel_requested else "0"),
        *("next", 0, "results", 0, "skipped", 0, "lost_ms", lost_ms),
    ]


def _record(data: dict[bytes, bytes]) -> JobRecord:
    text = {key.decode(): value.decode() for key, value in data.items()}
    return JobRecord(
        job_id=text["job_id"],
        pipeline=text["pipeline"],
        mode=text["mode"],
        items=int(text["items"]),
        created_at=float(text["created_at"]),
        status=JobStatus(text["status"]),
        stats=_loads(text["stats"]) if text.get("stats") else None,
        finished_at=float(text["finished_at"]) if text.get("finished_at") else None,
        cancel_requested=text.get("cancel_requested") == "1",
    )


def _split_prefix(url: str) -> tuple[str, str | None]:
    """The URL without its `prefix=` query parameter (the store's, not redis-py's), and it."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for name, value in query if name == "prefix"]
    if not prefixes:
        return url, None
    rest = urlencode([(name, value) for name, value in query if name != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefixes[-1]


def _without_password(url: str) -> str:
    """The URL as it may be logged and shown: no password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))
