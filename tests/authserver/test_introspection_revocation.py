"""Token introspection (RFC 7662) and token revocation (RFC 7009).

Introspection is for confidential callers (resource servers register as such). An access token is
described to any of them; a refresh token only to the client it belongs to; everything else is
``{"active": false}`` and nothing more (RFC 7662 §2.2). Revocation touches only the caller's own
tokens, and revoking a refresh token ends its whole grant (RFC 7009 §2.1).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from joserfc import jwt

from bastion.config import Settings
from bastion.tokens import access_token
from bastion.tokens.keys import SigningKey, generate
from tests.authserver.browser_steps import MovableClock, preregister
from tests.support.asgi import running
from tests.support.flow import REDIRECT_URI, add_user, authorize, exchange, register

ISSUER = "http://localhost"
RESOURCE = "http://localhost:9001/mcp"
INACTIVE = {"active": False}


@dataclass
class Confidential:
    client_id: str
    secret: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.client_id, self.secret)


@dataclass
class World:
    """A running AS with a clock, a resource server client, two confidential apps with tokens."""

    http: httpx.AsyncClient
    settings: Settings
    clock: MovableClock
    rs: Confidential
    app: Confidential
    other: Confidential
    tokens: dict[str, Any]


async def confidential(settings: Settings, **kwargs: Any) -> Confidential:
    client_id, secret = await preregister(settings, confidential=True, **kwargs)
    assert secret is not None
    return Confidential(client_id, secret)


async def code_tokens(http: httpx.AsyncClient, who: Confidential) -> dict[str, Any]:
    """Run the authorization code flow for a confidential client (client_secret_basic)."""
    done = await authorize(http, who.client_id)
    response = await http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": done.params["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": done.verifier,
        },
        auth=who.auth,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def world(make_settings: Callable[..., Settings]) -> AsyncIterator[World]:
    settings = make_settings()
    clock = MovableClock()
    async with running(settings, clock=clock) as http:
        await add_user(settings)
        rs = await confidential(
            settings,
            name="Resource server",
            redirect_uris=[],
            grant_types=["client_credentials"],
            introspects=["*"],
        )
        app = await confidential(settings, name="App")
        other = await confidential(settings, name="Other app")
        tokens = await code_tokens(http, app)
        yield World(http, settings, clock, rs, app, other, tokens)


async def introspect(world: World, who: Confidential, token: str, **extra: str) -> dict[str, Any]:
    response = await world.http.post("/introspect", data={"token": token, **extra}, auth=who.auth)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


async def revoke(world: World, who: Confidential, token: str, **extra: str) -> None:
    response = await world.http.post("/revoke", data={"token": token, **extra}, auth=who.auth)
    assert response.status_code == 200, response.text
    assert response.content == b""


def unverified_claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return claims


async def refresh(world: World, who: Confidential, token: str) -> httpx.Response:
    return await world.http.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": token}, auth=who.auth
    )


# Introspection (RFC 7662)


async def test_introspection_requires_a_confidential_client(world: World) -> None:
    """RFC 7662 §2.1: the endpoint requires authorization; here, a confidential client. A public
    client, no credentials, or a wrong secret get 401 invalid_client (RFC 6749 §5.2)."""
    public = await register(world.http)
    token = world.tokens["access_token"]
    attempts = [
        {"data": {"token": token, "client_id": public["client_id"]}},
        {"data": {"token": token}},
        {"data": {"token": token}, "auth": (world.rs.client_id, "wrong-secret")},
        {"data": {"token": token}, "auth": ("no-such-client", "secret")},
        {"data": {"token": token}, "auth": ("rs\x00", "secret")},
    ]
    for attempt in attempts:
        response = await world.http.post("/introspect", **attempt)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_client"
        assert "www-authenticate" in response.headers
        assert response.headers["cache-control"] == "no-store"
        assert "active" not in response.json()


async def test_active_access_token_is_described_with_its_claims(world: World) -> None:
    """RFC 7662 §2.2: active true with scope, client_id, sub, aud, iss, exp, iat and token_type,
    matching the token's own claims (RFC 9068 §2.2), to the resource server an operator allowed
    to introspect the token's audience and to the client the token was issued to."""
    token = world.tokens["access_token"]
    claims = unverified_claims(token)
    for caller in (world.rs, world.app):
        answer = await introspect(world, caller, token)
        assert answer["active"] is True
        assert answer["token_type"] == "Bearer"
        assert answer["scope"] == "mcp:tools"
        assert answer["client_id"] == world.app.client_id
        assert answer["aud"] == RESOURCE
        assert answer["iss"] == ISSUER
        assert answer["sub"] == claims["sub"]
        assert answer["sub"]
        assert answer["iat"] == world.clock.now
        assert answer["exp"] == world.clock.now + world.settings.tokens.access_token_ttl
        assert answer["jti"] == claims["jti"]


