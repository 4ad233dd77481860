"""The Redis job store: every replica sharing one Redis serves every job.

The layout is in `app.jobs.keys`: per job a hash (the record) and a stream (the events, entry id
`0-{seq + 1}`), plus one sorted set of running jobs scored by lease deadline and one pub/sub
channel for cancellations. Each write that has to be atomic is one Lua script:

    create   count the running set, refuse over the limit, write the record, take the lease
    append   check the seq, XADD, extend the lease; for `end` also set status, stats and
             finished_at, leave the running set and start the retention time of hash and stream
    cancel   set `cancel_requested` on a running job and PUBLISH its id
    renew    extend the lease; tell the owner whether cancellation was requested or the job lost
    lose     the reaper's claim: a lease past its deadline gets `error` (WorkerLost) and `end`
             (failed) in one step, so exactly one replica writes them

Lease deadlines use Redis's clock (`TIME`), so replicas' clocks need not agree. Followers block
on `XREAD` (each its own read, woken by the append); a bounded block lets them notice expiry.
Two background tasks live between `start()` and `close()`: the reaper, and the listener that
turns cancellation messages into the local `wait_cancel` wake-ups.

The key prefix (`conveyor:`) can be changed with a `prefix` query parameter of the URL
(`redis://host:6379/0?prefix=staging:`), so that several deployments can share one Redis.

Outages: a call that cannot reach Redis raises `StoreUnavailable` after a short retry, except
`append` and live followers, which retry with backoff for `retry_s` seconds (an append carries a
token, so a retried append that had gone through is not written twice).
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

from pydantic_core import from_json, to_json
from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from app.jobs.keys import DEFAULT_PREFIX, EVENT_FIELD, Keys, entry_id
from app.jobs.store import (
    JobLimitReached,
    JobNotFound,
    JobRecord,
    JobStatus,
    JobStore,
    StoreUnavailable,
    WireEvent,
)

__all__ = ["WORKER_LOST", "RedisJobStore"]

log = logging.getLogger("conveyor.service.jobs.redis")

WORKER_LOST = "WorkerLost: the replica running this job stopped renewing its lease"
LOST_AFTER = 3  # lease periods without renewal after which a job is lost
BLOCK_MS = 2_000  # one blocking XREAD; then a follower checks the job still exists
READ_COUNT = 512  # stream entries per read
SOCKET_TIMEOUT_S = 10.0  # must exceed BLOCK_MS
CONNECT_TIMEOUT_S = 2.0
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 1.0

UNREACHABLE = (rexc.ConnectionError, rexc.TimeoutError, rexc.ReadOnlyError, OSError)

_NOW_MS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS job, running; ARGV id, max_running, lost_ms (the lease's deadline offset), token,
# then the record's field, value, ...
_CREATE = (
    _NOW_MS
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'token') == ARGV[4] then return {0, 0} end
  return {1, 0}
end
local running = redis.call('ZCARD', KEYS[2])
if running >= tonumber(ARGV[2]) then return {2, running} end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[3]), ARGV[1])
return {0, running + 1}
"""
)

# KEYS job, events, running; ARGV id, seq, type, event JSON, token, ttl ms, results +, skipped +,
# and for `end`: status, stats JSON, finished_at
_APPEND = (
    _NOW_MS
    + """
local st = redis.call('HMGET', KEYS[1], 'status', 'next', 'token', 'lost_ms')
if not st[1] then return {1, 0} end
local seq, nxt = tonumber(ARGV[2]), tonumber(st[2])
if st[3] == ARGV[5] and seq == nxt - 1 then return {0, nxt} end
if st[1] ~= 'running' then return {2, nxt} end
if seq ~= nxt then return {3, nxt} end
redis.call('XADD', KEYS[2], '0-' .. (seq + 1), 'e', ARGV[4])
redis.call('HSET', KEYS[1], 'next', seq + 1, 'token', ARGV[5])
if ARGV[7] ~= '0' then redis.call('HINCRBY', KEYS[1], 'results', ARGV[7]) end
if ARGV[8] ~= '0' then redis.call('HINCRBY', KEYS[1], 'skipped', ARGV[8]) end
if ARGV[3] == 'end' then
  redis.call('HSET', KEYS[1], 'status', ARGV[9], 'stats', ARGV[10], 'finished_at', ARGV[11])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
else
  redis.call('ZADD', KEYS[3], 'XX', now_ms() + tonumber(st[4]), ARGV[1])
end
return {0, seq + 1}
"""
)

