"""The composition root: settings → listeners → uvicorn, for every command that serves.

Which apps run on which listener is decided here and nowhere else: the authorization server
(``bastion serve``, in one process or several), the gateway (``bastion gateway``), the registry
(``bastion registry serve``: on the issuer's listener, combined with the authorization server,
when its URL is on the issuer's origin) and all of them with the demo server (``bastion
quickstart``). The packages build ASGI apps only; logging is set up here, once per command
(:func:`_start`). The apps are imported when a command needs them, so that ``bastion serve``
does not load the registry or the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import errno
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.asgi_wrappers import Terminal
from bastion.config import Settings, export_config_file, settings_from_environment
from bastion.logs import UVICORN_LOGGING, configure_logging
from bastion.private_files import warn_loose_modes
from bastion.resource.revocation import RevocationList


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


def _start(settings: Settings, config_file: Path | None, log_level: str) -> None:
    """What every command that serves does first: bastion's one logging set-up, then a warning
    about private files other users can read (``config_file`` among them)."""
    configure_logging(log_level)
    warn_loose_modes(settings, config_file)


def run_server(
    settings: Settings, *, config_file: Path | None, workers: int = 1, log_level: str = "info"
) -> None:
    """Serve until interrupted. Several workers share the database; nothing else is shared.
    ``log_level`` (debug, info, warning, error) applies to bastion's and uvicorn's loggers;
    below info, uvicorn writes no access log."""
    from bastion.authserver.app import create_app

    _start(settings, config_file, log_level)
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


def run_gateway(
    settings: Settings, *, log_level: str = "info", config_file: Path | None = None
) -> None:
    """Serve the gateway with uvicorn on ``gateway.host``:``gateway.port`` until interrupted
    (``log_level`` as for :func:`run_server`; audit records log at info); warn first about
    private files other users can read (``config_file`` among them)."""
    from bastion.gateway.app import create_gateway_app

    _start(settings, config_file, log_level)
    serve_one(
        "the gateway",
        settings.gateway.host,
        settings.gateway.port,
        lambda: create_gateway_app(settings),
        log_level=log_level,
        **uvicorn_options(settings.trusted_proxies),
    )


class _ByPath:
    """Registry paths to the registry app, everything else to the authorization server."""

    def __init__(self, auth: ASGIApp, registry: ASGIApp, prefix: str, metadata_path: str) -> None:
        self.auth = auth
        self.registry = registry
        self.prefixes = (f"{prefix}/v0.1/", f"{prefix}/v0/")
        self.exact = {metadata_path, f"{prefix}/openapi.json"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if path in self.exact or path.startswith(self.prefixes):
            await self.registry(scope, receive, send)
        else:
            await self.auth(scope, receive, send)


def create_combined_app(
    settings: Settings, *, revocations: RevocationList | None = None, **registry_options: Any
) -> Starlette:
    """The authorization server and the registry in one app (the registry URL on the issuer's
    origin, e.g. the default ``<issuer>/registry``), with one revocation list (``revocations``,
    default a new one) that the authorization server keeps current and the registry checks;
    ``registry_options`` go to :func:`~bastion.registry.app.create_registry_app`."""
    from bastion.authserver.app import create_app
    from bastion.registry.app import create_registry_app, registry_paths

    revocations = revocations if revocations is not None else RevocationList()
    auth = create_app(settings, revocations=revocations)
    registry = create_registry_app(settings, revocations=revocations, **registry_options)
    _, prefix, metadata_path = registry_paths(settings)
    dispatch = _ByPath(auth, registry, prefix, metadata_path)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with (
            auth.router.lifespan_context(auth),
            registry.router.lifespan_context(registry),
        ):
            yield

    return Starlette(middleware=[Middleware(Terminal, handler=dispatch)], lifespan=lifespan)


def shares_issuer_origin(settings: Settings) -> bool:
    """Whether the registry URL is on the issuer's origin (then the AS's listener serves it)."""
    from bastion.registry.app import registry_paths

    resource, _, _ = registry_paths(settings)
    a, b = urlsplit(resource), urlsplit(settings.issuer)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc.lower())


def _run_together(
    settings: Settings, config_file: Path | None, listeners: Callable[[], list[Listener]]
) -> None:
    """:func:`_start` at info, then serve the apps of ``listeners()`` in this process."""
    _start(settings, config_file, "info")
    asyncio.run(serve_together(listeners(), trusted_proxies=settings.trusted_proxies))


def registry_listeners(settings: Settings, *, with_auth_server: bool = False) -> list[Listener]:
    """What ``bastion registry serve`` runs: the AS and the registry combined on the issuer's
    listener when the registry URL is on the issuer's origin, else the registry alone on
    registry.host:registry.port (and the AS beside it when ``with_auth_server``)."""
    from bastion.authserver.app import create_app
    from bastion.registry.app import create_registry_app

    if shares_issuer_origin(settings):
        return [
            Listener(
                "authorization server and registry",
                create_combined_app(settings),
                settings.host,
                settings.port,
            )
        ]
    listeners = [
        Listener(
            "registry",
            create_registry_app(settings),
            settings.registry.host,
            settings.registry.port,
        )
    ]
    if with_auth_server:
        listeners.append(
            Listener("authorization server", create_app(settings), settings.host, settings.port)
        )
    return listeners


def run_registry(
    settings: Settings, *, with_auth_server: bool = False, config_file: Path | None = None
) -> None:
    """Serve :func:`registry_listeners` until interrupted; warn first about private files
    other users can read (``config_file`` among them)."""
    _run_together(
        settings,
        config_file,
        lambda: registry_listeners(settings, with_auth_server=with_auth_server),
    )


def quickstart_listeners(settings: Settings) -> list[Listener]:
    """The apps ``bastion quickstart`` runs, at :func:`bastion.quickstart.addresses`."""
    from bastion.authserver.app import create_app
    from bastion.demo.server import demo_app
    from bastion.gateway.app import create_gateway_app
    from bastion.quickstart import addresses, demo_port

    # One revocation list, kept current by the authorization server, checked by the gateway.
    revocations = RevocationList()
    apps: list[ASGIApp] = []
    if settings.registry.enabled and shares_issuer_origin(settings):
        apps.append(create_combined_app(settings, revocations=revocations))
    else:
        apps.append(create_app(settings, revocations=revocations))
    if settings.gateway.enabled and settings.gateway.upstreams:
        apps.append(create_gateway_app(settings, revocations=revocations))
    if demo_port(settings) is not None:
        apps.append(demo_app())
    return [
        Listener(name, app, host, port)
        for (name, host, port), app in zip(addresses(settings), apps, strict=True)
    ]


def run_quickstart(settings: Settings, *, config_file: Path) -> None:
    """Serve :func:`quickstart_listeners` until interrupted; warn first about private files
    other users can read (``config_file`` among them)."""
    _run_together(settings, config_file, lambda: quickstart_listeners(settings))


__all__ = [
    "SHUTDOWN_GRACE",
    "Listener",
    "PortUnavailable",
    "bind_listener",
    "bind_listeners",
    "create_combined_app",
    "proxy_options",
    "quickstart_listeners",
    "registry_listeners",
    "run_gateway",
    "run_quickstart",
    "run_registry",
    "run_server",
    "serve_one",
    "serve_together",
    "shares_issuer_origin",
    "uvicorn_options",
    "worker_app",
]
