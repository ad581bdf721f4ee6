"""Token introspection as a verifier: RFC 7662 §2.1 (request, client_secret_basic per RFC 6749
§2.3.1), §2.2 (active, aud, iss, exp, token_type), with MCP's audience rule (checklist R04).

Most tests ask a real bastion AS under uvicorn; answers no bastion AS would give (no aud, a
refresh token, a string "true") come from a tiny foreign introspection endpoint.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bastion.oauth.errors import InvalidToken, TemporarilyUnavailable
from bastion.resource import IntrospectionVerifier, TokenVerifier
from tests.resource.conftest import LiveAS, ServiceClient, basic, get_token, service_client
from tests.support.live import free_port

RESOURCE = "https://mcp.example.com/mcp"


async def resource_server_client(live: LiveAS, introspects: str = "demo") -> ServiceClient:
    """The resource server's own confidential client, used to call /introspect; an operator
    allowed it to introspect the tokens of ``introspects`` (a resource name, or *)."""
    return await service_client(
        live.settings, client_id="rs-introspector", scope="mcp:tools", introspects=[introspects]
    )


def introspector(live: LiveAS, rs: ServiceClient, **kwargs: Any) -> IntrospectionVerifier:
    options: dict[str, Any] = {
        "introspection_endpoint": f"{live.issuer}/introspect",
        "client_id": rs.client_id,
        "client_secret": rs.secret,
        "audience": live.resource,
        "issuer": live.issuer,
        "clock": live.clock,
    }
    options.update(kwargs)
    return IntrospectionVerifier(**options)


async def refused(verifier: IntrospectionVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify(token)
    return caught.value.description


async def revoke(live: LiveAS, client: ServiceClient, token: str) -> None:
    """RFC 7009 §2.1: the client revokes its own access token."""
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{live.issuer}/revoke",
            data={"token": token, "token_type_hint": "access_token"},
            headers={"Authorization": basic(client.client_id, client.secret)},
        )
    assert response.status_code == 200, response.text


async def test_r04_active_token_is_accepted_with_its_principal(bastion_as: LiveAS) -> None:
    """RFC 7662 §2.2: active true, aud containing this resource; sub, client_id, scope, exp and
    jti become the principal."""
    rs = await resource_server_client(bastion_as)
    caller = await service_client(bastion_as.settings)
    body = await get_token(bastion_as.issuer, caller, resource=bastion_as.resource)
    async with introspector(bastion_as, rs) as verifier:
        assert isinstance(verifier, TokenVerifier)
        principal = await verifier.verify(body["access_token"])
    assert principal.subject == caller.client_id
    assert principal.client_id == caller.client_id
    assert principal.scopes == frozenset({"mcp:tools"})
    assert principal.token_id == principal.claims["jti"]
    assert principal.expires_at == principal.claims["exp"]


async def test_r04_token_for_another_resource_is_refused(bastion_as: LiveAS) -> None:
    """RFC 8707 §2: the AS reports the token's aud; it must contain this resource (a resource
    server allowed to introspect every resource's tokens checks it itself)."""
    rs = await resource_server_client(bastion_as, introspects="*")
    caller = await service_client(bastion_as.settings)
    body = await get_token(bastion_as.issuer, caller, resource=bastion_as.other_resource)
    async with introspector(bastion_as, rs) as verifier:
        description = await refused(verifier, body["access_token"])
    assert description == (
        f"wrong audience: expected '{bastion_as.resource}', got '{bastion_as.other_resource}'"
    )


async def test_l5_a_resource_server_learns_nothing_of_another_resources_token(
    bastion_as: LiveAS,
) -> None:
    """L5, RFC 7662 §4: a resource server allowed to introspect its own resource's tokens gets
    active false for another resource's token."""
    rs = await resource_server_client(bastion_as)
    caller = await service_client(bastion_as.settings)
    body = await get_token(bastion_as.issuer, caller, resource=bastion_as.other_resource)
    async with introspector(bastion_as, rs) as verifier:
        description = await refused(verifier, body["access_token"])
    assert description == "token is not active (expired, revoked or unknown to the AS)"


async def test_revoked_token_is_refused(bastion_as: LiveAS) -> None:
    """RFC 7009 §2 then RFC 7662 §2.2: a revoked token is reported inactive."""
    rs = await resource_server_client(bastion_as)
    caller = await service_client(bastion_as.settings)
    token = (await get_token(bastion_as.issuer, caller, resource=bastion_as.resource))[
        "access_token"
    ]
    await revoke(bastion_as, caller, token)
    async with introspector(bastion_as, rs) as verifier:
        assert await refused(verifier, token) == (
            "token is not active (expired, revoked or unknown to the AS)"
        )


