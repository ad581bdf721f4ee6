"""bastion as a client of an upstream's own OAuth (vault.upstream_server), against
node-oidc-provider and a protected-resource metadata server on loopback, on both databases.

Refusals first: no metadata, an issuer that differs (RFC 8414 §3.3), http or private addresses
without allow_private_addresses, no way to register, a client the server refuses. Then discovery
(RFC 9728 → RFC 8414), Dynamic Client Registration (RFC 7591) stored once for every process,
pre-registered clients, the code exchange with PKCE and ``resource`` (RFC 8707), refresh and
RFC 7009 revocation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import pytest
import sqlalchemy as sa
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.authserver.secret_key import cipher_for
from bastion.config import Settings
from bastion.config.gateway import UpstreamOAuthSettings, UpstreamSettings
from bastion.oauth import pkce
from bastion.oauth.www_authenticate import parse_challenges
from bastion.store.database import Database
from bastion.store.schema import upstream_clients
from bastion.vault.errors import ConnectionNeeded, UpstreamMisconfigured
from bastion.vault.upstream_server import UpstreamServer, client_metadata_document
from tests.support.live import free_port, serve
from tests.support.oauth_upstream import oauth_upstream
from tests.support.oidc_provider import OidcProvider, authorization_response, oidc_provider

BASTION = "https://bastion.example"
CALLBACK = f"{BASTION}/connect/callback"
SCOPES = "notes:read notes:write"
# bastion pre-registered at the provider: a confidential web client with the connect callback.
PRE_REGISTERED = {
    "client_id": "bastion",
    "client_secret": "the-right-secret",
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "redirect_uris": [CALLBACK],
    "token_endpoint_auth_method": "client_secret_basic",
}


@dataclass
class MetadataServer:
    """The upstream MCP server's metadata side: its PRM (RFC 9728) naming ``issuer``, a 401 at
    the endpoint, optionally an AS metadata document of its own (``as_metadata``)."""

    port: int
    issuer: str = ""
    as_metadata: dict[str, Any] | None = None
    prm: bool = True
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def app(self) -> Starlette:
        async def prm(request: Request) -> Response:
            self.requests.append(request.url.path)
            if not self.prm:
                return JSONResponse({"error": "not_found"}, status_code=404)
            return JSONResponse(
                {
                    "resource": self.url,
                    "authorization_servers": [self.issuer],
                    "scopes_supported": SCOPES.split(),
                }
            )

        async def as_metadata(request: Request) -> Response:
            self.requests.append(request.url.path)
            if self.as_metadata is None:
                return JSONResponse({"error": "not_found"}, status_code=404)
            return JSONResponse(self.as_metadata)

        async def mcp(request: Request) -> Response:
            self.requests.append(request.url.path)
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})

        return Starlette(
            routes=[
                Route("/.well-known/oauth-protected-resource/mcp", prm),
                Route("/.well-known/oauth-authorization-server/as", as_metadata),
                Route("/mcp", mcp, methods=["GET", "POST"]),
            ]
        )


@contextlib.asynccontextmanager
async def upstream_with_provider(
    **provider: Any,
) -> AsyncIterator[tuple[MetadataServer, OidcProvider]]:
    """node-oidc-provider issuing JWTs for the upstream's resource, and its metadata server."""
    meta = MetadataServer(free_port())
    resource = {"uri": meta.url, "scope": SCOPES, "format": "jwt", "alg": "ES256"}
    async with oidc_provider(resources=[resource], refresh_tokens="always", **provider) as op:
        meta.issuer = op.issuer
        async with serve(meta.app(), port=meta.port):
            yield meta, op


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.effective_database_url, schema=settings.database_schema)
    await database.upgrade()
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def server_for(
    settings: Settings, db: Database
) -> AsyncIterator[Callable[..., UpstreamServer]]:
    """Build an UpstreamServer for the upstream at a URL (closed at the end of the test)."""
    made: list[UpstreamServer] = []

    def build(url: str, **oauth: Any) -> UpstreamServer:
        upstream = UpstreamSettings(
            name="notes",
            path="/mcp/notes",
            url=url,
            auth="oauth",
            oauth=UpstreamOAuthSettings(**{"allow_private_addresses": True, **oauth}),
        )
        server = UpstreamServer(upstream, issuer=BASTION, db=db, cipher=cipher_for(settings))
        made.append(server)
        return server

    yield build
    for server in made:
        await server.aclose()


async def _stored_clients(db: Database) -> list[dict[str, Any]]:
    async with db.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(sa.select(upstream_clients))]


async def _sign_in(server: UpstreamServer, login: str = "alice") -> tuple[str, str, dict[str, str]]:
    """The authorization URL, its verifier and the provider's answer after ``login`` signs in."""
    verifier = pkce.new_verifier()
    url = await server.authorization_url(state="s-123", code_challenge=pkce.s256(verifier))
    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as browser:
        answer = await authorization_response(browser, url, redirect_uri=CALLBACK, login=login)
    return url, verifier, answer


# -- who must not get in -------------------------------------------------------------------------


