"""Fixtures for the resource-server tests: a real bastion AS (with a clock the test can move),
confidential clients, tokens from the client_credentials grant, and a foreign "AS" that is only
a JWKS document signed tokens can be checked against."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion.authserver.app import create_app, secret_for
from bastion.config import ResourceSettings, Settings
from bastion.resource import JwtVerifier
from bastion.store.database import Database
from bastion.tokens.cipher import Cipher
from bastion.tokens.keys import KeyManager, SigningKey
from tests.support.clients import machine_client
from tests.support.live import free_port, serve

SCOPES = ["mcp:tools", "files:write"]


class MovableClock:
    """Unix seconds, shifted by whatever the test has advanced (injected into AS and verifier)."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self) -> int:
        return int(time.time()) + self.offset

    def advance(self, seconds: int) -> None:
        self.offset += seconds


@dataclass
class LiveAS:
    """A bastion authorization server under uvicorn."""

    issuer: str
    settings: Settings
    clock: MovableClock

    @property
    def resource(self) -> str:
        return f"{self.issuer}/mcp"

    @property
    def other_resource(self) -> str:
        return f"{self.issuer}/other"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"


@dataclass
class ServiceClient:
    """A confidential client registered for client_credentials."""

    client_id: str
    secret: str


StartAS = Callable[..., AbstractAsyncContextManager[LiveAS]]


@pytest.fixture
def start_as(make_settings: Callable[..., Settings]) -> StartAS:
    """Start a bastion AS on a loopback port: ``async with start_as(extra_resources=[...]) as a``.

    Its issuer is http://127.0.0.1:<port>; it serves the resources <issuer>/mcp and
    <issuer>/other plus any ``extra_resources`` URIs, with scopes mcp:tools and files:write.
    """

    @asynccontextmanager
    async def start(
        *, extra_resources: Sequence[str] = (), clock: MovableClock | None = None, **overrides: Any
    ) -> AsyncIterator[LiveAS]:
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        resources = [
            ResourceSettings(uri=f"{issuer}/mcp", name="demo", scopes=SCOPES),
            ResourceSettings(uri=f"{issuer}/other", name="another server", scopes=SCOPES),
        ]
        resources += [ResourceSettings(uri=u, name="other", scopes=SCOPES) for u in extra_resources]
        settings = make_settings(issuer=issuer, resources=resources, **overrides)
        moving = clock or MovableClock()
        async with serve(create_app(settings, clock=moving), port=port) as url:
            assert url == issuer
            yield LiveAS(issuer, settings, moving)

    return start


@pytest.fixture
async def bastion_as(start_as: StartAS) -> AsyncIterator[LiveAS]:
    """One running bastion AS (SQLite and PostgreSQL, like every `settings` test)."""
    async with start_as() as live:
        yield live


async def service_client(
    settings: Settings,
    client_id: str | None = None,
    scope: str = "mcp:tools files:write",
    introspects: Sequence[str] = (),
) -> ServiceClient:
    """Pre-register a confidential client for the client_credentials grant (which may
    introspect the tokens of ``introspects``)."""
    created = await machine_client(
        settings,
        client_id=client_id or f"svc-{secrets.token_hex(4)}",
        name="Resource test service",
        scope=scope,
        introspects=introspects,
    )
    return ServiceClient(created.client_id, created.secret)


def basic(client_id: str, secret: str) -> str:
    """client_secret_basic credentials (RFC 6749 §2.3.1: form-encoded, then base64)."""
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode()


async def get_token(
    issuer: str, client: ServiceClient, *, resource: str, scope: str | None = "mcp:tools"
) -> dict[str, Any]:
    """A token response from the client_credentials grant (OAuth 2.1 §4.2)."""
    form = {"grant_type": "client_credentials", "resource": resource}
    if scope:
        form["scope"] = scope
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{issuer}/token",
            data=form,
            headers={"Authorization": basic(client.client_id, client.secret)},
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def signing_key_of(settings: Settings) -> SigningKey:
    """The AS's current signing key, read from its database (to forge tokens it would sign)."""
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        keys = KeyManager(
            db,
            Cipher(secret_for(settings)),
            alg=settings.tokens.signing_alg,
            token_ttl=settings.tokens.access_token_ttl,
        )
        return await keys.signing_key()
    finally:
        await db.dispose()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value).encode())


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """An "alg": "none" JWS (RFC 7515 Appendix A.5): empty signature."""
    return f"{b64json(header)}.{b64json(claims)}."


