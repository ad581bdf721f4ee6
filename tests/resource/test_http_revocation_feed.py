"""A resource server that cannot reach bastion's database (a third party's app using
``bastion.resource``) learns of revocations from the authorization server's
``<issuer>/revocations`` through :class:`HttpRevocationFeed` (long polls): a Starlette app behind
ResourceServerMiddleware and a JwtVerifier refuses a revoked token within a second, on SQLite and
PostgreSQL; the feed starts before the authorization server and catches up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp

from bastion.authserver import admin
from bastion.authserver.app import create_app
from bastion.config import ResourceSettings, Settings
from bastion.oauth.errors import InvalidToken
from bastion.resource import (
    HttpRevocationFeed,
    IntrospectionVerifier,
    JwtVerifier,
    ResourceServerMiddleware,
    RevocationList,
)
from bastion.resource.verifier import REVOKED
from bastion.store import revocations
from bastion.store.database import Database
from tests.resource.apps import echo_app
from tests.resource.conftest import SCOPES, basic, get_token, service_client
from tests.support.live import free_port, serve

BOUND = 1.0
LIMIT = 5.0


def protected(issuer: str, resource: str, feed: HttpRevocationFeed) -> ASGIApp:
    """The echo app behind the middleware, its verifier checking the feed's list; the feed
    runs in the app's lifespan (which the middleware passes through)."""

    verifier = JwtVerifier(
        issuer=issuer, audience=resource, jwks_uri=f"{issuer}/jwks", revocations=feed.revocations
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await feed.start()
        try:
            yield
        finally:
            await feed.aclose()
            await verifier.aclose()

    inner = echo_app()
    inner.router.lifespan_context = lifespan
    return ResourceServerMiddleware(
        inner,
        resource=resource,
        verifier=verifier,
        authorization_servers=[issuer],
        scopes_supported=["mcp:tools"],
    )


async def refused_within(url: str, token: str) -> float:
    """Poll every 20 ms (at most 5 s) until ``url`` refuses ``token`` as revoked; how long."""
    started = time.monotonic()
    async with httpx.AsyncClient(trust_env=False) as http:
        while True:
            response = await http.get(url, headers={"Authorization": f"Bearer {token}"})
            if response.status_code != 200:
                break
            assert time.monotonic() - started < LIMIT, "the revoked token is still accepted"
            await asyncio.sleep(0.02)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_token", "error_description": REVOKED}
    return time.monotonic() - started


@pytest.fixture
async def stack(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[tuple[Settings, str, HttpRevocationFeed]]:
    """A live AS and a protected app on its own port following ``<issuer>/revocations``."""
    as_port, app_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{as_port}"
    resource = f"http://127.0.0.1:{app_port}/mcp"
    settings = make_settings(
        issuer=issuer, resources=[ResourceSettings(uri=resource, name="app", scopes=SCOPES)]
    )
    feed = HttpRevocationFeed(f"{issuer}/revocations", RevocationList())
    async with (
        serve(create_app(settings), port=as_port),
        serve(protected(issuer, resource, feed), port=app_port),
    ):
        assert feed.ready.is_set()
        yield settings, resource, feed


async def test_a_revoked_access_token_is_refused_within_a_second(
    stack: tuple[Settings, str, HttpRevocationFeed],
) -> None:
    """RFC 7009 §2.1 revocation of the access token at the AS."""
    settings, resource, _ = stack
    client = await service_client(settings)
    token = (await get_token(settings.issuer, client, resource=resource))["access_token"]
    async with httpx.AsyncClient(trust_env=False) as http:
        assert (
            await http.get(resource, headers={"Authorization": f"Bearer {token}"})
        ).status_code == 200
        response = await http.post(
            f"{settings.issuer}/revoke",
            data={"token": token},
            headers={"Authorization": basic(client.client_id, client.secret)},
        )
    assert response.status_code == 200
    assert await refused_within(resource, token) < BOUND


async def test_a_withdrawn_machine_grant_is_refused_within_a_second(
    stack: tuple[Settings, str, HttpRevocationFeed],
) -> None:
    """``bastion clients rotate-secret`` from another process (here: the test's own database
    connection): the client's grant is revoked, and with it every token it holds."""
    settings, resource, feed = stack
    client = await service_client(settings)
    tokens = [
        (await get_token(settings.issuer, client, resource=resource))["access_token"]
        for _ in range(2)
    ]
    async with httpx.AsyncClient(trust_env=False) as http:
        for token in tokens:
            headers = {"Authorization": f"Bearer {token}"}
            assert (await http.get(resource, headers=headers)).status_code == 200
    await admin.rotate_client_secret(settings, client.client_id)
    assert await refused_within(resource, tokens[0]) < BOUND
    await refused_within(resource, tokens[1])
    assert feed.failures == 0


async def test_an_introspection_verifier_refuses_its_cached_answer_once_the_grant_is_revoked(
    stack: tuple[Settings, str, HttpRevocationFeed],
) -> None:
    """RFC 7662 answers are cached up to cache_ttl (60 s); bastion's answer names the grant_id,
    so the list refuses the cached answer as soon as the grant is withdrawn."""
    settings, resource, feed = stack
    caller = await service_client(settings)
    introspector = await service_client(settings, scope="mcp:tools", introspects=["*"])
    token = (await get_token(settings.issuer, caller, resource=resource))["access_token"]
    async with IntrospectionVerifier(
        introspection_endpoint=f"{settings.issuer}/introspect",
        client_id=introspector.client_id,
        client_secret=introspector.secret,
        audience=resource,
        issuer=settings.issuer,
        revocations=feed.revocations,
    ) as verifier:
        principal = await verifier.verify(token)
        assert principal.grant_id is not None
        await admin.rotate_client_secret(settings, caller.client_id)
        started = time.monotonic()
        await until(lambda: feed.revocations.is_revoked(principal))
        assert time.monotonic() - started < BOUND
        with pytest.raises(InvalidToken) as refused:
            await verifier.verify(token)
        assert refused.value.description == REVOKED
        assert verifier.introspections == 1


async def test_the_feed_starts_before_the_authorization_server_and_catches_up(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listens yet: the feed says so once (with what to check), keeps trying with
    backoff, and loads the list, revocations made meanwhile included, once the AS is up."""
    port = free_port()
    settings = make_settings(issuer=f"http://127.0.0.1:{port}")
    caplog.set_level(logging.WARNING, logger="bastion.revocations")
    feed = HttpRevocationFeed(f"{settings.issuer}/revocations", RevocationList())
    try:
        await feed.start(wait=0.2)
        assert not feed.ready.is_set()
        await until(lambda: feed.failures >= 2)
        [warning] = [r.getMessage() for r in caplog.records]
        assert f"cannot follow {settings.issuer}/revocations" in warning
        assert "check the URL and that the authorization server is up" in warning
        async with serve(create_app(settings), port=port):
            await record_directly(settings, "grant", "revoked-while-away")
            await until(lambda: feed.revocations.covers("revoked-while-away", None), 40)
            assert "following" in caplog.records[-1].getMessage()
            await feed.aclose()  # its held request ends with it, so the AS can stop at once
    finally:
        await feed.aclose()


async def until(condition: Callable[[], bool], limit: float = LIMIT) -> None:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < limit, "the condition never held"
        await asyncio.sleep(0.02)


async def record_directly(settings: Settings, kind: revocations.Kind, value: str) -> None:
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    now = int(time.time())
    try:
        async with db.transaction() as conn:
            await revocations.record(conn, kind, value, now=now, expires_at=now + 600)
    finally:
        await db.dispose()


def test_the_url_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="absolute http"):
        HttpRevocationFeed("/revocations", RevocationList())
