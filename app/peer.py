"""Is the client still there? Asked of the connection's socket, without reading the request body.

ASGI tells an app that its client left only through `receive()`, which also hands it the next
piece of the body. An NDJSON upload whose pipeline is behind must not read further (its
backpressure), and while the server does not read, it does not see the connection close
either. `client_gone(receive)` gives a check that asks the kernel instead: the TCP state of the
socket (`TCP_INFO`) says when the peer has closed or reset the connection, whatever data is
still unread. `cut(receive)` drops a connection whose client takes nothing (a send timeout), so
that the server does not report a response left unfinished. Both are hand-written because no
server or library offers them: they reach the socket through uvicorn's request cycle (the
`receive` it passes is a bound method of it), and do nothing under any other server, or on a
system without `TCP_INFO`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from starlette.types import Receive

__all__ = ["client_gone", "cut", "transport_of"]

# Linux TCP states (include/net/tcp_states.h) in which the peer has closed or reset the connection
_GONE = {6, 7, 8, 9, 11}  # TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, CLOSING


def transport_of(receive: Receive) -> Any:
    """The connection's asyncio transport: uvicorn's (its request cycle's), or one an app's
    own `receive` wrapper carries as `transport`; None when unknown."""
    return getattr(receive, "transport", None) or getattr(
        getattr(receive, "__self__", None), "transport", None
    )


async def cut(receive: Receive) -> bool:
    """Drop the connection (what is still buffered for it included): how a response ends when
    its client takes nothing. The server then sees a disconnect, not a response left
    unfinished. False when the connection cannot be reached (the caller ends it its way)."""
    transport = transport_of(receive)
    if transport is None:
        return False
    transport.abort()
    for _ in range(3):  # the server hears of it (connection_lost) in the next loop iterations
        await asyncio.sleep(0)
    return True


def client_gone(receive: Receive) -> Callable[[], bool] | None:
    """A check that is True once the client has closed the connection, or None when the
    connection's socket cannot be asked."""
    transport = transport_of(receive)
    if transport is None or not hasattr(socket, "TCP_INFO"):
        return None
    sock: Any = transport.get_extra_info("socket")
    if sock is None:
        return None

    def gone() -> bool:
        if transport.is_closing():
            return True
        try:
            state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)
        except OSError:
            return True
        return bool(state) and state[0] in _GONE

    try:
        gone()
    except Exception:  # not a TCP socket (a Unix socket, a test double)
        return None
    return gone
