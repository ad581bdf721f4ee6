"""The registry as an ASGI application (:mod:`bastion.serve` puts it on its own listener or
beside the authorization server on the issuer's).

The stack of the API paths (``<prefix>/v0.1/…`` and ``<prefix>/v0/…``, where ``<prefix>`` is the
path of ``registry.public_url``)::

    RegistryCors                   preflights answered without a token (Copilot's headers)
      AuditMiddleware              one database record per request, refusals included
        anonymous GET?  ──────────────────────────────┐  (registry.anonymous_read only)
        ResourceServerMiddleware   401/403 with realm="mcp-registry", scope="mcp-registry:read",
                                   resource_metadata (G01); tokens: RFC 9068 JWTs of the AS
                                   whose audience is the registry URL (G02)
          RegistryApi  ◄──────────────────────────────┘

DPoP-bound tokens (RFC 9449 §7) are accepted with their proof, whose ``jti`` is kept in the
registry's database (every replica refuses a proof another has seen); ``registry.require_dpop``
refuses Bearer tokens, and ``[registry.dpop]`` sets algorithms, proof age and nonces (derived
from bastion's secret key).

plus the Protected Resource Metadata at the path-inserted well-known URL of the registry URL
(its ``resource`` is the registry URL; RFC 9728 §3) and bastion's OpenAPI document at
``<prefix>/openapi.json``; with ``[[registry.mirrors]]``, the lifespan also runs the mirrors
(:mod:`bastion.registry.mirror_schedule`).

In front of it all, :class:`~bastion.registry.front.RegistryFront` answers the GETs that the
token check lets through unchanged (one Bearer token with the read scope, no Origin, no DPoP)
in one call to the API, with what the layers above would add; every other request, a refused
one included, goes through the stack above.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.asgi_wrappers import CatchAll, Terminal
from bastion.authserver.secret_key import secret_for
from bastion.config import Settings
from bastion.logs import get_logger
from bastion.oauth.protected_resource import check_resource, metadata_url
from bastion.oauth.www_authenticate import build_bearer_challenge, build_dpop_challenge
from bastion.ops.health import (
    Probes,
    Readiness,
    database_check,
    flag_check,
    keys_check,
    migrations_check,
)
from bastion.ops.http_metrics import HttpMetrics, http_metrics
from bastion.ops.request_id import RequestIdMiddleware
from bastion.ops.start_up import freeze_start_up
from bastion.private_files import private_dir
from bastion.registry.access import scope_policy
from bastion.registry.api import RegistryApi
from bastion.registry.audit import AuditMiddleware, note_of
from bastion.registry.cors import RegistryCors
from bastion.registry.front import RegistryFront
from bastion.registry.gateway_listing import sync_gateway
from bastion.registry.mirror_schedule import MirrorScheduler
from bastion.registry.old_scopes import old_scope_note
from bastion.registry.problems import Problem, not_found
from bastion.registry.read_cache import ReadCache
from bastion.registry.service import Registry
from bastion.registry.times import MillisClock, system_millis
from bastion.resource import JwtVerifier, ResourceServerMiddleware, TokenVerifier
from bastion.resource.dpop import ResourceDPoP, derived_nonces
from bastion.resource.revocation import RevocationList
from bastion.resource.revocation_feed import RevocationFeed
from bastion.store.database import Database
from bastion.store.replays import DatabaseReplayGuard
from bastion.store.revocation_feed import revocation_feed

log = get_logger("bastion.registry")


@cache
def _openapi_template() -> dict[str, Any]:
    text = resources.files("bastion.registry").joinpath("openapi.json").read_text()
    document: dict[str, Any] = json.loads(text)
    return document


def openapi_document(registry_url: str) -> dict[str, Any]:
    """bastion's OpenAPI document of the registry API, its server URL set to ``registry_url``."""
    document = dict(_openapi_template())
    document["servers"] = [{"url": registry_url, "description": "this registry"}]
    return document


class _Anonymous:
    """Send GET requests without an Authorization header straight to the API (anonymous read,
    ``registry.anonymous_read``); everything else through the token check."""

    def __init__(self, api: ASGIApp, protected: ASGIApp) -> None:
        self.api = api
        self.protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and "authorization" not in Headers(scope=scope)
        ):
            await self.api(scope, receive, send)
            return
        await self.protected(scope, receive, send)