async def test_no_protected_resource_metadata_is_a_configuration_error(
    server_for: Callable[..., UpstreamServer],
) -> None:
    """RFC 9728: without metadata (and nothing configured) bastion cannot know the upstream's
    authorization server; the error names the settings to set."""
    meta = MetadataServer(free_port(), prm=False)
    async with serve(meta.app(), port=meta.port):
        server = server_for(meta.url)
        with pytest.raises(UpstreamMisconfigured) as caught:
            await server.client()
    assert "authorization_server" in caught.value.detail
    assert "resource" in caught.value.detail
    assert "/.well-known/oauth-protected-resource/mcp" in meta.requests


async def test_c05_issuer_mismatch_is_refused(server_for: Callable[..., UpstreamServer]) -> None:
    """RFC 8414 §3.3: metadata whose issuer differs from the one it was fetched for is not used."""
    async with upstream_with_provider() as (meta, op):
        meta.issuer = f"http://127.0.0.1:{meta.port}/as"
        meta.as_metadata = {**op.metadata}  # the provider's document, its issuer unchanged
        server = server_for(meta.url)
        with pytest.raises(UpstreamMisconfigured) as caught:
            await server.client()
    assert "RFC 8414 §3.3" in caught.value.detail
    assert "/.well-known/oauth-authorization-server/as" in meta.requests


async def test_c19_http_endpoints_need_allow_private_addresses(
    server_for: Callable[..., UpstreamServer],
) -> None:
    """Upstream OAuth endpoints must be https; http only on loopback with
    allow_private_addresses. Nothing is requested."""
    meta = MetadataServer(free_port())
    async with serve(meta.app(), port=meta.port):
        server = server_for(meta.url, allow_private_addresses=False)
        with pytest.raises(UpstreamMisconfigured) as caught:
            await server.client()
    assert "allow_private_addresses" in caught.value.detail
    assert meta.requests == []


async def test_c19_private_addresses_are_blocked_by_default(
    server_for: Callable[..., UpstreamServer],
) -> None:
    """SSRF guard: an https URL on a loopback address is refused before any connection; the
    error names allow_private_addresses."""
    meta = MetadataServer(free_port())
    async with serve(meta.app(), port=meta.port):
        server = server_for(
            f"https://127.0.0.1:{meta.port}/mcp",
            allow_private_addresses=False,
        )
        with pytest.raises(UpstreamMisconfigured) as caught:
            await server.client()
    assert "allow_private_addresses" in caught.value.detail
    assert "SSRF" in caught.value.detail
    assert meta.requests == []


async def test_no_registration_route_names_client_id(
    server_for: Callable[..., UpstreamServer],
) -> None:
    """auto without client_id, no CIMD support and no registration_endpoint: the operator must
    pre-register bastion (the error names the redirect URI and client_id)."""
    async with upstream_with_provider(registration=False) as (meta, _op):
        server = server_for(meta.url)
        with pytest.raises(UpstreamMisconfigured) as caught:
            await server.client()
        cimd = server_for(meta.url, registration="cimd")
        with pytest.raises(UpstreamMisconfigured) as not_cimd:
            await cimd.client()
    assert "client_id" in caught.value.detail
    assert CALLBACK in caught.value.detail
    assert "client_id_metadata_document_supported" in not_cimd.value.detail


async def test_a_client_the_server_refuses(
    server_for: Callable[..., UpstreamServer],
) -> None:
    """A pre-registered client with a wrong secret: the token endpoint's invalid_client is the
    operator's to fix (UpstreamMisconfigured), not the person's (ConnectionNeeded)."""
    async with upstream_with_provider(clients=[PRE_REGISTERED]) as (meta, _op):
        server = server_for(meta.url, client_id="bastion", client_secret="a-wrong-secret")
        _, verifier, answer = await _sign_in(server)
        with pytest.raises(UpstreamMisconfigured) as caught:
            await server.exchange_code(answer["code"], verifier)
    assert "invalid_client" in caught.value.detail


# -- who may -------------------------------------------------------------------------------------


async def test_x11_dcr_once_then_code_refresh_and_revocation(
    server_for: Callable[..., UpstreamServer], db: Database
) -> None:
    """Discovery (RFC 9728 → RFC 8414), RFC 7591 registration stored encrypted and reused by
    another process, the code exchange with PKCE and resource (RFC 8707), refresh, and RFC 7009
    revocation after which the refresh token is refused (invalid_grant → ConnectionNeeded)."""
    async with upstream_with_provider(registration=True) as (meta, op):
        server = server_for(meta.url)
        info = await server.client()
        assert info.registration == "dcr"
        assert info.issuer == op.issuer
        assert info.resource == meta.url
        assert info.scopes == tuple(SCOPES.split())
        assert info.revocation_endpoint == op.revocation_endpoint
        [row] = await _stored_clients(db)
        assert row["client_id"] == info.client_id
        assert row["redirect_uri"] == CALLBACK
        assert info.client_secret and info.client_secret not in str(row)

        other = server_for(meta.url)  # another process: the stored registration, no new one
        assert (await other.client()).client_id == info.client_id
        assert len(await _stored_clients(db)) == 1

        url, verifier, answer = await _sign_in(server)
        params = parse_qs(urlsplit(url).query)
        assert params["code_challenge_method"] == ["S256"]
        assert params["resource"] == [meta.url]
        assert params["redirect_uri"] == [CALLBACK]
        assert params["scope"] == [SCOPES]
        assert answer["state"] == "s-123"
        tokens = await server.exchange_code(answer["code"], verifier)
        assert tokens.refresh_token is not None
        refreshed = await other.refresh(tokens.refresh_token)
        assert refreshed.access_token != tokens.access_token
        assert refreshed.refresh_token is not None

        assert await server.revoke(refreshed.refresh_token, hint="refresh_token") is True
        with pytest.raises(ConnectionNeeded):
            await server.refresh(refreshed.refresh_token)


