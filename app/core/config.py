"""The service's settings: one class, read from `CONVEYOR_*` environment variables."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from redis.asyncio.connection import parse_url

__all__ = ["Settings"]

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class Settings(BaseSettings):
    """Every knob of the service; `CONVEYOR_<NAME>` sets `<name>` (lists: comma-separated)."""

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    pipelines: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="modules defining PIPELINES, besides the built-in ones"
    )
    builtin_pipelines: bool = Field(default=True, description="serve the built-in pipelines")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, repr=False, description="bearer keys; none: no authentication"
    )
    max_items: int = Field(default=10_000, ge=1, description="items per request")
    max_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1,
        description="a JSON request body larger than this is refused (413) before it is read",
    )
    max_item_bytes: int = Field(
        default=1 << 20,
        ge=1,
        description="one item's JSON text (a JSON body's item, an NDJSON line): larger is refused",
    )
    max_upload_bytes: int = Field(
        default=256 << 20, ge=1, description="an NDJSON upload's whole body: larger fails the run"
    )
    max_running_jobs: int = Field(default=100, ge=1)
    max_in_flight: int | None = Field(
        default=None,
        ge=1,
        description="items a run admits and has not yet delivered, for pipelines that set none "
        "(none: the engine's default, 4096)",
    )
    job_ttl_s: float = Field(default=3600.0, gt=0, description="retention of a finished job")
    job_store_max_bytes: int = Field(
        default=256 << 20,
        ge=1,
        description="in-memory job store: bytes of events kept (finished jobs are evicted, "
        "oldest first, to make room)",
    )
    job_store_max_jobs: int = Field(
        default=10_000, ge=1, description="in-memory job store: jobs kept, running or finished"
    )
    sse_ping_s: float = Field(default=15.0, ge=0, description="SSE keep-alive comment period")
    send_timeout_s: float = Field(
        default=30.0, gt=0, description="a stream whose client takes longer to accept a write ends"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins whose browser pages may call the service (CORS), comma-separated; "
        "`*`: any; none: no CORS headers",
    )
    max_connections: int = Field(
        default=4096,
        ge=1,
        description="conveyor serve: concurrent connections; a request beyond them gets 503",
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="conveyor serve: a request's headers must arrive in this"
    )
    body_timeout_s: float = Field(
        default=60.0, gt=0, description="a JSON request body must arrive within this (408)"
    )
    keep_alive_s: int = Field(
        default=5, ge=1, description="conveyor serve: an idle kept-alive connection is closed"
    )
    stream_buffer_bytes: int = Field(
        default=1 << 20,
        ge=1,
        description="bytes of a stream's events waiting between its run and a slow socket",
    )
    log_level: LogLevel = "info"
    gc_threshold: int = Field(
        default=10_000,
        ge=0,
        description="allocations between two collections of Python's youngest GC generation "
        "(gc.set_threshold's first value; Python's own is 700); 0: leave Python's",
    )
    redis_url: str | None = None
    store_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="a job store call a request waits on fails (503) past this deadline",
    )
    job_lease_s: float = Field(default=5.0, gt=0)
    jobs_page_max: int = Field(
        default=500, ge=1, description="GET /jobs: the largest `limit` of one page"
    )
    otel_link_window: int = Field(
        default=65536,
        ge=0,
        description="OpenTelemetry: the latest stage calls of a run whose spans later calls can "
        "link to (a batch links its members' calls)",
    )

    @field_validator("pipelines", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys(cls, value: object) -> object:
        """Comma-separated keys; empty: no authentication. A value that names no key (`,`)
        is refused rather than read as "no authentication"."""
        if isinstance(value, str):
            if not value.strip():
                return []
            value = value.split(",")
        if isinstance(value, list | tuple) and value:
            keys = [key.strip() if isinstance(key, str) else key for key in value]
            keys = [key for key in keys if key != ""]
            if not keys:
                raise ValueError(
                    "CONVEYOR_API_KEYS is set but holds no key: give comma-separated keys, "
                    "or leave it empty (or unset) for no authentication"
                )
            return keys
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        """Each an origin as a browser sends it: `scheme://host[:port]`, no path, or `*`."""
        for origin in value:
            parts = urlsplit(origin)
            if origin != "*" and not (
                parts.scheme in ("http", "https") and parts.netloc and origin.endswith(parts.netloc)
            ):
                raise ValueError(
                    f"{origin!r} is not an origin: give scheme://host[:port] (no path, no "
                    "trailing slash), or * for any"
                )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("redis_url", "max_in_flight", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        """A URL redis-py can connect to (`redis://`, `rediss://`, `unix://`), checked at
        start-up rather than at the first job (the store's `?prefix=` is one of its options)."""
        if value is not None:
            parse_url(value)  # ValueError: the scheme, the port or an option is wrong
            db = urlsplit(value).path.strip("/")
            if value.startswith(("redis:", "rediss:")) and db and not db.isdigit():
                raise ValueError(f"the database must be a number (redis://host:6379/0), not {db!r}")
        return value
