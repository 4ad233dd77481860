"""The ASGI application: `create_app(settings)` builds it; `app` is the one `uvicorn` serves."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from .api.deps import Services
from .api.handlers import install_error_handlers, internal_error
from .api.routes import docs, health, jobs, pipelines, playground
from .api.routes import metrics as metrics_route
from .core.config import Settings
from .core.logging import RequestContext, configure_logging
from .jobs import JobRunner, JobStore, create_store
from .metrics import Metrics
from .openapi import build_openapi
from .pipelines import Registry
from .telemetry import Tracing, tracing_from_environment

__all__ = ["app", "begin_shutdown", "create_app", "tune_gc"]

log = logging.getLogger("conveyor.service")

# CORS (CONVEYOR_CORS_ORIGINS): what a page on another origin may send and read. API keys go
# in the Authorization header, not in cookies: no credentials mode is needed.
CORS_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE"]
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "Last-Event-ID", "X-Request-ID"]
CORS_RESPONSE_HEADERS = ["Location", "Retry-After", "WWW-Authenticate", "X-Request-ID"]
STORE_CHECK_S = 2.0  # at start-up, how long the job store has to answer before a warning

DESCRIPTION = """Runs registered Conveyor pipelines and streams their events: each result as
soon as it can be yielded, in input order or as completed, over Server-Sent Events or NDJSON."""


def create_app(settings: Settings | None = None, *, tracing: Tracing | None = None) -> FastAPI:
    """A service for `settings` (default: from the CONVEYOR_* environment); `tracing`:
    OpenTelemetry's (default: as the OTEL_* variables ask, else none; see app.telemetry)."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    if tracing is None:
        tracing = tracing_from_environment(link_window=settings.otel_link_window)
    registry = Registry.load(
        settings.pipelines,
        builtin=settings.builtin_pipelines,
        max_in_flight=settings.max_in_flight,
    )
    metrics = Metrics()
    store = create_store(settings)
    stopping = asyncio.Event()  # see begin_shutdown
    runner = JobRunner(
        store,
        metrics,
        max_running=settings.max_running_jobs,
        lease_s=settings.job_lease_s,
        stopping=stopping,
        tracing=tracing,
    )
    services = Services(settings, registry, store, runner, metrics, stopping, tracing)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info(
            "service started",
            extra={
                "pipelines": list(registry),
                "store": type(store).__name__,
                "auth": bool(settings.api_keys),
                "tracing": tracing is not None,
            },
        )
        tune_gc(settings.gc_threshold)
        await store.start()
        await _startup_warnings(registry, store)
        try:
            yield
        finally:
            stopping.set()
            await runner.aclose()
            await _close_executors(registry)
            await store.close()
            if tracing is not None:
                tracing.shutdown()
            log.info("service stopped")

    app = FastAPI(
        title="Conveyor Streaming",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    for module in (health, pipelines, jobs, metrics_route, docs, playground):
        app.include_router(module.router)
    app.mount(docs.ASSETS_URL, StaticFiles(directory=docs.ASSETS_DIR), name="docs-assets")
    if playground.STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=playground.STATIC_DIR), name="static")
    install_error_handlers(app)
    app.add_middleware(RequestContext, metrics=metrics, internal_error=internal_error)
    if tracing is not None:
        tracing.instrument(app)  # the outermost middleware: a span per request
    if settings.cors_origins:  # outermost: every response carries the headers, 500s included
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_RESPONSE_HEADERS,
        )

    def openapi() -> dict[str, Any]:
        return build_openapi(app, registry)

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def tune_gc(threshold: int) -> None:
    """Collect Python's youngest generation every `threshold` allocations instead of 700.

    With many requests in flight, most young objects are still alive at each collection of
    the default 700, so they are promoted and traversed again and again by the older
    generations' collections: under 2,000 concurrent streams that cost more CPU than the
    requests' own work (benchmarks/service.py, README "Performance"). 0 leaves Python's own.
    """
    if threshold:
        gc.set_threshold(threshold, *gc.get_threshold()[1:])


async def _startup_warnings(registry: Registry, store: JobStore) -> None:
    """Log what would make the service useless: no pipeline, a job store out of reach (the
    service starts all the same: /readyz and the job routes answer 503 until it answers)."""
    if not registry:
        log.warning(
            "no pipeline is registered: every /pipelines/{name} route answers 404 (set "
            "CONVEYOR_PIPELINES, or leave CONVEYOR_BUILTIN_PIPELINES on)"
        )
    try:
        async with asyncio.timeout(STORE_CHECK_S):
            await store.ping()
    except Exception as exc:
        reason = f"no answer within {STORE_CHECK_S:g} s" if isinstance(exc, TimeoutError) else exc
        log.warning(
            "job store unavailable at start-up: %s; /readyz and job routes answer 503 until then",
            reason or type(exc).__name__,
        )


def begin_shutdown(app: FastAPI) -> None:
    """Tell `app` that the server is about to stop (call it in the app's event loop).

    Jobs are cancelled (their followers get `end` with status `cancelled`), and streams and
    invokes end with their run cancelled, before the server waits for connections to close.
    Without it (another ASGI server), that happens only once the server has cut them.
    """
    services: Services = app.state.services
    services.stopping.set()


async def _close_executors(registry: Registry) -> None:
    """Release the pools and Ray actors of the pipelines' executors (the runs have ended)."""
    for executor in registry.executors():
        try:
            await executor.aclose()
        except Exception:
            log.exception("closing executor %s failed", executor.describe())


def _version() -> str:
    try:
        return version("conveyor-streaming-core")
    except PackageNotFoundError:
        return "0"


app: FastAPI  # not assigned here: built on first use by `__getattr__`


def __getattr__(name: str) -> Any:
    """`app`, built on first use: `uvicorn app.main:app` builds it, `import app.main` does not."""
    if name == "app":
        global app
        app = create_app()
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