async def test_l5_other_clients_learn_nothing_about_a_token(world: World) -> None:
    """L5, RFC 7662 §4: a confidential client that is neither the token's client nor a resource
    server allowed to introspect its audience gets active false, like for garbage: an anonymous
    DCR client, another pre-registered app."""
    token = world.tokens["access_token"]
    registered = await world.http.post(
        "/register",
        json={
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "client_secret_basic",
            "application_type": "native",
        },
    )
    stranger = Confidential(registered.json()["client_id"], registered.json()["client_secret"])
    for caller in (stranger, world.other):
        assert await introspect(world, caller, token) == INACTIVE


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwOi8vbG9jYWxob3N0In0.", "x" * 9000],
)
async def test_garbage_token_is_inactive_and_nothing_more(world: World, token: str) -> None:
    """RFC 7662 §2.2: for a token that is not valid the answer is only {"active": false}."""
    assert await introspect(world, world.rs, token) == INACTIVE


async def test_expired_access_token_is_inactive(world: World) -> None:
    """RFC 7662 §2.2: an expired token is not active."""
    world.clock.advance(world.settings.tokens.access_token_ttl)
    assert await introspect(world, world.rs, world.tokens["access_token"]) == INACTIVE


async def own_key(world: World) -> SigningKey:
    key: SigningKey = await world.http.app.state.bastion.keys.signing_key()  # type: ignore[attr-defined]
    return key


async def test_token_with_a_foreign_issuer_or_foreign_key_is_inactive(world: World) -> None:
    """RFC 7662 §2.2 and RFC 9068 §4: a JWT issued by another issuer, or signed by a key this AS
    does not hold (even with a known kid), or not typed at+jwt, is not one of ours."""
    key = await own_key(world)
    claims = {
        "subject": "alice",
        "audience": RESOURCE,
        "client_id": world.app.client_id,
        "scope": "mcp:tools",
        "now": world.clock.now,
        "ttl": 600,
    }
    other_issuer = access_token.issue(key, issuer="https://other.example", **claims)
    impostor = SigningKey(
        kid=key.kid,
        alg=key.alg,
        key=generate(key.alg, key.kid),
        public_jwk={},
        activates_at=0,
        retire_at=None,
    )
    foreign_key = access_token.issue(impostor, issuer=ISSUER, **claims)
    untyped = jwt.encode(
        {"alg": key.alg, "kid": key.kid, "typ": "JWT"},
        unverified_claims(world.tokens["access_token"]),
        key.key,
    )
    genuine = access_token.issue(key, issuer=ISSUER, **claims)
    assert (await introspect(world, world.rs, genuine.token))["active"] is True
    for token in (other_issuer.token, foreign_key.token, untyped):
        assert await introspect(world, world.rs, token) == INACTIVE


async def test_refresh_token_is_reported_only_to_its_own_client(world: World) -> None:
    """RFC 7662 §4: the AS decides what each caller may learn; a refresh token is described to
    the client that holds it and is inactive for anyone else."""
    refresh_token = world.tokens["refresh_token"]
    mine = await introspect(world, world.app, refresh_token)
    assert mine["active"] is True
    assert mine["client_id"] == world.app.client_id
    assert mine["token_type"] == "refresh_token"
    assert mine["scope"] == "mcp:tools"
    assert mine["aud"] == RESOURCE
    assert mine["iss"] == ISSUER
    for stranger in (world.rs, world.other):
        assert await introspect(world, stranger, refresh_token) == INACTIVE


async def test_rotated_refresh_token_is_inactive(world: World) -> None:
    """OAuth 2.1 §4.3.1: a refresh token that was used (rotated) is no longer active."""
    used = world.tokens["refresh_token"]
    rotated = await refresh(world, world.app, used)
    assert rotated.status_code == 200, rotated.text
    assert await introspect(world, world.app, used) == INACTIVE
    assert (await introspect(world, world.app, rotated.json()["refresh_token"]))["active"] is True


