"""Jobs: background runs whose events are kept in a job store and can be followed and resumed."""

from __future__ import annotations

import importlib

from ..core.config import Settings
from .memory import MemoryJobStore
from .runner import JobRunner
from .store import JobRecord, JobStatus, JobStore

__all__ = ["JobRecord", "JobRunner", "JobStatus", "JobStore", "MemoryJobStore", "create_store"]

REDIS_STORE = ".redis"  # RedisJobStore(url, *, ttl_s, lease_s, timeout_s), relative to here


def create_store(settings: Settings) -> JobStore:
    """The in-memory store, or the Redis one when CONVEYOR_REDIS_URL is set."""
    if not settings.redis_url:
        return MemoryJobStore(
            ttl_s=settings.job_ttl_s,
            max_bytes=settings.job_store_max_bytes,
            max_jobs=settings.job_store_max_jobs,
        )
    try:
        module = importlib.import_module(REDIS_STORE, __package__)
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "CONVEYOR_REDIS_URL is set, but this version has no Redis job store"
        ) from exc
    store: JobStore = module.RedisJobStore(
        settings.redis_url,
        ttl_s=settings.job_ttl_s,
        lease_s=settings.job_lease_s,
        timeout_s=settings.store_timeout_s,
    )
    return store