# KEYS job; ARGV channel, id
_CANCEL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
if redis.call('HGET', KEYS[1], 'status') == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS job, running; ARGV id.  -1: not running any more, 1: cancellation requested, 0: renewed
_RENEW = (
    _NOW_MS
    + """
local lost = redis.call('HGET', KEYS[1], 'lost_ms')
if not lost or not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return -1 end
redis.call('ZADD', KEYS[2], 'XX', now_ms() + tonumber(lost), ARGV[1])
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then return 1 end
return 0
"""
)

# KEYS running; ARGV limit.  The running jobs whose lease deadline has passed.
_EXPIRED = (
    _NOW_MS
    + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[1]))
"""
)

# KEYS job, events, running; ARGV id, error message as a JSON string, ttl ms, finished_at
_LOSE = (
    _NOW_MS
    + """
local deadline = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not deadline or tonumber(deadline) > now_ms() then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
local st = redis.call('HMGET', KEYS[1], 'status', 'next', 'items', 'created_at', 'results',
                      'skipped')
if st[1] ~= 'running' then return 0 end
local n = tonumber(st[2])
local elapsed = math.max(0, tonumber(ARGV[4]) - tonumber(st[4]))
local stats = '{"inputs":' .. st[3] .. ',"results":' .. st[5] .. ',"skipped":' .. st[6]
  .. ',"dropped":0,"elapsed_s":' .. string.format('%.6f', elapsed) .. '}'
redis.call('XADD', KEYS[2], '0-' .. (n + 1), 'e',
  '{"type":"error","seq":' .. n .. ',"stage":null,"error":' .. ARGV[2] .. '}')
redis.call('XADD', KEYS[2], '0-' .. (n + 2), 'e',
  '{"type":"end","seq":' .. (n + 1) .. ',"status":"failed","stats":' .. stats .. '}')
