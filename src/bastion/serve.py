"""Running the authorization server under uvicorn, in one process or several."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import errno
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

from bastion.config import Settings, export_config_file, settings_from_environment
from bastion.logs import UVICORN_LOGGING, configure_logging
from bastion.private_files import warn_loose_modes


def proxy_options(trusted_proxies: Sequence[str]) -> dict[str, Any]:
    """uvicorn's options for X-Forwarded-For and X-Forwarded-Proto: believed only from
    ``trusted_proxies``, not at all when there are none (by default uvicorn believes any peer
    on 127.0.0.1, so anything that runs on the host could claim any address)."""
    if not trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": list(trusted_proxies)}


# Seconds a stopping server waits for requests in flight. Long polls of /revocations are held
# up to revocations.max_wait (25 s): they are cut after this, and the resource servers' feeds
# ask again (another process, behind a load balancer) half a second later.
SHUTDOWN_GRACE = 5


def uvicorn_options(trusted_proxies: Sequence[str]) -> dict[str, Any]:
    """What every bastion listener gives ``uvicorn.run``/``uvicorn.Config``: the
    :func:`proxy_options`, no Server header, bastion's log setup."""
    return {
        **proxy_options(trusted_proxies),
        "server_header": False,
        "log_config": copy.deepcopy(UVICORN_LOGGING),
        "timeout_graceful_shutdown": SHUTDOWN_GRACE,
    }


def worker_app() -> Starlette:
    """Factory for worker processes (``--workers N``): settings come from the environment."""
    from bastion.authserver.app import create_app

    return create_app(settings_from_environment())


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


def serve_one(
    name: str, host: str, port: int, make_app: Callable[[], ASGIApp], **options: Any
) -> None:
    """Bind ``host:port`` (:class:`PortUnavailable` before the app is even made, so nothing
    else is logged first), then serve ``make_app()`` until interrupted; ``options`` go to
    ``uvicorn.Config``."""
    sock = bind_listener(name, host, port)
    try:
        config = uvicorn.Config(make_app(), host=host, port=port, **options)
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the SIGINT it handled, once it has stopped (as uvicorn.run)
    finally:
        sock.close()


def run_server(
    settings: Settings, *, config_file: Path | None, workers: int = 1, log_level: str = "info"
) -> None:
    """Serve until interrupted. Several workers share the database; nothing else is shared.
    ``log_level`` (debug, info, warning, error) applies to bastion's and uvicorn's loggers;
    below info, uvicorn writes no access log."""
    from bastion.authserver.app import create_app

    configure_logging(log_level)
    warn_loose_modes(settings, config_file)
    if workers > 1:
        # uvicorn binds in this process before it starts the workers: check first.
        bind_listener("the authorization server", settings.host, settings.port).close()
        if config_file is not None:
            export_config_file(config_file)
        uvicorn.run(
            "bastion.serve:worker_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            log_level=log_level,
            **uvicorn_options(settings.trusted_proxies),
        )
        return
    serve_one(
        "the authorization server",
        settings.host,
        settings.port,
        lambda: create_app(settings),
        log_level=log_level,
        **uvicorn_options(settings.trusted_proxies),
    )


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :func:`serve_together`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_together(listeners: list[Listener], *, trusted_proxies: Sequence[str]) -> None:
    """Serve several apps in one process until SIGINT/SIGTERM; if one stops, all stop.
    ``trusted_proxies`` as in :func:`uvicorn_options`."""
    servers = [
        _QuietServer(
            uvicorn.Config(
                item.app,
                host=item.host,
                port=item.port,
                log_level="info",
                **uvicorn_options(trusted_proxies),
            )
        )
        for item in listeners
    ]

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    sockets = bind_listeners([(item.name, item.host, item.port) for item in listeners])
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    tasks = [
        asyncio.create_task(server.serve(sockets=[sock]))
        for server, sock in zip(servers, sockets, strict=True)
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()
    finally:
        for sock in sockets:
            sock.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


__all__ = [
    "SHUTDOWN_GRACE",
    "Listener",
    "PortUnavailable",
    "bind_listener",
    "bind_listeners",
    "proxy_options",
    "run_server",
    "serve_one",
    "serve_together",
    "uvicorn_options",
    "worker_app",
]
