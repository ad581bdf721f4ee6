"""DPoP at a resource server (RFC 9449 §7, §9, §11.1; checklist X03, X04, X05): the middleware
around a tiny app under uvicorn, tokens signed with the key of a real bastion AS (SQLite and
PostgreSQL), bound with ``cnf.jkt`` as the AS binds them (§6.1), proofs made with joserfc.

Who must not get in comes first: every refusal is 401 with the exact error and scheme, and the
app is never reached.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.oauth.dpop_nonce import DPoPNonces
from bastion.oauth.www_authenticate import parse_challenges
from bastion.resource import JwtVerifier, ResourceDPoP, ResourceServerMiddleware, ScopePolicy
from bastion.store.database import Database
from bastion.store.replays import DatabaseReplayGuard
from bastion.tokens import access_token
from bastion.tokens.keys import SigningKey
from tests.resource.apps import echo_app
from tests.resource.conftest import LiveAS, StartAS, signing_key_of
from tests.support.dpop import make_proof, new_key, public_jwk, thumbprint
from tests.support.live import free_port, serve

ALGS = "ES256 EdDSA RS256 PS256"
NONCE_SECRET = b"resource-nonce-secret-0123456789abcdef"


@dataclass
class Resource:
    """The protected app under uvicorn, the AS's signing key, and what reached the app."""

    url: str
    live: LiveAS
    key: SigningKey
    http: httpx.AsyncClient
    reached: list[str] = field(default_factory=list)

    @property
    def prm(self) -> str:
        return self.url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")

    def token(
        self,
        dpop_key: ec.EllipticCurvePrivateKey | None = None,
        *,
        scope: str = "mcp:tools",
        age: int = 0,
    ) -> str:
        """A token of the AS for this resource issued ``age`` seconds ago for 300 s, bound to
        ``dpop_key`` when given (§6.1)."""
        claims: dict[str, Any] = {}
        if dpop_key is not None:
            claims["cnf"] = {"jkt": thumbprint(dpop_key)}
        return access_token.issue(
            self.key,
            issuer=self.live.issuer,
            subject="svc",
            audience=self.url,
            client_id="svc",
            scope=scope,
            now=int(time.time()) - age,
            ttl=300,
            extra=claims,
        ).token

    async def dpop(
        self,
        token: str,
        proof: str | list[str] | None,
        *,
        method: str = "POST",
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """A request to the resource with ``Authorization: DPoP <token>`` and the proof(s)."""
        sent = [("Authorization", f"DPoP {token}")]
        proofs = [proof] if isinstance(proof, str) else (proof or [])
        sent += [("DPoP", p) for p in proofs]
        sent += list((headers or {}).items())
        body = {"jsonrpc": "2.0", "id": 1, "method": "initialize"} if json is None else json
        if method == "GET":
            return await self.http.get(self.url, headers=sent)
        return await self.http.post(self.url, json=body, headers=sent)


Start = Callable[..., AbstractAsyncContextManager[Resource]]


def counting(app: ASGIApp, reached: list[str]) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            reached.append(scope["path"])
        await app(scope, receive, send)

    return wrapped


@pytest.fixture
def start(start_as: StartAS) -> Start:
    """``async with start(dpop=ResourceDPoP(...), **middleware_options) as resource``."""

    @asynccontextmanager
    async def run(
        dpop: ResourceDPoP | Callable[[LiveAS], ResourceDPoP] | None = None, **options: Any
    ) -> AsyncIterator[Resource]:
        port = free_port()
        url = f"http://127.0.0.1:{port}/mcp"
        async with start_as(extra_resources=[url]) as live:
            reached: list[str] = []
            verifier = JwtVerifier(issuer=live.issuer, audience=url, jwks_uri=live.jwks_uri)
            app = ResourceServerMiddleware(
                counting(echo_app(), reached),
                resource=url,
                verifier=verifier,
                authorization_servers=[live.issuer],
                scopes_supported=["mcp:tools", "files:write"],
                policy=ScopePolicy(default=["mcp:tools"], tools={"delete_file": ["files:write"]}),
                dpop=dpop(live) if callable(dpop) else dpop,
                **options,
            )
            key = await signing_key_of(live.settings)
            async with (
                verifier,
                serve(app, port=port),
                httpx.AsyncClient(timeout=10, trust_env=False) as http,
            ):
                yield Resource(url, live, key, http, reached)

    return run


def challenge_of(response: httpx.Response, scheme: str) -> dict[str, str]:
    found = [
        c for c in parse_challenges(response.headers["www-authenticate"]) if c.scheme == scheme
    ]
    assert len(found) == 1, response.headers["www-authenticate"]
    return found[0].params


def refused(response: httpx.Response, error: str, scheme: str = "dpop") -> dict[str, str]:
    """A 401 with ``error`` in the body and in the one ``scheme`` challenge; its params."""
    assert response.status_code == 401, response.text
    assert response.json()["error"] == error
    [challenge] = parse_challenges(response.headers["www-authenticate"])
    assert challenge.scheme == scheme
    assert challenge.get("error") == error
    return challenge.params


# -- who must not get in ----------------------------------------------------------------------


async def test_rfc9449_7_1_dpop_scheme_without_a_proof_is_401_invalid_dpop_proof(
    start: Start,
) -> None:
    async with start() as rs:
        key = new_key()
        response = await rs.dpop(rs.token(key), None)
        params = refused(response, "invalid_dpop_proof")
    assert params["algs"] == ALGS
    assert params["resource_metadata"] == rs.prm
    assert "DPoP proof" in params["error_description"]
    assert rs.reached == []


async def test_rfc9449_4_3_proofs_that_do_not_fit_the_request_are_401_invalid_dpop_proof(
    start: Start,
) -> None:
    """§4.3: one DPoP header; htm and htu of this request; iat within the window; ath the hash
    of this token (§7.1); an alg the resource accepts; the signature of the jwk's key."""
    async with start(dpop=ResourceDPoP(algorithms=["ES256"])) as rs:
        key = new_key()
        token = rs.token(key)
        other_token = rs.token(key)
        now = int(time.time())
        bad = {
            "two proofs": [
                make_proof(key, "POST", rs.url, token=token),
                make_proof(key, "POST", rs.url, token=token),
            ],
            "htm": make_proof(key, "GET", rs.url, token=token),
            "htu": make_proof(key, "POST", rs.url + "/other", token=token),
            "htu of the as": make_proof(key, "POST", f"{rs.live.issuer}/mcp", token=token),
            "old": make_proof(key, "POST", rs.url, token=token, iat=now - 600),
            "future": make_proof(key, "POST", rs.url, token=token, iat=now + 600),
            "no ath": make_proof(key, "POST", rs.url),
            "ath of another token": make_proof(key, "POST", rs.url, token=other_token),
            "typ": make_proof(key, "POST", rs.url, token=token, typ="JWT"),
            "signed by another key": make_proof(
                new_key(), "POST", rs.url, token=token, jwk=public_jwk(key)
            ),
        }
        for why, proof in bad.items():
            response = await rs.dpop(token, proof)
            assert response.status_code == 401, why
            refused(response, "invalid_dpop_proof")
    assert rs.reached == []


async def test_rfc9449_4_3_htu_is_the_public_url_never_the_host_header(start: Start) -> None:
    """§4.3 point 9: the URI the proof must name is the resource's as configured; a client that
    sends another Host (and a proof for it) is refused."""
    async with start() as rs:
        key = new_key()
        token = rs.token(key)
        proof = make_proof(key, "POST", "http://evil.example/mcp", token=token)
        response = await rs.dpop(token, proof, headers={"Host": "evil.example"})
        refused(response, "invalid_dpop_proof")
        assert rs.reached == []
        proof = make_proof(key, "POST", rs.url, token=token)
        admitted = await rs.dpop(token, proof, headers={"Host": "evil.example"})
    assert admitted.status_code == 200, admitted.text


async def test_rfc9449_7_1_a_proof_of_another_key_is_401_invalid_token(start: Start) -> None:
    """§7.1 (example: "Invalid DPoP key binding"), §6: the proof's key must be the token's."""
    async with start() as rs:
        key, thief = new_key(), new_key()
        token = rs.token(key)
        response = await rs.dpop(token, make_proof(thief, "POST", rs.url, token=token))
        params = refused(response, "invalid_token")
    assert "invalid DPoP key binding" in params["error_description"]
    assert params["algs"] == ALGS
    assert rs.reached == []


async def test_rfc9449_7_1_an_unbound_token_with_the_dpop_scheme_is_401_invalid_token(
    start: Start,
) -> None:
    """A token sent with the DPoP scheme must be DPoP-bound (§7.1: the proof's key must match
    the key the token is bound to)."""
    async with start() as rs:
        key = new_key()
        token = rs.token()
        response = await rs.dpop(token, make_proof(key, "POST", rs.url, token=token))
        params = refused(response, "invalid_token")
    assert "not DPoP-bound" in params["error_description"]
    assert rs.reached == []


async def test_rfc9449_7_2_a_bound_token_sent_as_bearer_is_401_invalid_token(
    start: Start,
) -> None:
    """§7.2: a resource taking both schemes MUST reject a DPoP-bound token received as a
    bearer token; the challenge tells the client to use the DPoP scheme."""
    async with start() as rs:
        token = rs.token(new_key())
        response = await rs.http.post(
            rs.url, json={"jsonrpc": "2.0"}, headers={"Authorization": f"Bearer {token}"}
        )
        params = refused(response, "invalid_token")
    assert "DPoP-bound" in params["error_description"]
    assert params["algs"] == ALGS
    assert rs.reached == []


async def test_rfc9449_7_1_an_invalid_token_with_the_dpop_scheme_is_challenged_in_dpop(
    start: Start,
) -> None:
    async with start() as rs:
        key = new_key()
        token = rs.token(key, age=600)
        response = await rs.dpop(token, make_proof(key, "POST", rs.url, token=token))
        params = refused(response, "invalid_token")
    assert "expired" in params["error_description"]
    assert rs.reached == []


async def test_rfc9449_11_1_a_replayed_proof_is_refused_by_the_database_guard(
    start: Start,
) -> None:
    """§11.1: a proof is accepted once. The jti is kept in the database (table used_assertions)
    that every process of the resource shares; the second use is 401 invalid_dpop_proof."""
    databases: list[Database] = []

    def in_database(live: LiveAS) -> ResourceDPoP:
        settings = live.settings
        db = Database(settings.effective_database_url, schema=settings.database_schema)
        databases.append(db)
        return ResourceDPoP(replay=DatabaseReplayGuard(db, "dpop-resource"))

    try:
        async with start(dpop=in_database) as rs:
            key = new_key()
            token = rs.token(key)
            proof = make_proof(key, "POST", rs.url, token=token)
            first = await rs.dpop(token, proof)
            assert first.status_code == 200, first.text
            again = await rs.dpop(token, proof)
            params = refused(again, "invalid_dpop_proof")
            assert "used before" in params["error_description"]
            assert rs.reached == ["/mcp"]
    finally:
        for db in databases:
            await db.dispose()


async def test_rfc9449_11_1_a_replayed_proof_is_refused_in_process(start: Start) -> None:
    async with start() as rs:
        key = new_key()
        token = rs.token(key)
        proof = make_proof(key, "POST", rs.url, token=token)
        assert (await rs.dpop(token, proof)).status_code == 200
        refused(await rs.dpop(token, proof), "invalid_dpop_proof")
    assert rs.reached == ["/mcp"]


async def test_rfc9449_9_a_proof_without_the_resources_nonce_is_401_use_dpop_nonce(
    start: Start,
) -> None:
    """§9: a resource that demands nonces answers a proof without one (or with one it did not
    make) with 401 DPoP error="use_dpop_nonce" and the nonce to use in DPoP-Nonce; the retry
    with it is admitted, and the answer carries the current nonce (§8.2)."""
    nonces = DPoPNonces(NONCE_SECRET)
    async with start(dpop=ResourceDPoP(nonces=nonces)) as rs:
        key = new_key()
        token = rs.token(key)
        response = await rs.dpop(token, make_proof(key, "POST", rs.url, token=token))
        refused(response, "use_dpop_nonce")
        nonce = response.headers["dpop-nonce"]
        assert nonces.accepts(nonce, int(time.time()))
        foreign = DPoPNonces(b"another-resource-secret-0123456789ab").current(int(time.time()))
        stale = await rs.dpop(token, make_proof(key, "POST", rs.url, token=token, nonce=foreign))
        refused(stale, "use_dpop_nonce")
        assert rs.reached == []
        retry = await rs.dpop(token, make_proof(key, "POST", rs.url, token=token, nonce=nonce))
    assert retry.status_code == 200, retry.text
    assert retry.headers["dpop-nonce"] == nonces.current(int(time.time()))
    assert rs.reached == ["/mcp"]


async def test_x05_require_dpop_refuses_bearer_tokens_even_unbound(start: Start) -> None:
    """require_dpop: a Bearer token is refused like no token (RFC 6750 §3.1: an unsupported
    scheme gets no error code), with the DPoP challenge only; the metadata says
    dpop_bound_access_tokens_required (RFC 9728 §2)."""
    async with start(dpop=ResourceDPoP(required=True)) as rs:
        token = rs.token()
        response = await rs.http.get(rs.url, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
        [challenge] = parse_challenges(response.headers["www-authenticate"])
        assert challenge.scheme == "dpop"
        assert challenge.params == {
            "resource_metadata": rs.prm,
            "scope": "mcp:tools",
            "algs": ALGS,
        }
        assert rs.reached == []
        metadata = (await rs.http.get(rs.prm)).json()
        key = new_key()
        token = rs.token(key)
        admitted = await rs.dpop(token, make_proof(key, "GET", rs.url, token=token), method="GET")
    assert metadata["dpop_bound_access_tokens_required"] is True
    assert metadata["dpop_signing_alg_values_supported"] == ALGS.split()
    assert admitted.status_code == 200


# -- challenges -------------------------------------------------------------------------------


async def test_x05_rfc9449_7_2_a_request_without_a_token_gets_a_bearer_and_a_dpop_challenge(
    start: Start,
) -> None:
    """§7.2 (and RFC 9110 §11.6.1): both schemes are offered, each with resource_metadata
    (RFC 9728 §5.1) and the scope; the DPoP one lists the algorithms (§7.1 algs)."""
    async with start() as rs:
        response = await rs.http.post(rs.url, json={"jsonrpc": "2.0"})
    assert response.status_code == 401
    bearer, dpop = parse_challenges(response.headers["www-authenticate"])
    assert (bearer.scheme, bearer.params) == (
        "bearer",
        {"resource_metadata": rs.prm, "scope": "mcp:tools"},
    )
    assert (dpop.scheme, dpop.params) == (
        "dpop",
        {"resource_metadata": rs.prm, "scope": "mcp:tools", "algs": ALGS},
    )


async def test_x05_insufficient_scope_with_the_dpop_scheme_is_a_dpop_challenge(
    start: Start,
) -> None:
    """RFC 6750 §3.1's insufficient_scope, in the scheme the token came with (RFC 9449 §7.1)."""
    async with start() as rs:
        key = new_key()
        token = rs.token(key)
        call = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "delete_file"},
        }
        proof = make_proof(key, "POST", rs.url, token=token)
        response = await rs.dpop(token, proof, json=call)
    assert response.status_code == 403
    params = challenge_of(response, "dpop")
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "files:write mcp:tools"
    assert rs.reached == []


