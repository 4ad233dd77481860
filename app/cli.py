"""`conveyor serve`: run the service with uvicorn on CONVEYOR_HOST:CONVEYOR_PORT.

Logging is configured before anything logs (the registry's warnings included). At SIGTERM or
Ctrl+C the app hears of it at once (`app.main.begin_shutdown`): running jobs are cancelled
and open streams end with their `end` event, before uvicorn waits for connections to close
(`SHUTDOWN_TIMEOUT_S` at most, after which it cuts them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError

from .core.config import Settings
from .core.logging import JsonFormatter, configure_logging
from .errors import RegistryError

__all__ = ["Server", "main", "setting_errors"]

SHUTDOWN_TIMEOUT_S = 10  # uvicorn's graceful shutdown: then it cuts what is still open
STARTUP_FAILURE = 3  # uvicorn's exit code when the server could not start (port in use, ...)


class Server(uvicorn.Server):
    """uvicorn's server, which calls `on_exit` in its event loop as soon as it is told to stop."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and not self._loop.is_closed():  # a signal handler: not
            self._loop.call_soon_threadsafe(self._on_exit)  # in the loop's own code


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
        for line in setting_errors(exc):
            print(f"conveyor: invalid settings: {line}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    from .main import begin_shutdown, create_app
    from .server import server_options

    # CONVEYOR_PIPELINES modules are imported from the working directory, as uvicorn does: a
    # console script's sys.path starts at its own bin/ folder instead. The service itself is
    # imported already, under its own name (never a user's `app`: see ARCHITECTURE.md).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:  # fail fast, and clearly, on a bad CONVEYOR_PIPELINES module
        app = create_app(settings)
    except RegistryError as exc:
        print(f"conveyor: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        app,
        host=args.host or settings.host,
        port=settings.port if args.port is None else args.port,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),
        access_log=False,  # the service logs each request itself, with its request id
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S,
        **server_options(settings),  # connection cap, header deadline (app/server.py)
    )
    server = Server(config, on_exit=lambda: begin_shutdown(app))
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else STARTUP_FAILURE


def setting_errors(exc: ValidationError) -> list[str]:
    """One line per bad setting, named by its variable; values are not echoed (keys, URLs
    with passwords)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        name, *rest = [str(part) for part in error["loc"]] or ["?"]
        where = "CONVEYOR_" + name.upper() + "".join(f"[{part}]" for part in rest)
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return lines


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's own logs as JSON lines, like the service's."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
        },
    }


if __name__ == "__main__":
    sys.exit(main())