def hmac_signed(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """An HS256 JWS made with ``secret`` (the algorithm-confusion forgery uses a public key)."""
    signing_input = f"{b64json(header)}.{b64json(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def header_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    value: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return value


# -- a foreign authorization server: a JWKS and keys the test holds ------------------------------

Key = ECKey | OKPKey | RSAKey


@dataclass
class ForeignAS:
    """An issuer whose JWKS is served by a tiny Starlette app through ASGITransport."""

    issuer: str
    keys: dict[str, Key]
    jwks: dict[str, Any]
    http: httpx.AsyncClient
    hits: list[int]

    jwks_uri = "https://as.example.com/jwks"

    def sign(
        self,
        claims: dict[str, Any],
        *,
        kid: str = "k1",
        alg: str = "ES256",
        typ: str | None = "at+jwt",
        header: dict[str, Any] | None = None,
        key: Key | None = None,
    ) -> str:
        """Sign ``claims`` with the key ``kid`` (or ``key``)."""
        head: dict[str, Any] = {"alg": alg, "kid": kid}
        if typ is not None:
            head["typ"] = typ
        head.update(header or {})
        head = {k: v for k, v in head.items() if v is not None}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)  # joserfc's note that EdDSA is older
            return jws.serialize_compact(
                head, json.dumps(claims), key or self.keys[kid], algorithms=[alg]
            )

    def verifier(self, audience: str, **options: Any) -> JwtVerifier:
        """A :class:`JwtVerifier` of this AS's tokens for the resource ``audience``, fetching
        the JWKS through ``http``; ``options`` are the verifier's other arguments."""
        return JwtVerifier(
            issuer=self.issuer,
            audience=audience,
            jwks_uri=self.jwks_uri,
            http=self.http,
            **options,
        )

    def claims(self, audience: str, *, now: int | None = None, **extra: Any) -> dict[str, Any]:
        """RFC 9068 §2.2 claims for ``audience``, valid for ten minutes from ``now``."""
        now = int(time.time()) if now is None else now
        base: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "alice",
            "aud": audience,
            "client_id": "client-1",
            "iat": now,
            "exp": now + 600,
            "jti": secrets.token_hex(8),
            "scope": "mcp:tools",
        }
        base.update(extra)
        return {k: v for k, v in base.items() if v is not None}


def jwks_app(document: dict[str, Any], hits: list[int]) -> Starlette:
    """A JWKS endpoint (RFC 7517 §5) serving ``document`` (mutable: tests rotate keys in it)."""

    async def endpoint(request: Request) -> JSONResponse:
        hits.append(1)
        return JSONResponse(document, media_type="application/jwk-set+json")

    return Starlette(routes=[Route("/jwks", endpoint)])


@pytest.fixture
async def foreign_as() -> AsyncIterator[ForeignAS]:
    """An AS with an ES256 key k1, an RS256 key r1 and an Ed25519 key e1."""
    keys: dict[str, Key] = {
        "k1": ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True),
        "r1": RSAKey.generate_key(2048, parameters={"kid": "r1"}, private=True),
        "e1": OKPKey.generate_key("Ed25519", parameters={"kid": "e1"}, private=True),
    }
    document = {"keys": [k.as_dict(private=False) for k in keys.values()]}
    hits: list[int] = []
    transport = httpx.ASGITransport(app=jwks_app(document, hits))
    async with httpx.AsyncClient(transport=transport) as http:
        yield ForeignAS("https://as.example.com", keys, document, http, hits)