redis.call('HSET', KEYS[1], 'next', n + 2, 'status', 'failed', 'stats', stats,
           'finished_at', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""
)


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
    ) -> None:
        url, url_prefix = _split_prefix(url)
        self.url = _without_password(url)
        self.lease_s = lease_s
        self.retry_s = retry_s
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._lost_ms = max(1, round(LOST_AFTER * lease_s * 1000))
        self._keys = Keys(prefix or url_prefix or DEFAULT_PREFIX)
        self._redis: Redis = Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
            health_check_interval=30,
        )
        script = self._redis.register_script
        self._create, self._append, self._cancel = script(_CREATE), script(_APPEND), script(_CANCEL)
        self._renew, self._expired, self._lose = script(_RENEW), script(_EXPIRED), script(_LOSE)
        self._tokens = (f"{uuid.uuid4().hex[:12]}:{n}" for n in itertools.count())
        self._waiters: dict[str, _Waiter] = {}
        self._listener: asyncio.Task[None] | None = None
        self._reaper: asyncio.Task[None] | None = None

    # -- the contract ----------------------------------------------------------------------

    async def create(self, record: JobRecord, *, max_running: int) -> None:
        keys = [self._keys.job(record.job_id), self._keys.running]
        args: list[Any] = [record.job_id, max_running, self._lost_ms, next(self._tokens)]
        with self._unavailable():
            code, count = await self._create(keys, [*args, *_fields(record, self._lost_ms)])
        if code == 1:
            raise ValueError(f"job {record.job_id!r} exists")
        if code == 2:
            raise JobLimitReached(int(count), max_running)

    async def get(self, job_id: str) -> JobRecord | None:
        with self._unavailable():
            data = await self._redis.hgetall(self._keys.job(job_id))
        return _record(cast(dict[bytes, bytes], data)) if data else None

    async def append(self, job_id: str, event: WireEvent) -> None:
        seq, kind = int(event["seq"]), str(event["type"])
        results = 1 if kind == "result" else 0
        skipped = len(event.get("sources") or ()) if kind == "item_error" else 0
        if kind == "item_error" and not str(event.get("action", "")).startswith("skip"):
            skipped = 0
        args: list[Any] = [job_id, seq, kind, _dumps(event), next(self._tokens), self._ttl_ms]
        args += [results, skipped]
        if kind == "end":
            args += [JobStatus(event["status"]).value, _dumps(event.get("stats")), time.time()]
        keys = [self._keys.job(job_id), self._keys.events(job_id), self._keys.running]
        backoff = _Backoff(self.retry_s, f"append to job {job_id}")
        while True:
            try:
                code, expected = await self._append(keys, args)
                break
            except UNREACHABLE as exc:
                await backoff.wait(self._error(exc))
        if code == 1:
            raise JobNotFound(job_id)
        if code == 2:
            raise ValueError(f"job {job_id!r} has ended")
        if code == 3:
            raise ValueError(f"event seq {seq} != next seq {expected}")

    async def events(
        self, job_id: str, *, after: int = -1, follow: bool = True
    ) -> AsyncIterator[WireEvent]:
        backoff = _Backoff(self.retry_s, f"read job {job_id}")
        status = await self._retrying(backoff, self._status, job_id)
        if status is None:
            return
        follow = follow and status == JobStatus.RUNNING.value
        stream, last = self._keys.events(job_id), entry_id(max(after, -1))
        while True:
            block = BLOCK_MS if follow else None
            reply = await self._retrying(backoff, self._read, stream, last, block)
            for _, fields in reply:
                event: WireEvent = from_json(fields[EVENT_FIELD])
                yield event
                if event["type"] == "end":
                    return
            if reply:
                last = reply[-1][0]
                if not follow and len(reply) < READ_COUNT:
                    return
            elif not follow:
                return
            else:  # a block passed without events: the job may have ended or expired since
                status = await self._retrying(backoff, self._status, job_id)
                if status is None:
                    return
                follow = status == JobStatus.RUNNING.value  # else: read what is left, stop

    async def request_cancel(self, job_id: str) -> JobRecord | None:
        with self._unavailable():
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
                with self._unavailable():
                    flag = await self._redis.hget(self._keys.job(job_id), "cancel_requested")
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

    async def running_count(self) -> int:
        with self._unavailable():
            return int(await self._redis.zcard(self._keys.running))

    async def ping(self) -> None:
        with self._unavailable():
            await self._redis.ping()

    async def renew_lease(self, job_id: str) -> None:
        with self._unavailable():
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
        tasks = [t for t in (self._listener, self._reaper) if t is not None]
        self._listener = self._reaper = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
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
                keys = [self._keys.job(job_id), self._keys.events(job_id), self._keys.running]
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
        while True:
            await asyncio.sleep(self.lease_s / 2)
            try:
                if healthy_since is None:
                    await self.ping()
                    healthy_since = loop.time()
                if loop.time() - healthy_since >= LOST_AFTER * self.lease_s:
                    await self.reap()
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
                if backoff > BACKOFF_FIRST_S:
                    log.info("cancel listener: subscribed again")
                backoff = BACKOFF_FIRST_S
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
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

    async def _status(self, job_id: str) -> str | None:
        status = cast(bytes | None, await self._redis.hget(self._keys.job(job_id), "status"))
        return None if status is None else status.decode()

    async def _read(self, stream: str, last: bytes | str, block: int | None) -> list[Any]:
        reply: Any = await self._redis.xread({stream: last}, count=READ_COUNT, block=block)
        return list(reply[0][1]) if reply else []

    async def _retrying(self, backoff: _Backoff, call: Any, *args: Any) -> Any:
        while True:
            try:
                result = await call(*args)
            except UNREACHABLE as exc:
                await backoff.wait(self._error(exc))
            else:
                backoff.reset()
                return result

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


def _dumps(value: Any) -> bytes:
    return to_json(value, inf_nan_mode="null")


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
        stats=from_json(text["stats"]) if text.get("stats") else None,
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
