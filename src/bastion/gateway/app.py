"""The gateway app: every configured upstream behind its own resource-server middleware.

For each upstream (``[[gateway.upstreams]]``) the stack is::

    AuditMiddleware                  a record per request (per message of a batch), refusals too
      ResourceServerMiddleware       RFC 9728 metadata, 401/403/400, Origin (R01-R07, R11)
        HttpProxy | StdioBridge      the upstream, never given the client's token (R05)

An upstream with ``auth = "oauth"`` gets each person's own upstream token instead
(:mod:`bastion.gateway.upstream_oauth`): the gateway then opens bastion's database (where the
authorization server's connect pages store the connections) and the secret key's cipher. One
with ``auth = "exchange"`` gets a token bastion's authorization server issued for the upstream
itself in exchange for the caller's (RFC 8693, :mod:`bastion.gateway.upstream_exchange`).

DPoP-bound tokens (RFC 9449 §7) are accepted with their proof at every upstream (``require_dpop``
refuses Bearer tokens at one); the ``jti`` of accepted proofs are kept in bastion's database when
the gateway has it (following revocations there, or with an ``auth = "oauth"`` upstream), so that
every gateway replica refuses a proof another has seen, else in this process only. Proofs are
checked against ``gateway.public_url`` + the request's path, never the Host header; nonces
(``[gateway.dpop] nonce``, or an upstream's ``dpop_nonce``) are derived from the session key,
the same on every replica. Neither the client's ``Authorization`` nor its ``DPoP`` header goes
upstream.

routed at the upstream's path (and below) and at the path-inserted well-known URL of its resource
(``/.well-known/oauth-protected-resource/<path>``, RFC 9728 §3.1). Tokens are JWTs of bastion's
AS (``settings.issuer``), checked against its JWKS, with the upstream's resource URI as the
audience (RFC 8707, R04). Anything else is 404.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx
from starlette.types import ASGIApp

from bastion.authserver.secret_key import cipher_for
from bastion.config import Settings, UpstreamSettings
from bastion.gateway.audit import AuditLog, AuditMiddleware
from bastion.gateway.http_proxy import HttpProxy
from bastion.gateway.replicas import replica_id, session_key
from bastion.gateway.routing import GatewayApp, Routes
from bastion.gateway.stdio_bridge import StdioBridge
from bastion.gateway.upstream_exchange import UpstreamExchange
from bastion.gateway.upstream_http import UpstreamPool
from bastion.gateway.upstream_oauth import UpstreamOAuth
from bastion.gateway.upstream_reach import upstreams_check
from bastion.logs import get_logger
from bastion.oauth.protected_resource import metadata_url
from bastion.oauth.replay import MemoryReplayGuard, ReplayGuard
from bastion.ops.health import Probes, Readiness, database_check, flag_check, keys_check
from bastion.ops.http_metrics import HttpMetrics
from bastion.ops.request_id import RequestIdMiddleware
from bastion.ops.start_up import freeze_start_up
from bastion.resource import JwtVerifier, ResourceServerMiddleware
from bastion.resource.dpop import ResourceDPoP, derived_nonces
from bastion.resource.revocation import RevocationList
from bastion.resource.revocation_feed import RevocationFeed
from bastion.store.database import Database
from bastion.store.replays import DatabaseReplayGuard
from bastion.store.revocation_feed import DatabaseRevocationFeed, revocation_feed
from bastion.vault.tokens import VaultTokens

log = get_logger(__name__)


def _resource(upstream: UpstreamSettings) -> str:
    if upstream.resource is None:  # Settings fills it in; a hand-built model may not have
        raise ValueError(f"upstream {upstream.name!r} has no resource URI")
    return upstream.resource


def create_gateway_app(
    settings: Settings,
    *,
    http: httpx.AsyncClient | None = None,
    revocations: RevocationList | None = None,
) -> GatewayApp:
    """The gateway for ``settings.gateway``; ``http`` (default: one made here and closed on
    shutdown) fetches the JWKS. Every upstream refuses revoked tokens: those of ``revocations``
    when given (a list an authorization server in the same process keeps current), else of a
    list the gateway follows itself (:func:`~bastion.store.revocation_feed.revocation_feed`).

    Upstream requests go through a :class:`~bastion.gateway.upstream_http.UpstreamPool` made
    here. ``/readyz`` (``app.state.readiness``) checks that the AS's JWKS has been fetched and,
    with a feed of its own, that revocations are followed (and the database answers, for the
    database feed); whether upstreams are reachable is reported but decides nothing
    (:func:`~bastion.gateway.upstream_reach.upstreams_check` says why)."""
    readiness = Readiness()
    gateway = settings.gateway
    client = http or httpx.AsyncClient(
        timeout=httpx.Timeout(10.0), follow_redirects=False, trust_env=False
    )
    upstream_client = UpstreamPool()
    audit = AuditLog(gateway.audit_log)
    secret = (
        gateway.identity_secret.get_secret_value().encode() if gateway.identity_secret else None
    )
    jwks_uri = gateway.jwks_uri or f"{settings.issuer}/jwks"
    revoked = revocations if revocations is not None else RevocationList()
    vault = _vault(settings)
    vault_db = vault.db if vault is not None else None
    feed = (
        revocation_feed(settings, revoked, http=client, db=vault_db)
        if revocations is None
        else None
    )
    sealing = session_key(settings) if any(u.url for u in gateway.upstreams) else None
    replica = replica_id(settings)
    dpop_db = feed.db if isinstance(feed, DatabaseRevocationFeed) else vault_db
    replay: ReplayGuard = (
        DatabaseReplayGuard(dpop_db, "dpop-resource") if dpop_db else MemoryReplayGuard()
    )
    bridges: list[StdioBridge] = []
    verifiers: list[JwtVerifier] = []
    routes = Routes(lambda app: Probes(app, readiness=readiness))
    for upstream in gateway.upstreams:
        resource = _resource(upstream)
        inner: ASGIApp
        if upstream.url is not None:
            inner = HttpProxy(
                upstream,
                http=upstream_client,
                identity_secret=secret,
                session_key=sealing,
                max_body_bytes=gateway.max_body_bytes,
                oauth=UpstreamOAuth(upstream, vault)
                if vault and upstream.auth == "oauth"
                else None,
                exchange=UpstreamExchange(
                    upstream, token_endpoint=f"{settings.issuer}/token", http=client
                )
                if upstream.auth == "exchange"
                else None,
            )
        else:
            bridge = StdioBridge(
                upstream, max_body_bytes=gateway.max_body_bytes, replica_id=replica
            )
            bridges.append(bridge)
            inner = bridge
        verifier = JwtVerifier(
            issuer=settings.issuer,
            audience=resource,
            jwks_uri=jwks_uri,
            http=client,
            revocations=revoked,
        )
        verifiers.append(verifier)
        protected = ResourceServerMiddleware(
            inner,
            resource=resource,
            verifier=verifier,
            authorization_servers=[settings.issuer],
            scopes_supported=upstream.scopes,
            resource_name=upstream.name,
            policy=upstream.policy.to_policy(),
            allowed_origins=gateway.allowed_origins or None,
            max_body_bytes=gateway.max_body_bytes,
            protect_paths=[upstream.path],
            dpop=_dpop(settings, upstream, replay),
            public_url=gateway.public_url,
        )
        stack = AuditMiddleware(protected, upstream=upstream.name, log=audit)
        routes.add(upstream.path, stack, metadata_path=urlsplit(metadata_url(resource)).path)

    @asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        if vault is not None:
            try:
                await vault.check_secret()
            except BaseException:
                await vault.aclose()
                await vault.db.dispose()
                raise
        if feed is not None:
            await feed.start()
        for bridge in bridges:
            await bridge.start()
        for upstream in gateway.upstreams:
            where = upstream.url or " ".join(upstream.command or [])
            log.info("gateway: %s -> %s (resource %s)", upstream.path, where, upstream.resource)
        _add_checks(readiness, feed, verifiers, gateway.upstreams, vault_db)
        readiness.started()
        freeze_start_up()
        try:
            yield
        finally:
            readiness.stopping()
            if feed is not None:
                await feed.aclose()
            await asyncio.gather(*(bridge.aclose() for bridge in bridges))
            for verifier in verifiers:
                await verifier.aclose()
            if http is None:
                await client.aclose()
            await upstream_client.aclose()
            if vault is not None:
                await vault.aclose()
                await vault.db.dispose()
            audit.close()

    served: ASGIApp = routes
    if settings.metrics.listen is not None:
        served = HttpMetrics(served, name="gateway")
    app = GatewayApp(RequestIdMiddleware(served), lifespan=lifespan)
    app.state.readiness = readiness
    app.state.vault = vault
    return app


def _dpop(settings: Settings, upstream: UpstreamSettings, replay: ReplayGuard) -> ResourceDPoP:
    """How ``upstream`` checks DPoP (RFC 9449 §7): the gateway's ``[gateway.dpop]`` settings,
    the upstream's ``require_dpop`` and ``dpop_nonce``, proofs remembered in ``replay``."""
    config = settings.gateway.dpop
    wants_nonce = config.nonce if upstream.dpop_nonce is None else upstream.dpop_nonce
    nonces = (
        derived_nonces(session_key(settings), context="gateway", lifetime=config.nonce_lifetime)
        if wants_nonce
        else None
    )
    return ResourceDPoP(
        algorithms=config.algorithms,
        required=upstream.require_dpop,
        replay=replay,
        nonces=nonces,
        max_age=config.max_age,
    )


def _vault(settings: Settings) -> VaultTokens | None:
    """The people's upstream tokens, when an upstream has ``auth = "oauth"``: on bastion's
    database (never migrated here, as for the revocation feed) and under its secret key."""
    upstreams = settings.gateway.upstreams
    if not any(u.auth == "oauth" for u in upstreams):
        return None
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    return VaultTokens(upstreams, issuer=settings.issuer, db=db, cipher=cipher_for(settings))


def _add_checks(
    readiness: Readiness,
    feed: RevocationFeed | None,
    verifiers: list[JwtVerifier],
    upstreams: list[UpstreamSettings],
    vault_db: Database | None,
) -> None:
    if verifiers:
        readiness.require("signing_keys", keys_check(verifiers), failure="not fetched")
    if feed is not None:
        readiness.require("revocations", flag_check(feed.ready.is_set, "not followed"))
    db = feed.db if isinstance(feed, DatabaseRevocationFeed) else vault_db
    if db is not None:
        readiness.require("database", database_check(db), failure="unreachable")
    if upstreams:
        readiness.inform("upstreams", upstreams_check(upstreams), failure="check failed")


__all__ = ["create_gateway_app"]
