"""Which apps each command serves: the authorization server (in worker processes too), the
registry joined to it on the issuer's origin (:func:`create_combined_app`), and the listeners of
``bastion registry serve`` and ``bastion quickstart``. The apps are imported when a command
needs them, so that ``bastion serve`` does not load the registry or the gateway."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.asgi_wrappers import Terminal
from bastion.clock import Clock, system_clock
from bastion.config import Settings, settings_from_environment
from bastion.ops.health import Probes, Readiness
from bastion.resource.revocation import RevocationList
from bastion.serve.listeners import Listener
from bastion.serve.supervision import end_with_supervisor


def server_app(settings: Settings) -> Starlette:
    """What ``bastion serve`` serves: the authorization server, with the registry joined to it
    (:func:`create_combined_app`) when the registry is on and its URL is on the issuer's origin.
    A registry on an origin of its own runs with ``bastion registry serve``."""
    from bastion.authserver.app import create_app

    if settings.registry.enabled and shares_issuer_origin(settings):
        return create_combined_app(settings)
    return create_app(settings)


def worker_app() -> Starlette:
    """Factory for worker processes (``--workers N``): settings come from the environment;
    :func:`server_app` of them. The worker ends with its supervisor
    (:func:`~bastion.serve.supervision.end_with_supervisor`)."""
    end_with_supervisor()
    return server_app(settings_from_environment())


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
    settings: Settings,
    *,
    revocations: RevocationList | None = None,
    clock: Clock = system_clock,
    **registry_options: Any,
) -> Starlette:
    """The authorization server and the registry in one app (the registry URL on the issuer's
    origin, e.g. the default ``<issuer>/registry``), with one revocation list (``revocations``,
    default a new one) that the authorization server keeps current and the registry checks;
    ``registry_options`` go to :func:`~bastion.registry.app.create_registry_app`; ``clock``
    (Unix seconds) is the authorization server's. Its ``/readyz`` runs the checks of both."""
    from bastion.authserver.app import create_app
    from bastion.registry.app import create_registry_app, registry_paths

    revocations = revocations if revocations is not None else RevocationList()
    auth = create_app(settings, clock=clock, revocations=revocations)
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

    readiness = Readiness(parts=[auth.state.readiness, registry.state.readiness])
    issuer_path = urlsplit(settings.issuer).path
    app = Starlette(
        middleware=[
            Middleware(Probes, readiness=readiness, prefixes=[issuer_path] if issuer_path else []),
            Middleware(Terminal, handler=dispatch),
        ],
        lifespan=lifespan,
    )
    app.state.readiness = readiness
    return app


def shares_issuer_origin(settings: Settings) -> bool:
    """Whether the registry URL is on the issuer's origin (then the AS's listener serves it)."""
    from bastion.registry.app import registry_paths

    resource, _, _ = registry_paths(settings)
    a, b = urlsplit(resource), urlsplit(settings.issuer)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc.lower())


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


def quickstart_listeners(settings: Settings) -> list[Listener]:
    """The apps ``bastion quickstart`` runs, at :func:`bastion.quickstart.addresses`."""
    from bastion.authserver.app import create_app, secret_for
    from bastion.demo.server import demo_app
    from bastion.gateway.app import create_gateway_app
    from bastion.quickstart import addresses, demo_port

    # The gateway derives its session key from the data directory's secret.key: make it now,
    # not when the authorization server starts.
    secret_for(settings)
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


__all__ = [
    "create_combined_app",
    "quickstart_listeners",
    "registry_listeners",
    "server_app",
    "shares_issuer_origin",
    "worker_app",
]
