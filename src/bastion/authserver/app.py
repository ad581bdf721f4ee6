"""The authorization server as an ASGI application.

``create_app(settings)`` declares the routes; the lifespan opens the database, runs migrations,
loads the signing keys, starts following revocations and starts the housekeeping task. When the
issuer has a path (``https://example.com/auth``), every endpoint lives under it and the
well-known documents are served path-inserted at the root as RFC 8414 §3.1 requires.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bastion.access.policy import AccessPolicy
from bastion.access.rules import AccessRule
from bastion.asgi_wrappers import CatchAll
from bastion.authserver import audit, federation, interaction
from bastion.authserver.authorize import authorize
from bastion.authserver.cimd import MetadataDocumentResolver
from bastion.authserver.client_jwks import ClientJwks
from bastion.authserver.clients import ClientDirectory
from bastion.authserver.context import AuthServer, make_templates
from bastion.authserver.dpop import REPLAY_PURPOSE, TokenEndpointDPoP, nonce_secret
from bastion.authserver.errors import oauth_error_handler
from bastion.authserver.introspect import introspect
from bastion.authserver.metadata import jwks_endpoint, metadata_endpoint
from bastion.authserver.quotas import LONGEST_WINDOW, Quotas
from bastion.authserver.registration import manage, register
from bastion.authserver.revocations import revocation_list
from bastion.authserver.revoke import revoke
from bastion.authserver.secret_key import cipher_for, secret_for
from bastion.authserver.token import TokenEndpoint, token
from bastion.authserver.workload_keys import WorkloadKeys
from bastion.clock import Clock, system_clock
from bastion.config import Settings
from bastion.console.routes import routes as console_routes
from bastion.identity.federation import Federation
from bastion.identity.local import LocalUsers
from bastion.logs import get_logger
from bastion.oauth.dpop_nonce import DPoPNonces
from bastion.oauth.errors import OAuthError
from bastion.oauth.well_known import metadata_paths
from bastion.ops.health import (
    Probes,
    Readiness,
    database_check,
    flag_check,
    migrations_check,
)
from bastion.ops.http_metrics import http_metrics
from bastion.ops.request_id import RequestIdMiddleware
from bastion.ops.start_up import freeze_start_up
from bastion.private_files import private_dir
from bastion.resource.revocation import RevocationList
from bastion.store import clients as client_rows
from bastion.store import federation as federation_rows
from bastion.store import grants
from bastion.store import quotas as quota_rows
from bastion.store import upstream_connections as upstream_rows
from bastion.store.database import Database
from bastion.store.replays import DatabaseReplayGuard
from bastion.store.revocation_feed import DatabaseRevocationFeed
from bastion.tokens.keys import KeyManager
from bastion.vault import connect
from bastion.vault.upstream_server import UpstreamServer, oauth_upstreams

log = get_logger("bastion.authserver")

HOUSEKEEPING_GRACE = 10.0
HOUSEKEEPING_INTERVAL = 600


async def open_server(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    cimd_transport: httpx.AsyncBaseTransport | None = None,
    revocations: RevocationList | None = None,
) -> AuthServer:
    """Open the database (migrated), the keys, the client directory, and the feed that keeps
    ``revocations`` (default: a list of its own) current from the database."""
    if settings.database_url is None:
        private_dir(settings.data_dir)
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    await db.upgrade()
    cipher = cipher_for(settings)
    keys = KeyManager(
        db,
        cipher,
        alg=settings.tokens.signing_alg,
        token_ttl=settings.tokens.access_token_ttl,
        prepublish=settings.tokens.key_prepublish,
        refresh=settings.tokens.key_refresh,
        clock=clock,
    )
    await keys.load()
    quotas = Quotas(db, settings.quotas, clock)
    resolver = MetadataDocumentResolver(
        db, settings.cimd, clock=clock, transport=cimd_transport, quotas=quotas
    )
    templates = make_templates()
    templates.globals["base"] = urlsplit(settings.issuer).path
    clients = ClientDirectory(db, settings, resolver, clock)
    access = AccessPolicy(db, cache_ttl=settings.client_cache_ttl, upgrade=settings.upgrade_scopes)
    clients.on_change.append(access.changed)
    await clients.start()
    revoked = revocations if revocations is not None else RevocationList(clock=clock)
    feed = DatabaseRevocationFeed(
        db, revoked, poll_interval=settings.revocations.poll_interval, clock=clock
    )
    await feed.start()
    _explain_policy(settings, await access.rules())
    return AuthServer(
        settings=settings,
        db=db,
        keys=keys,
        users=LocalUsers(db, clock),
        clients=clients,
        templates=templates,
        clock=clock,
        access=access,
        cipher=cipher,
        revocations=revoked,
        revocation_feed=feed,
        quotas=quotas,
        client_jwks=ClientJwks(
            allow_private=settings.cimd.allow_private_addresses,
            timeout=settings.cimd.timeout,
            clock=clock,
        ),
        dpop=TokenEndpointDPoP(
            settings.dpop,
            token_url=f"{settings.issuer}/token",
            nonces=DPoPNonces(
                nonce_secret(secret_for(settings)), lifetime=settings.dpop.nonce_lifetime
            ),
            replays=DatabaseReplayGuard(db, REPLAY_PURPOSE),
        ),
        federation=Federation(settings, cipher=cipher, clock=clock),
        workload_keys=WorkloadKeys(settings.workload_identities, clock=clock)
        if settings.workload_identities
        else None,
        upstreams={
            upstream.name: UpstreamServer(upstream, issuer=settings.issuer, db=db, cipher=cipher)
            for upstream in oauth_upstreams(settings)
        },
    )


def _explain_policy(settings: Settings, rules: list[AccessRule]) -> None:
    """Start-up notes on settings and rules that leave doors open."""
    registration = settings.registration
    if registration.enabled and registration.initial_access_token is None:
        log.warning(
            "dynamic client registration is open to anyone (registration.initial_access_token "
            "is not set): self-registered clients can ask people to sign in, never act alone"
        )
    about_people = {r.resource for r in rules if not r.is_machine}
    if "*" in about_people:
        return
    for resource in settings.resources:
        if resource.uri not in about_people:
            log.info(
                "%s has no access rule about people: every signed-in person may obtain tokens "
                "for it (restrict it with `bastion access allow %s group:NAME`)",
                resource.uri,
                resource.name or resource.uri,
            )


async def close_server(bastion: AuthServer) -> None:
    """Release what :func:`open_server` opened."""
    await bastion.revocation_feed.aclose()
    await bastion.clients.aclose()
    await bastion.clients.resolver.aclose()
    await bastion.client_jwks.aclose()
    if bastion.federation is not None:
        await bastion.federation.aclose()
    if bastion.workload_keys is not None:
        await bastion.workload_keys.aclose()
    for upstream in bastion.upstreams.values():
        await upstream.aclose()
    await bastion.db.dispose()


async def housekeeping(bastion: AuthServer) -> None:
    """Delete expired grants, sign-ins in progress and URL elicitations, unused dynamic
    registrations and audit records older than ``audit.retention_days``."""
    now = bastion.clock()
    removed = 0
    async with bastion.db.transaction() as conn:
        await grants.purge_expired(conn, now)
        await federation_rows.purge_expired_states(conn, now)
        await upstream_rows.purge_expired(conn, now)
        await quota_rows.purge(conn, now, LONGEST_WINDOW)
        ttl = bastion.settings.registration.unused_client_ttl
        if ttl:
            removed = await client_rows.delete_unused_dynamic(conn, now - ttl)
            if removed:
                log.info("deleted %d dynamically registered clients that were never used", removed)
    if removed:
        bastion.clients.invalidate()  # after the commit: a lookup meanwhile saw the old rows
    await audit.purge_old(bastion.db, bastion.settings, now)


async def _housekeeping_loop(bastion: AuthServer, stop: asyncio.Event) -> None:
    """Sweep at start, then every :data:`HOUSEKEEPING_INTERVAL` seconds until ``stop`` is set.

    Shutdown sets ``stop`` instead of cancelling the task: a sweep cancelled mid-statement leaves
    SQLite's driver thread finishing a query for an event loop that may be closed by then.
    """
    while True:
        try:
            await housekeeping(bastion)
        except Exception:  # a failed sweep must not stop the server; the next one retries
            log.exception("housekeeping failed; retrying in %s s", HOUSEKEEPING_INTERVAL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), HOUSEKEEPING_INTERVAL)
        if stop.is_set():
            return


def _server_error() -> Response:
    return JSONResponse(
        {"error": "server_error", "error_description": "internal error; see server log"},
        status_code=500,
        headers={"Cache-Control": "no-store"},
    )


def routes(settings: Settings) -> list[BaseRoute]:
    """The routes of the authorization server, under the issuer's path."""
    endpoints: list[BaseRoute] = [
        Route("/authorize", authorize, methods=["GET", "POST"]),
        Route("/token", token, methods=["POST"]),
        Route("/introspect", introspect, methods=["POST"]),
        Route("/revoke", revoke, methods=["POST"]),
        Route("/revocations", revocation_list, methods=["GET"]),
        Route("/jwks", jwks_endpoint, methods=["GET"]),
        Route("/interaction/{request_id}", interaction.show, methods=["GET"]),
        Route("/interaction/{request_id}/login", interaction.login, methods=["POST"]),
        Route("/interaction/{request_id}/consent", interaction.consent, methods=["POST"]),
        Route("/interaction/{request_id}/upstream/{name}", federation.start, methods=["POST"]),
        Route("/login/{name}/callback", federation.callback, methods=["GET"]),
        Route("/logout", interaction.logout, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static"),
    ]
    if settings.console.enabled:
        endpoints += console_routes()
    # The token vault's connect pages, when a gateway upstream has its own OAuth (the
    # authorization server reads the same [gateway] configuration as the gateway).
    endpoints += connect.routes(settings)
    if settings.registration.enabled:
        endpoints += [
            Route("/register", register, methods=["POST"]),
            Route("/register/{client_id}", manage, methods=["GET", "PUT", "DELETE"]),
        ]
    well_known: list[BaseRoute] = [
        Route(path, metadata_endpoint, methods=["GET"]) for path in metadata_paths(settings.issuer)
    ]
    prefix = urlsplit(settings.issuer).path
    if prefix:
        return [*well_known, Mount(prefix, routes=endpoints)]
    return [*well_known, *endpoints]


def create_app(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    cimd_transport: httpx.AsyncBaseTransport | None = None,
    revocations: RevocationList | None = None,
) -> Starlette:
    """The authorization server app for ``settings``; ``revocations`` is the list it keeps
    current (default: its own), for apps of the same process to share. ``/healthz`` and
    ``/readyz`` answer at the root and under the issuer's path (``app.state.readiness``)."""
    readiness = Readiness()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        bastion = await open_server(
            settings, clock=clock, cimd_transport=cimd_transport, revocations=revocations
        )
        app.state.bastion = bastion
        readiness.require("database", database_check(bastion.db), failure="unreachable")
        readiness.require("migrations", migrations_check(bastion.db), failure="cannot be read")
        readiness.require("signing_keys", flag_check(bastion.keys.can_sign, "none active"))
        readiness.started()
        freeze_start_up()
        stop = asyncio.Event()
        task = asyncio.create_task(_housekeeping_loop(bastion, stop))
        try:
            yield
        finally:
            readiness.stopping()
            stop.set()
            # A sweep under way may finish its transaction; one stuck on the database is
            # cancelled after a grace period rather than holding up the shutdown.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(task, HOUSEKEEPING_GRACE)
            await close_server(bastion)

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "not_found", "error_description": "no such endpoint"}, 404)

    async def wrong_method(request: Request, exc: Exception) -> Response:
        allowed = getattr(exc, "headers", None) or {}
        return JSONResponse(
            {"error": "invalid_request", "error_description": f"{request.method} is not allowed"},
            405,
            headers={**dict(allowed), "Cache-Control": "no-store"},
        )

    prefix = urlsplit(settings.issuer).path
    app = Starlette(
        routes=routes(settings),
        middleware=[
            Middleware(RequestIdMiddleware),
            *http_metrics("authserver", enabled=settings.metrics.listen is not None),
            Middleware(CatchAll, respond=_server_error, log=log),
            Middleware(Probes, readiness=readiness, prefixes=[prefix] if prefix else []),
            Middleware(TokenEndpoint, prefix=prefix),
        ],
        lifespan=lifespan,
        exception_handlers={
            404: not_found,
            405: wrong_method,
            OAuthError: oauth_error_handler,
        },
    )
    app.state.readiness = readiness
    return app


__all__ = ["close_server", "create_app", "housekeeping", "open_server", "routes", "secret_for"]