async def test_answers_are_cached_for_cache_ttl_then_a_revocation_is_seen(
    bastion_as: LiveAS,
) -> None:
    """Caching trades revocation latency for load: a positive answer is reused for cache_ttl
    seconds (one introspection), after which the revocation takes effect."""
    rs = await resource_server_client(bastion_as)
    caller = await service_client(bastion_as.settings)
    token = (await get_token(bastion_as.issuer, caller, resource=bastion_as.resource))[
        "access_token"
    ]
    async with introspector(bastion_as, rs, cache_ttl=60) as verifier:
        first = await verifier.verify(token)
        await revoke(bastion_as, caller, token)
        assert await verifier.verify(token) is first
        assert verifier.introspections == 1
        bastion_as.clock.advance(60)
        await refused(verifier, token)
        assert verifier.introspections == 2


async def test_cache_never_outlives_the_token_exp(bastion_as: LiveAS) -> None:
    """The cache keeps an answer until min(exp, now + cache_ttl): at exp the AS is asked again."""
    rs = await resource_server_client(bastion_as)
    caller = await service_client(bastion_as.settings)
    token = (await get_token(bastion_as.issuer, caller, resource=bastion_as.resource))[
        "access_token"
    ]
    async with introspector(bastion_as, rs, cache_ttl=86400) as verifier:
        principal = await verifier.verify(token)
        bastion_as.clock.advance(principal.expires_at - bastion_as.clock() - 1)
        await verifier.verify(token)
        assert verifier.introspections == 1
        bastion_as.clock.advance(1)
        await refused(verifier, token)
        assert verifier.introspections == 2


async def test_unknown_token_is_refused(bastion_as: LiveAS) -> None:
    """RFC 7662 §2.2: anything the AS does not know is {"active": false}."""
    rs = await resource_server_client(bastion_as)
    async with introspector(bastion_as, rs) as verifier:
        assert "not active" in await refused(verifier, "opaque-garbage-token")


async def test_wrong_resource_server_credentials_make_the_verifier_unavailable(
    bastion_as: LiveAS,
) -> None:
    """RFC 7662 §2.1: the AS refuses the introspection call (401); the client's token is not at
    fault, so this is 503-style unavailability with the operator's hint in the detail only."""
    rs = await resource_server_client(bastion_as)
    wrong = ServiceClient(rs.client_id, "not-the-secret")
    async with introspector(bastion_as, wrong) as verifier:
        with pytest.raises(TemporarilyUnavailable) as caught:
            await verifier.verify("whatever")
    assert caught.value.description == (
        "the authorization server could not be asked about the token; retry later"
    )
    assert caught.value.detail is not None
    assert "HTTP 401 (check client_id and client_secret)" in caught.value.detail


async def test_unreachable_introspection_endpoint_is_unavailable() -> None:
    async with IntrospectionVerifier(
        introspection_endpoint=f"http://127.0.0.1:{free_port()}/introspect",
        client_id="rs",
        client_secret="s",
        audience=RESOURCE,
    ) as verifier:
        with pytest.raises(TemporarilyUnavailable):
            await verifier.verify("token")


# -- answers of other authorization servers ------------------------------------------------------


@dataclass
class Foreign:
    """A foreign introspection endpoint: ``answers[token]`` is what it says about a token;
    ``seen`` the Basic credentials it received."""

    http: httpx.AsyncClient
    answers: dict[str, Any] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)


def foreign_introspection(answers: dict[str, Any], seen: list[tuple[str, str]]) -> Starlette:
    async def introspect(request: Request) -> Response:
        _, _, value = request.headers.get("authorization", "").partition(" ")
        client_id, _, secret = base64.b64decode(value).decode().partition(":")
        seen.append((unquote(client_id), unquote(secret)))
        form = await request.form()
        answer = answers.get(str(form["token"]), {"active": False})
        if isinstance(answer, str):
            return PlainTextResponse(answer)
        return JSONResponse(answer)

    return Starlette(routes=[Route("/introspect", introspect, methods=["POST"])])


@pytest.fixture
async def foreign() -> AsyncIterator[Foreign]:
    answers: dict[str, Any] = {}
    seen: list[tuple[str, str]] = []
    transport = httpx.ASGITransport(app=foreign_introspection(answers, seen))
    async with httpx.AsyncClient(transport=transport) as http:
        yield Foreign(http, answers, seen)


def foreign_verifier(http: httpx.AsyncClient, **kwargs: Any) -> IntrospectionVerifier:
    return IntrospectionVerifier(
        introspection_endpoint="https://as.example.com/introspect",
        client_id="rs:one",
        client_secret="p@ss word",
        audience=RESOURCE,
        http=http,
        **kwargs,
    )