async def test_concurrent_first_registrations_store_one_client(
    server_for: Callable[..., UpstreamServer], db: Database
) -> None:
    """Several processes registering at once: one registration row, used by all."""
    async with upstream_with_provider(registration=True) as (meta, _op):
        servers = [server_for(meta.url) for _ in range(4)]
        infos = await asyncio.gather(*(s.client() for s in servers))
        rows = await _stored_clients(db)
    assert len(rows) == 1
    assert {i.client_id for i in infos} == {rows[0]["client_id"]}


async def test_pre_registered_client(
    server_for: Callable[..., UpstreamServer], db: Database
) -> None:
    """A pre-registered confidential client (client_secret_basic): nothing is registered or
    stored; the code exchange and revocation (RFC 7009) authenticate with its secret."""
    async with upstream_with_provider(clients=[PRE_REGISTERED], registration=True) as (meta, _op):
        server = server_for(meta.url, client_id="bastion", client_secret="the-right-secret")
        info = await server.client()
        assert (info.registration, info.client_id) == ("pre-registered", "bastion")
        assert info.token_endpoint_auth_method == "client_secret_basic"
        _, verifier, answer = await _sign_in(server, login="alice")
        tokens = await server.exchange_code(answer["code"], verifier)
        # RFC 7009 §2.2.1: a server may not revoke (JWT) access tokens: unsupported_token_type.
        assert await server.revoke(tokens.access_token, hint="access_token") is False
        assert tokens.refresh_token is not None
        assert await server.revoke(tokens.refresh_token, hint="refresh_token") is True
        with pytest.raises(ConnectionNeeded):
            await server.refresh(tokens.refresh_token)
    assert await _stored_clients(db) == []


def test_client_metadata_document(settings: Settings) -> None:
    """The CIMD (draft-ietf-oauth-client-id-metadata-document §4): client_id is its own URL,
    one redirect URI (the connect callback), a public client."""
    doc = client_metadata_document(settings)
    assert doc["client_id"] == f"{settings.issuer}/connect/client-metadata.json"
    assert doc["redirect_uris"] == [f"{settings.issuer}/connect/callback"]
    assert doc["token_endpoint_auth_method"] == "none"
    assert doc["grant_types"] == ["authorization_code", "refresh_token"]


# -- the harness upstream: the SDK server's own metadata, its tokens accepted -------------------


@contextlib.asynccontextmanager
async def sdk_client(url: str, token: str) -> AsyncIterator[Client]:
    """The official SDK client over streamable HTTP with the upstream token."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


@pytest.mark.parametrize("registration", ["dcr", "pre-registered"])
async def test_the_harness_upstream_accepts_the_tokens_bastion_gets(
    server_for: Callable[..., UpstreamServer], registration: str
) -> None:
    """The SDK upstream: 401 with a Bearer challenge naming its RFC 9728 metadata without a
    token or with a bad one; discovery from that metadata; the token bastion gets for alice
    calls whoami (alice, the provider's sub) and add_note."""
    async with oauth_upstream(bastion_issuer=BASTION, registration=True) as up:
        async with httpx.AsyncClient(timeout=10) as http:
            for headers in ({}, {"Authorization": "Bearer not-a-token"}):
                refused = await http.post(up.url, json={}, headers=headers)
                assert refused.status_code == 401
                [challenge] = parse_challenges(refused.headers["www-authenticate"])
                assert challenge.scheme == "bearer"
                assert "oauth-protected-resource/mcp" in (challenge.get("resource_metadata") or "")
        settings = up.upstream_settings(registration=registration)
        server = server_for(up.url, **settings.oauth.model_dump(exclude_unset=True))
        info = await server.client()
        assert (info.issuer, info.resource, info.registration) == (
            up.issuer,
            up.resource,
            registration,
        )
        _, verifier, answer = await _sign_in(server, login="alice")
        assert "code" in answer, answer
        assert answer["iss"] == up.issuer  # RFC 9207, advertised by the provider
        assert info.iss_parameter_supported
        tokens = await server.exchange_code(answer["code"], verifier)
        async with sdk_client(up.url, tokens.access_token) as client:
            who = await client.call_tool("whoami", {})
            assert who.is_error is False
            assert who.content[0].text == "alice"  # type: ignore[union-attr]
            await client.call_tool("add_note", {"text": "hello"})
        assert up.notes["alice"] == ["hello"]
