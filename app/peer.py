"""Is the client still there? Asked of the connection's socket, without reading the request body.

ASGI tells an app that its client left only through `receive()`, which also hands it the next
piece of the body. An NDJSON upload whose pipeline is behind must not read further (its
backpressure), and while the server does not read, it does not see the connection close
either. `client_gone(receive)` gives a check that asks the kernel instead: the TCP state of the
socket (`TCP_INFO`) says when the peer has closed or reset the connection, whatever data is
still unread. It is hand-written because no server or library offers it: it reaches the socket
through uvicorn's request cycle (the `receive` it passes is a bound method of it), and gives None
under any other server, or on a system without `TCP_INFO`, where nothing changes.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from starlette.types import Receive

__all__ = ["client_gone"]

# Linux TCP states (include/net/tcp_states.h) in which the peer has closed or reset the connection
_GONE = {6, 7, 8, 9, 11}  # TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, CLOSING


def client_gone(receive: Receive) -> Callable[[], bool] | None:
    """A check that is True once the client has closed the connection, or None when the
    connection's socket cannot be asked."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
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