def _failsafe(app: ASGIApp) -> CatchAll:
    """An unexpected error becomes a 500 problem without a traceback (logged for the operator)."""
    return CatchAll(
        app,
        respond=lambda: Problem(500, "internal error; see the server log").response(),
        log=log,
    )


class _RegistryRoutes:
    """The registry's paths: metadata, OpenAPI document, API (audited); 404 problems else."""

    def __init__(
        self,
        *,
        protected: ASGIApp,
        audited: ASGIApp,
        openapi: bytes,
        prefix: str,
        metadata_path: str,
    ) -> None:
        self.protected = protected
        self.audited = audited
        self.openapi = openapi
        self.metadata_path = metadata_path
        self.openapi_path = f"{prefix}/openapi.json"
        self.api = (f"{prefix}/v0.1/", f"{prefix}/v0/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1000})
            return
        path: str = scope["path"]
        response: Response
        if path == self.metadata_path:
            await self.protected(scope, receive, send)
            return
        if path.startswith(self.api):
            await self.audited(scope, receive, send)
            return
        if path == self.openapi_path and scope["method"] in ("GET", "HEAD"):
            response = Response(self.openapi, media_type="application/json")
        elif path == self.openapi_path:
            response = Problem(405, "use GET", headers={"Allow": "GET, HEAD"}).response()
        else:
            response = not_found("no such registry endpoint; see the OpenAPI document").response()
        await response(scope, receive, send)

    def route_of(self, scope: Scope) -> str | None:
        """The metrics' route of an answered request: the audit action of an API request
        (``list``, ``get``, ``publish`` ...), ``metadata`` or ``openapi``; None otherwise."""
        note = note_of(scope)
        if note is not None:
            return note.action
        path = scope.get("path")
        return {self.metadata_path: "metadata", self.openapi_path: "openapi"}.get(path or "")


def registry_paths(settings: Settings) -> tuple[str, str, str]:
    """The registry URL (its resource identifier), its path prefix, and its metadata path."""
    public_url = settings.registry.public_url or f"{settings.issuer}/registry"
    resource = check_resource(public_url)
    return resource, urlsplit(resource).path, urlsplit(metadata_url(resource)).path


def create_registry_app(
    settings: Settings,
    *,
    http: httpx.AsyncClient | None = None,
    verifier: TokenVerifier | None = None,
    clock: MillisClock = system_millis,
    revocations: RevocationList | None = None,
) -> RegistryFront:
    """The registry for ``settings.registry``. ``http`` (default: one made here and closed on
    shutdown) fetches the AS's JWKS; ``verifier`` replaces the default JWT verifier (e.g. an
    IntrospectionVerifier for another AS); ``clock`` gives Unix milliseconds. The default
    verifier refuses revoked tokens: those of ``revocations`` when given (a list the
    authorization server of the same app keeps current), else of a list the registry follows
    itself (:func:`~bastion.store.revocation_feed.revocation_feed`).

    ``/readyz`` (``app.state.readiness``) checks the database and its migrations; on its own
    (no ``revocations`` given) also that the AS's JWKS has been fetched and the revocation list
    is followed. Beside the authorization server it leaves the keys to the AS's check: fetching
    the JWKS through a load balancer that sends nothing to a replica until it is ready would
    keep every replica not ready."""
    config = settings.registry
    readiness = Readiness()
    resource, prefix, metadata_path = registry_paths(settings)
    prm_url = metadata_url(resource)
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    client = http or httpx.AsyncClient(
        timeout=httpx.Timeout(10.0), follow_redirects=False, trust_env=False
    )
    own_verifier = verifier is None
    revoked = revocations if revocations is not None else RevocationList()
    feed = None
    if revocations is None and own_verifier:
        feed = revocation_feed(settings, revoked, db=db, http=client)
    token_verifier: TokenVerifier = verifier or JwtVerifier(
        issuer=settings.issuer,
        audience=resource,
        jwks_uri=config.jwks_uri or f"{settings.issuer}/jwks",
        http=client,
        revocations=revoked,
    )

    def challenge(scope: str, dpop: bool) -> str:
        params = {
            "realm": config.realm,
            "resource_metadata": prm_url,
            "scope": scope,
            "error": "insufficient_scope",
            "error_description": f"this operation needs scope {scope}",
        }
        if dpop:
            return build_dpop_challenge(algs=config.dpop.algorithms, **params)
        return build_bearer_challenge(**params)

    cache = ReadCache(db)
    registry = Registry(db, config, clock=clock, challenge=challenge)
    api = RegistryApi(registry, config, prefix=prefix, max_body=config.max_body_bytes, cache=cache)
    protected = ResourceServerMiddleware(
        api,
        resource=resource,
        verifier=token_verifier,
        authorization_servers=[settings.issuer],
        scopes_supported=config.all_scope_names,
        resource_name="MCP Registry",
        policy=scope_policy(config.scope_names),
        allowed_origins=config.allowed_origins,
        max_body_bytes=config.max_body_bytes,
        protect_paths=[f"{prefix}/v0.1", f"{prefix}/v0"],
        realm=config.realm,
        dpop=ResourceDPoP(
            algorithms=config.dpop.algorithms,
            required=config.require_dpop,
            replay=DatabaseReplayGuard(db, "dpop-resource"),
            nonces=derived_nonces(
                secret_for(settings).encode(),
                context="registry",
                lifetime=config.dpop.nonce_lifetime,
            )
            if config.dpop.nonce
            else None,
            max_age=config.dpop.max_age,
        ),
    )
    gate: ASGIApp = _Anonymous(api, protected) if config.anonymous_read else protected
    audited = AuditMiddleware(gate, db=db, prefix=prefix, clock=clock)
    mirrors = MirrorScheduler(settings, db, clock=clock) if config.mirrors else None
    routes = _RegistryRoutes(
        protected=protected,
        audited=audited,
        openapi=json.dumps(openapi_document(resource)).encode("utf-8"),
        prefix=prefix,
        metadata_path=metadata_path,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.database_url is None:
            private_dir(settings.data_dir)
        await db.upgrade()
        # The entries of gateway upstreams with publish = true follow the configuration.
        await sync_gateway(settings, db, clock=clock)
        app.state.registry = registry
        log.info("registry %s (metadata %s)", resource, prm_url)
        async with db.connect() as conn:
            note = await old_scope_note(settings, conn)
        if note is not None:
            log.warning(note)
        if feed is not None:
            await feed.start()
        if mirrors is not None:
            await mirrors.start()
        _add_checks(readiness, db, feed, token_verifier if revocations is None else None)
        readiness.started()
        freeze_start_up()
        try:
            yield
        finally:
            readiness.stopping()
            if mirrors is not None:
                await mirrors.aclose()
            if feed is not None:
                await feed.aclose()
            if own_verifier and isinstance(token_verifier, JwtVerifier):
                await token_verifier.aclose()
            if http is None:
                await client.aclose()
            await audited.writer.aclose()
            await db.dispose()

    metrics_on = settings.metrics.listen is not None
    app = Starlette(
        middleware=[
            Middleware(RequestIdMiddleware),
            *http_metrics("registry", enabled=metrics_on, route_of=routes.route_of),
            Middleware(_failsafe),
            Middleware(Probes, readiness=readiness),
            Middleware(RegistryCors, allowed_origins=config.allowed_origins, skip=[metadata_path]),
            Middleware(Terminal, handler=routes),
        ],
        lifespan=lifespan,
    )
    app.state.readiness = readiness
    return RegistryFront(
        app,
        api=api,
        protected=protected,
        audit=audited,
        prefixes=routes.api,
        # Requests of the front and of the full stack count in the same series.
        metrics=HttpMetrics(api, name="registry", route_of=routes.route_of) if metrics_on else None,
    )


def _add_checks(
    readiness: Readiness,
    db: Database,
    feed: RevocationFeed | None,
    verifier: TokenVerifier | None,
) -> None:
    readiness.require("database", database_check(db), failure="unreachable")
    readiness.require("migrations", migrations_check(db), failure="cannot be read")
    if isinstance(verifier, JwtVerifier):
        readiness.require("signing_keys", keys_check([verifier]), failure="not fetched")
    if feed is not None:
        readiness.require("revocations", flag_check(feed.ready.is_set, "not followed"))


__all__ = [
    "create_registry_app",
    "openapi_document",
    "registry_paths",
]
