"""`conveyor serve`: run the service with uvicorn on CONVEYOR_HOST:CONVEYOR_PORT."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import uvicorn
from pydantic import ValidationError

from app.core.config import Settings
from app.errors import RegistryError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="conveyor", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service (settings: CONVEYOR_*)")
    serve.add_argument("--host", help="overrides CONVEYOR_HOST")
    serve.add_argument("--port", type=int, help="overrides CONVEYOR_PORT")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"conveyor: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    try:  # fail fast, and clearly, on a bad CONVEYOR_PIPELINES module
        from app.pipelines import Registry

        Registry.load(
            settings.pipelines,
            builtin=settings.builtin_pipelines,
            max_in_flight=settings.max_in_flight,
        )
    except RegistryError as exc:
        print(f"conveyor: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        "app.main:app",
        host=args.host or settings.host,
        port=settings.port if args.port is None else args.port,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),
        access_log=False,  # the service logs each request itself, with its request id
        timeout_graceful_shutdown=10,
    )
    return 0


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's own logs as JSON lines, like the service's."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "app.core.logging.JsonFormatter"}},
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
        },
    }


if __name__ == "__main__":
    sys.exit(main())
