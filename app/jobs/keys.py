"""Where the Redis job store keeps things: every key and channel name, under one prefix.

{prefix}job:{id}       hash: the job's record, its next seq, counters, lease length, tokens
{prefix}events:{id}    stream: the job's events; entry id `0-{seq + 1}`, field `e` = JSON
{prefix}running        sorted set: ids of running jobs, scored by lease deadline (ms, Redis time)
{prefix}cancel         pub/sub channel: a job id, published when its cancellation is requested
{prefix}index          sorted set: ids of the jobs kept, scored by creation (microseconds)
{prefix}index:{name}   sorted set: the same, of one pipeline's jobs
{prefix}expiring       sorted set: `{id}:{pipeline}` of finished jobs, scored by the end of their
                       retention (ms, Redis time): the reaper takes them out of the indexes
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_PREFIX", "EVENT_FIELD", "Keys", "entry_id", "entry_seq"]

DEFAULT_PREFIX = "conveyor:"
EVENT_FIELD = b"e"  # the stream entry's one field: the wire event as JSON


@dataclass(frozen=True, slots=True)
class Keys:
    """The names of one store's keys; replicas share a store by sharing the prefix."""

    prefix: str = DEFAULT_PREFIX

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def events(self, job_id: str) -> str:
        return f"{self.prefix}events:{job_id}"

    @property
    def running(self) -> str:
        return f"{self.prefix}running"

    @property
    def cancel(self) -> str:
        return f"{self.prefix}cancel"

    @property
    def index(self) -> str:
        return f"{self.prefix}index"

    def pipeline_index(self, pipeline: str) -> str:
        return f"{self.prefix}index:{pipeline}"

    @property
    def expiring(self) -> str:
        return f"{self.prefix}expiring"


def entry_id(seq: int) -> str:
    """The stream entry id of event `seq` (`0-0` for seq -1: before the first event)."""
    return f"0-{seq + 1}"


def entry_seq(entry: bytes | str) -> int:
    """The seq of a stream entry id."""
    text = entry.decode() if isinstance(entry, bytes) else entry
    return int(text.partition("-")[2]) - 1
