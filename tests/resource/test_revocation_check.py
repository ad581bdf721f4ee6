"""Verifiers given a revocation list refuse revoked tokens on every request, from their cache
too: RFC 6750 §3.1 ``invalid_token`` (401) with "the token has been revoked", for the JWT
verifier (RFC 9068) and the introspection verifier (RFC 7662), and through the middleware."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion.oauth.errors import InvalidToken
from bastion.oauth.www_authenticate import parse_challenges
from bastion.resource import (
    IntrospectionVerifier,
    JwtVerifier,
    ResourceServerMiddleware,
    RevocationList,
)
from bastion.resource.verifier import REVOKED
from tests.resource.apps import RESOURCE, echo_app
from tests.resource.conftest import ForeignAS

ISSUER = "https://as.example.com"


def jwt_verifier(foreign_as: ForeignAS, revoked: RevocationList | None) -> JwtVerifier:
    return foreign_as.verifier(RESOURCE, revocations=revoked)


def token(foreign_as: ForeignAS, **claims: Any) -> str:
    return foreign_as.sign(foreign_as.claims(RESOURCE, **claims))


async def refused(verifier: JwtVerifier | IntrospectionVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify(token)
    assert caught.value.status_code == 401
    return caught.value.description


async def test_a_cached_token_is_refused_once_its_grant_is_revoked(foreign_as: ForeignAS) -> None:
    """The token is verified and cached; revoking its grant refuses it from the cache, without
    another signature check; other grants go on working."""
    revoked = RevocationList()
    verifier = jwt_verifier(foreign_as, revoked)
    mine = token(foreign_as, grant_id="family-1")
    theirs = token(foreign_as, grant_id="family-2")
    await verifier.verify(mine)
    await verifier.verify(theirs)
    checks = verifier.signature_checks
    revoked.add("grant", "family-1", int(time.time()) + 600)
    assert await refused(verifier, mine) == REVOKED == "the token has been revoked"
    assert await refused(verifier, mine) == REVOKED
    assert (await verifier.verify(theirs)).grant_id == "family-2"
    assert verifier.signature_checks == checks


async def test_a_revoked_jti_is_refused_before_it_is_ever_cached(foreign_as: ForeignAS) -> None:
    revoked = RevocationList()
    jti = secrets.token_hex(8)
    revoked.add("token", jti, int(time.time()) + 600)
    verifier = jwt_verifier(foreign_as, revoked)
    assert await refused(verifier, token(foreign_as, jti=jti)) == REVOKED
    await verifier.verify(token(foreign_as))


async def test_without_a_list_nothing_is_checked(foreign_as: ForeignAS) -> None:
    verifier = jwt_verifier(foreign_as, None)
    principal = await verifier.verify(token(foreign_as, grant_id="family-1"))
    assert principal.grant_id == "family-1"


async def test_the_introspection_verifier_refuses_a_revoked_token_from_its_cache() -> None:
    """RFC 7662 answers are cached for cache_ttl; the list makes a revocation apply at once."""
    answers: list[int] = []
    exp = int(time.time()) + 600

    async def introspect(request: Request) -> JSONResponse:
        answers.append(1)
        return JSONResponse(
            {
                "active": True,
                "sub": "alice",
                "client_id": "app",
                "aud": RESOURCE,
                "exp": exp,
                "jti": "jti-1",
                "grant_id": "family-1",
            }
        )

    app = Starlette(routes=[Route("/introspect", introspect, methods=["POST"])])
    revoked = RevocationList()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        verifier = IntrospectionVerifier(
            introspection_endpoint=f"{ISSUER}/introspect",
            client_id="rs",
            client_secret="secret",
            audience=RESOURCE,
            http=http,
            revocations=revoked,
        )
        await verifier.verify("opaque-token")
        revoked.add("grant", "family-1", exp)
        assert await refused(verifier, "opaque-token") == REVOKED
    assert answers == [1]


async def test_the_middleware_answers_401_invalid_token_for_a_revoked_token(
    foreign_as: ForeignAS,
) -> None:
    """RFC 6750 §3.1: the challenge carries error="invalid_token" and the description."""
    revoked = RevocationList()
    app = ResourceServerMiddleware(
        echo_app(),
        resource=RESOURCE,
        verifier=jwt_verifier(foreign_as, revoked),
        authorization_servers=[ISSUER],
        scopes_supported=["mcp:tools"],
    )
    headers = {"Authorization": f"Bearer {token(foreign_as, grant_id='family-1')}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost"
    ) as client:
        assert (await client.get("/mcp", headers=headers)).status_code == 200
        revoked.add("grant", "family-1", int(time.time()) + 600)
        response = await client.get("/mcp", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_token", "error_description": REVOKED}
    [challenge] = parse_challenges(response.headers["www-authenticate"])
    assert challenge.params["error"] == "invalid_token"
    assert challenge.params["error_description"] == REVOKED
