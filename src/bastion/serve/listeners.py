"""Where each app listens: a :class:`Listener` per app, and its address bound before anything
starts, so that a taken port is one :class:`PortUnavailable` naming the listener."""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp


@dataclass(frozen=True)
class Listener:
    """One app of a stack and where it listens."""

    name: str
    app: ASGIApp
    host: str
    port: int


class PortUnavailable(Exception):
    """A listener cannot have its address: which listener, which address, and why."""

    def __init__(self, name: str, host: str, port: int, reason: str) -> None:
        super().__init__(f"port {port} on {host} ({name}) {reason}")
        self.name, self.host, self.port, self.reason = name, host, port, reason


def bind_listener(name: str, host: str, port: int) -> socket.socket:
    """Bind ``host:port`` as uvicorn would (SO_REUSEADDR; IPv6 when the host has a colon), so
    that a taken port is one :class:`PortUnavailable` before anything starts, not a traceback
    from inside uvicorn."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortUnavailable(name, host, port, _why(exc)) from None
    except (socket.gaierror, UnicodeError) as exc:
        sock.close()
        raise PortUnavailable(name, host, port, f"cannot be used: {exc}") from None
    return sock


def _why(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "is in use by another program"
    if exc.errno == errno.EACCES:
        return "needs privileges this user does not have (ports below 1024)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "cannot be used: the address is not one of this machine's"
    return f"cannot be used: {exc.strerror or exc}"


def bind_listeners(addresses: Sequence[tuple[str, str, int]]) -> list[socket.socket]:
    """Bind every (name, host, port), or none: the first that fails raises
    :class:`PortUnavailable` after the others are released."""
    bound: list[socket.socket] = []
    try:
        for name, host, port in addresses:
            bound.append(bind_listener(name, host, port))
    except PortUnavailable:
        for sock in bound:
            sock.close()
        raise
    return bound


__all__ = ["Listener", "PortUnavailable", "bind_listener", "bind_listeners"]
