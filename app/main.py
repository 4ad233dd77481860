"""The ASGI application: `create_app(settings)` builds it; `app` is the one `uvicorn` serves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.api.deps import Services
from app.api.handlers import install_error_handlers, internal_error
from app.api.routes import docs, health, jobs, pipelines, playground
from app.api.routes import metrics as metrics_route
from app.core.config import Settings
from app.core.logging import RequestContext, configure_logging
from app.jobs import JobRunner, create_store
from app.metrics import Metrics
from app.openapi import build_openapi
from app.pipelines import Registry

__all__ = ["app", "begin_shutdown", "create_app"]

log = logging.getLogger("conveyor.service")

DESCRIPTION = """Runs registered Conveyor pipelines and streams their events: each result as
soon as it can be yielded, in input order or as completed, over Server-Sent Events or NDJSON."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """A service for `settings` (default: from the CONVEYOR_* environment)."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
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
    )
    services = Services(settings, registry, store, runner, metrics, stopping)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info(
            "service started",
            extra={
                "pipelines": list(registry),
                "store": type(store).__name__,
                "auth": bool(settings.api_keys),
            },
        )
        await store.start()
        try:
            yield
        finally:
            stopping.set()
            await runner.aclose()
            await _close_executors(registry)
            await store.close()
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
    if playground.STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=playground.STATIC_DIR), name="static")
    install_error_handlers(app)
    app.add_middleware(RequestContext, metrics=metrics, internal_error=internal_error)

    def openapi() -> dict[str, Any]:
        return build_openapi(app, registry)

    app.openapi = openapi  # type: ignore[method-assign]
    return app


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