async def test_client_secret_basic_credentials_are_form_encoded(
    foreign: Foreign,
) -> None:
    """RFC 6749 §2.3.1: client_id and secret are application/x-www-form-urlencoded before being
    joined with ":" (a ":" in the id would otherwise split wrongly)."""
    foreign.answers["t-basic"] = {"active": True, "sub": "u", "aud": RESOURCE}
    await foreign_verifier(foreign.http).verify("t-basic")
    assert foreign.seen == [("rs:one", "p@ss word")]


async def test_r04_answer_without_aud_is_refused_unless_explicitly_allowed(
    foreign: Foreign,
) -> None:
    """RFC 7662 §2.2 makes aud optional; without it the resource cannot tell the token was
    issued for it (MCP: MUST only accept tokens issued for itself), so it refuses by default."""
    http = foreign.http
    foreign.answers["t-noaud"] = {
        "active": True,
        "sub": "u",
        "scope": "mcp:tools",
        "exp": 4102444800,
    }
    assert "names no audience" in await refused(foreign_verifier(http), "t-noaud")
    principal = await foreign_verifier(http, require_audience=False).verify("t-noaud")
    assert principal.subject == "u"
    assert principal.scopes == frozenset({"mcp:tools"})


async def test_rfc9449_6_2_an_answer_with_cnf_jkt_and_token_type_dpop_gives_the_jkt(
    foreign: Foreign,
) -> None:
    """RFC 9449 §6.2: the introspection answer of a DPoP-bound token carries cnf.jkt (and
    token_type DPoP); the principal carries the jkt for the middleware's binding check."""
    foreign.answers["t-bound"] = {
        "active": True,
        "sub": "u",
        "aud": RESOURCE,
        "token_type": "DPoP",
        "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
    }
    principal = await foreign_verifier(foreign.http).verify("t-bound")
    assert principal.jkt == "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"


@pytest.mark.parametrize(
    ("answer", "description"),
    [
        ({"active": "true", "sub": "u", "aud": RESOURCE}, "token is not active"),
        ({"sub": "u", "aud": RESOURCE}, "token is not active"),
        (
            {"active": True, "sub": "u", "aud": RESOURCE, "token_type": "refresh_token"},
            "token_type 'refresh_token' is not an access token",
        ),
        (
            {"active": True, "sub": "u", "aud": RESOURCE, "iss": "https://evil.example"},
            "wrong issuer: expected 'https://as.example.com', got 'https://evil.example'",
        ),
        ({"active": True, "aud": [RESOURCE]}, "names neither sub nor client_id"),
        ({"active": True, "sub": "u", "aud": RESOURCE, "exp": 1000}, "token expired at 1000"),
        (
            {"active": True, "sub": "u", "aud": RESOURCE, "cnf": {"x5t#S256": "x"}},
            "sender-constrained",
        ),
        (
            {"active": True, "sub": "u", "aud": RESOURCE, "token_type": "DPoP"},
            "token_type DPoP without cnf.jkt",
        ),
    ],
)
async def test_answers_that_do_not_prove_a_usable_token_are_refused(
    foreign: Foreign,
    answer: dict[str, Any],
    description: str,
) -> None:
    """RFC 7662 §2.2: active must be the boolean true; a refresh token is not an access token;
    iss must match when configured; the token must still be unexpired here."""
    http = foreign.http
    foreign.answers["t-bad"] = {"iss": "https://as.example.com", **answer}
    assert description in await refused(
        foreign_verifier(http, issuer="https://as.example.com"), "t-bad"
    )


async def test_answer_that_is_not_json_makes_the_verifier_unavailable(
    foreign: Foreign,
) -> None:
    http = foreign.http
    foreign.answers["t-html"] = "<html>oops</html>"
    with pytest.raises(TemporarilyUnavailable):
        await foreign_verifier(http).verify("t-html")


async def test_client_id_stands_for_the_subject_when_sub_is_absent(
    foreign: Foreign,
) -> None:
    """A client_credentials answer may name only the client (RFC 7662 §2.2 sub is optional)."""
    http = foreign.http
    foreign.answers["t-cc"] = {
        "active": True,
        "client_id": "svc",
        "aud": [RESOURCE],
        "scope": "a b",
    }
    principal = await foreign_verifier(http).verify("t-cc")
    assert (principal.subject, principal.client_id) == ("svc", "svc")
    assert principal.scopes == frozenset({"a", "b"})


def test_repr_never_shows_the_client_secret() -> None:
    """STYLE rule 11: secrets are masked in reprs."""
    verifier = IntrospectionVerifier(
        introspection_endpoint="https://as.example.com/introspect",
        client_id="rs",
        client_secret="super-secret-value",
        audience=RESOURCE,
    )
    assert "super-secret-value" not in repr(verifier)