# -- who may ----------------------------------------------------------------------------------


async def test_x03_a_bound_token_with_its_proof_is_admitted(start: Start) -> None:
    """§7.1: Authorization: DPoP <token> with a fresh proof of the bound key, for this method
    and URI, with ath: admitted, the principal carrying the jkt; a new proof per request."""
    async with start() as rs:
        key = new_key()
        token = rs.token(key)
        for _ in range(2):
            response = await rs.dpop(token, make_proof(key, "POST", rs.url, token=token))
            assert response.status_code == 200, response.text
            assert response.json()["subject"] == "svc"
            assert "dpop-nonce" not in response.headers
        bearer = await rs.http.post(
            rs.url, json={"jsonrpc": "2.0"}, headers={"Authorization": f"Bearer {rs.token()}"}
        )
    assert bearer.status_code == 200
    assert rs.reached == ["/mcp", "/mcp", "/mcp"]


async def test_x03_public_url_names_the_uri_behind_a_prefix_stripping_proxy(
    start: Start,
) -> None:
    """A resource served at /mcp, addressed by clients as <origin>/prefix/mcp (a proxy strips
    /prefix): proofs name the public URI."""
    port = free_port()
    public = f"http://127.0.0.1:{port}/prefix"
    async with start(public_url=public) as rs:
        key = new_key()
        token = rs.token(key)
        wrong = await rs.dpop(token, make_proof(key, "POST", rs.url, token=token))
        refused(wrong, "invalid_dpop_proof")
        right = await rs.dpop(token, make_proof(key, "POST", f"{public}/mcp", token=token))
    assert right.status_code == 200, right.text