async def test_introspection_without_token_is_invalid_request(world: World) -> None:
    """RFC 7662 §2.1: token is REQUIRED."""
    response = await world.http.post(
        "/introspect", data={"token_type_hint": "access_token"}, auth=world.rs.auth
    )
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request", "error_description": "token is required"}
    nul = await world.http.post("/introspect", data={"token": "a\x00"}, auth=world.rs.auth)
    assert nul.status_code == 400
    assert nul.json() == {
        "error": "invalid_request",
        "error_description": "a parameter contains a NUL character",
    }


# Revocation (RFC 7009)


async def test_revoking_a_refresh_token_revokes_its_family(world: World) -> None:
    """RFC 7009 §2.1: revoking a refresh token SHOULD also invalidate the access tokens of the
    same grant; the refresh token stops working at the token endpoint."""
    second = await refresh(world, world.app, world.tokens["refresh_token"])
    assert second.status_code == 200
    latest = second.json()
    await revoke(world, world.app, latest["refresh_token"], token_type_hint="refresh_token")
    for access in (world.tokens["access_token"], latest["access_token"]):
        assert await introspect(world, world.rs, access) == INACTIVE
    assert await introspect(world, world.app, latest["refresh_token"]) == INACTIVE
    again = await refresh(world, world.app, latest["refresh_token"])
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


async def test_revoking_an_access_token_leaves_the_grant(world: World) -> None:
    """RFC 7009 §2.1: an access token can be revoked on its own (a wrong hint is ignored);
    the refresh token still works."""
    access = world.tokens["access_token"]
    await revoke(world, world.app, access, token_type_hint="refresh_token")
    assert await introspect(world, world.rs, access) == INACTIVE
    renewed = await refresh(world, world.app, world.tokens["refresh_token"])
    assert renewed.status_code == 200
    assert (await introspect(world, world.rs, renewed.json()["access_token"]))["active"] is True


async def test_revoking_another_clients_token_does_nothing(world: World) -> None:
    """RFC 7009 §2.1: the AS checks the token was issued to the requesting client; another
    client's request answers 200 (§2.2, nothing to reveal) and changes nothing."""
    for token in (world.tokens["refresh_token"], world.tokens["access_token"]):
        await revoke(world, world.other, token)
        await revoke(world, world.rs, token)
    assert (await introspect(world, world.rs, world.tokens["access_token"]))["active"] is True
    assert (await introspect(world, world.app, world.tokens["refresh_token"]))["active"] is True
    assert (await refresh(world, world.app, world.tokens["refresh_token"])).status_code == 200


@pytest.mark.parametrize("token", ["unknown-token", "a.b.c", "x" * 5000])
async def test_revoking_an_unknown_token_answers_200(world: World, token: str) -> None:
    """RFC 7009 §2.2: invalid tokens do not cause an error response."""
    await revoke(world, world.app, token)


async def test_revocation_without_token_is_invalid_request(world: World) -> None:
    """RFC 7009 §2.1: token is REQUIRED; RFC 7009 §2.2.1 error format of RFC 6749 §5.2."""
    response = await world.http.post("/revoke", data={"token_type_hint": "x"}, auth=world.app.auth)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request", "error_description": "token is required"}
    assert response.headers["cache-control"] == "no-store"


async def test_revocation_requires_client_authentication(world: World) -> None:
    """RFC 7009 §2.1: the client authenticates as at the token endpoint; a wrong secret is
    401 invalid_client and revokes nothing."""
    response = await world.http.post(
        "/revoke",
        data={"token": world.tokens["refresh_token"]},
        auth=(world.app.client_id, "wrong-secret"),
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert (await introspect(world, world.app, world.tokens["refresh_token"]))["active"] is True


async def test_public_client_revokes_its_own_refresh_token(world: World) -> None:
    """RFC 7009 §2.1 with a public client (client_id only, OAuth 2.1 §2.4): its grant ends."""
    public = await register(world.http)
    done = await authorize(world.http, public["client_id"])
    tokens = (await exchange(world.http, public["client_id"], done)).json()
    response = await world.http.post(
        "/revoke", data={"token": tokens["refresh_token"], "client_id": public["client_id"]}
    )
    assert response.status_code == 200
    assert await introspect(world, world.rs, tokens["access_token"]) == INACTIVE
    again = await world.http.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": public["client_id"],
        },
    )
    assert again.json()["error"] == "invalid_grant"
