"""JWT access-token verification: RFC 9068 §4 (validation steps), RFC 8725 §3.1-§3.2 (algorithm
allow-list, no "none", no HMAC with a public key), RFC 8707 §2 and MCP "Token Handling" (the
audience must be this resource: checklist R04), RFC 7517 §5 (JWKS, key rotation).

Tokens come from a real bastion AS under uvicorn (client_credentials grant); bad tokens are
forged with the AS's own signing key (read from its database) or with keys the test holds.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pytest
from joserfc import jws, jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from bastion.authserver import admin
from bastion.oauth.errors import InvalidToken, TemporarilyUnavailable
from bastion.resource import JwtVerifier, Principal
from bastion.tokens.keys import SigningKey
from tests.resource.conftest import (
    ForeignAS,
    LiveAS,
    MovableClock,
    StartAS,
    get_token,
    header_of,
    hmac_signed,
    service_client,
    signing_key_of,
    unsigned,
)
from tests.support.live import free_port

RESOURCE = "https://mcp.example.com/mcp"


def verifier_for(live: LiveAS, **kwargs: Any) -> JwtVerifier:
    options: dict[str, Any] = {
        "issuer": live.issuer,
        "audience": live.resource,
        "jwks_uri": live.jwks_uri,
        "clock": live.clock,
    }
    options.update(kwargs)
    return JwtVerifier(**options)


async def issued(live: LiveAS, *, resource: str | None = None, scope: str = "mcp:tools") -> str:
    client = await service_client(live.settings)
    body = await get_token(live.issuer, client, resource=resource or live.resource, scope=scope)
    token: str = body["access_token"]
    return token


def forge(key: SigningKey, claims: dict[str, Any], **header: Any) -> str:
    """A token signed with the AS's real key but claims (and header) of the test's choosing."""
    head = {"alg": key.alg, "kid": key.kid, "typ": "at+jwt", **header}
    head = {k: v for k, v in head.items() if v is not None}
    # jws rather than jwt.encode, which would add typ JWT when the test wants none.
    return jws.serialize_compact(head, json.dumps(claims), key.key, algorithms=[key.alg])


def good_claims(live: LiveAS, **extra: Any) -> dict[str, Any]:
    now = live.clock()
    claims: dict[str, Any] = {
        "iss": live.issuer,
        "sub": "svc",
        "aud": live.resource,
        "client_id": "svc",
        "iat": now,
        "exp": now + 300,
        "jti": secrets.token_hex(8),
        "scope": "mcp:tools",
    }
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


async def refused(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify(token)
    assert caught.value.error == "invalid_token"
    assert caught.value.status_code == 401
    return caught.value.description


# -- tokens of the bastion AS ----------------------------------------------------------------------


async def test_r04_token_from_the_bastion_as_is_accepted(bastion_as: LiveAS) -> None:
    """RFC 9068 §4: a client_credentials token for this resource verifies; the principal carries
    sub, client_id, scopes, jti and exp (RFC 9068 §2.2)."""
    client = await service_client(bastion_as.settings)
    body = await get_token(
        bastion_as.issuer, client, resource=bastion_as.resource, scope="mcp:tools files:write"
    )
    async with verifier_for(bastion_as) as verifier:
        principal = await verifier.verify(body["access_token"])
    assert isinstance(principal, Principal)
    assert principal.subject == client.client_id
    assert principal.client_id == client.client_id
    assert principal.scopes == frozenset({"mcp:tools", "files:write"})
    assert principal.claims["iss"] == bastion_as.issuer
    assert principal.token_id == principal.claims["jti"]
    assert principal.expires_at == principal.claims["exp"]


async def test_verified_tokens_are_cached_without_a_second_signature_check(
    bastion_as: LiveAS,
) -> None:
    """The hot path: a token seen before costs a hash lookup, not a signature verification."""
    token = await issued(bastion_as)
    async with verifier_for(bastion_as) as verifier:
        first = await verifier.verify(token)
        for _ in range(5):
            assert await verifier.verify(token) is first
        assert verifier.signature_checks == 1
        assert verifier.jwks_fetches == 1


async def test_cache_entry_never_outlives_the_token_exp(bastion_as: LiveAS) -> None:
    """A cached token is checked again from its exp on, and refused once exp + leeway passed
    (RFC 7519 §4.1.4)."""
    token = await issued(bastion_as)
    async with verifier_for(bastion_as, leeway=30) as verifier:
        principal = await verifier.verify(token)
        bastion_as.clock.advance(principal.expires_at - bastion_as.clock() - 1)
        await verifier.verify(token)
        assert verifier.signature_checks == 1
        bastion_as.clock.advance(1)  # now == exp: no longer served from the cache
        await verifier.verify(token)  # still inside the leeway
        assert verifier.signature_checks == 2
        bastion_as.clock.advance(30)
        assert (await refused(verifier, token)).startswith("token expired at")


async def test_r04_token_for_another_resource_of_the_same_as_is_refused(
    bastion_as: LiveAS,
) -> None:
    """RFC 8707 §2, MCP: a token the AS issued for another server must not be accepted here."""
    token = await issued(bastion_as, resource=bastion_as.other_resource)
    async with verifier_for(bastion_as) as verifier:
        description = await refused(verifier, token)
    assert description == (
        f"wrong audience: expected '{bastion_as.resource}', got '{bastion_as.other_resource}'"
    )


async def test_r04_audience_is_compared_canonically(bastion_as: LiveAS) -> None:
    """MCP canonical URI: uppercase scheme/host and a trailing slash name the same resource."""
    key = await signing_key_of(bastion_as.settings)
    upper = bastion_as.resource.replace("http://", "HTTP://") + "/"
    token = forge(key, good_claims(bastion_as, aud=[upper, "https://elsewhere.example"]))
    async with verifier_for(bastion_as, audience=bastion_as.resource + "/") as verifier:
        assert (await verifier.verify(token)).subject == "svc"


async def test_wrong_issuer_is_refused(bastion_as: LiveAS) -> None:
    """RFC 9068 §4 step 3: iss must exactly match the issuer (no trailing-slash leniency)."""
    key = await signing_key_of(bastion_as.settings)
    async with verifier_for(bastion_as) as verifier:
        for iss in (bastion_as.issuer + "/", "https://evil.example", None):
            description = await refused(verifier, forge(key, good_claims(bastion_as, iss=iss)))
            assert description.startswith(f"wrong issuer: expected '{bastion_as.issuer}', got ")


async def test_expired_token_is_refused_after_the_leeway(bastion_as: LiveAS) -> None:
    """RFC 7519 §4.1.4 with a small clock-skew leeway."""
    key = await signing_key_of(bastion_as.settings)
    now = bastion_as.clock()
    # The verifier's clock is frozen at `now`: the boundary must not move with the wall clock.
    async with verifier_for(bastion_as, leeway=30, clock=lambda: now) as verifier:
        assert await verifier.verify(forge(key, good_claims(bastion_as, exp=now - 29)))
        description = await refused(verifier, forge(key, good_claims(bastion_as, exp=now - 30)))
        assert description == f"token expired at {now - 30} (now {now})"
        assert "no exp" in await refused(verifier, forge(key, good_claims(bastion_as, exp=None)))


async def test_token_not_yet_valid_or_issued_in_the_future_is_refused(bastion_as: LiveAS) -> None:
    """RFC 7519 §4.1.5 nbf, §4.1.6 iat, beyond the leeway."""
    key = await signing_key_of(bastion_as.settings)
    later = bastion_as.clock() + 120
    async with verifier_for(bastion_as) as verifier:
        nbf = await refused(verifier, forge(key, good_claims(bastion_as, nbf=later)))
        assert nbf.startswith(f"token is not valid before {later}")
        iat = await refused(verifier, forge(key, good_claims(bastion_as, iat=later)))
        assert iat.startswith(f"token was issued in the future ({later}")


async def test_wrong_typ_is_refused_and_application_at_jwt_accepted(bastion_as: LiveAS) -> None:
    """RFC 9068 §4: typ must be at+jwt or application/at+jwt, so an ID token (typ JWT) signed by
    the same key is not mistaken for an access token."""
    key = await signing_key_of(bastion_as.settings)
    claims = good_claims(bastion_as)
    async with verifier_for(bastion_as) as verifier:
        assert await verifier.verify(forge(key, claims, typ="application/AT+JWT"))
        assert await refused(verifier, forge(key, claims, typ="JWT")) == (
            "wrong typ: expected at+jwt (RFC 9068 section 4), got 'JWT'"
        )
        assert "got None" in await refused(verifier, forge(key, claims, typ=None))
    async with verifier_for(bastion_as, require_typ=False) as lenient:
        assert await lenient.verify(forge(key, claims, typ="JWT"))


async def test_alg_none_is_never_accepted(bastion_as: LiveAS) -> None:
    """RFC 8725 §3.2: an unsigned token naming a real kid is refused."""
    key = await signing_key_of(bastion_as.settings)
    async with verifier_for(bastion_as) as verifier:
        for alg in ("none", "None", "NONE"):
            token = unsigned({"alg": alg, "kid": key.kid, "typ": "at+jwt"}, good_claims(bastion_as))
            assert "is never accepted" in await refused(verifier, token)
        assert verifier.signature_checks == 0


async def test_hmac_signed_with_the_as_public_key_is_refused(bastion_as: LiveAS) -> None:
    """RFC 8725 §2.1 algorithm confusion: HS256 keyed with the published public key (as JWK JSON
    or PEM) is refused before any key is used."""
    key = await signing_key_of(bastion_as.settings)
    pem = key.key.as_pem(private=False)
    header = {"alg": "HS256", "kid": key.kid, "typ": "at+jwt"}
    async with verifier_for(bastion_as) as verifier:
        for secret in (pem, json.dumps(key.public_jwk).encode()):
            token = hmac_signed(secret, header, good_claims(bastion_as))
            assert (await refused(verifier, token)).startswith("alg 'HS256' is not allowed")
        assert verifier.signature_checks == 0


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512", "XS256"])
def test_verifier_cannot_be_configured_with_none_or_hmac(alg: str) -> None:
    """RFC 8725 §3.1: the allow-list holds asymmetric algorithms only."""
    with pytest.raises(ValueError, match="never none or HMAC"):
        JwtVerifier(
            issuer="https://as.example.com",
            audience=RESOURCE,
            jwks_uri="https://as.example.com/jwks",
            algorithms=["ES256", alg],
        )


async def test_bad_signature_is_refused(bastion_as: LiveAS) -> None:
    """RFC 7515 §5.2: a token whose payload was altered no longer verifies."""
    token = await issued(bastion_as)
    head, _, signature = token.split(".")
    key = await signing_key_of(bastion_as.settings)
    other = forge(key, good_claims(bastion_as, scope="mcp:tools files:write")).split(".")[1]
    async with verifier_for(bastion_as) as verifier:
        description = await refused(verifier, f"{head}.{other}.{signature}")
    assert description == f"bad signature: the token does not verify with key '{key.kid}'"


async def test_token_without_sub_or_with_a_cnf_other_than_jkt_is_refused(
    bastion_as: LiveAS,
) -> None:
    """RFC 9068 §2.2 requires sub; a token bound by a confirmation method the resource cannot
    check (RFC 8705 §3 x5t#S256) cannot be used as a plain bearer token. A DPoP-bound one
    (cnf.jkt, RFC 9449 §6.1) is verified, its jkt in the principal, for the middleware to check
    the proof (RFC 9449 §7)."""
    key = await signing_key_of(bastion_as.settings)
    jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    async with verifier_for(bastion_as) as verifier:
        assert "no sub" in await refused(verifier, forge(key, good_claims(bastion_as, sub=None)))
        for cnf in ({"x5t#S256": "abc"}, {"jkt": jkt, "x5t#S256": "abc"}, {"jkt": 7}, "x"):
            claims = good_claims(bastion_as, cnf=cnf)
            assert "sender-constrained" in await refused(verifier, forge(key, claims))
        principal = await verifier.verify(forge(key, good_claims(bastion_as, cnf={"jkt": jkt})))
    assert principal.jkt == jkt


@pytest.mark.parametrize(
    ("token", "description"),
    [
        ("abc", "not a JWT (a JWS compact serialization has three parts)"),
        ("a.b.c.d.e", "encrypted (JWE) access tokens are not supported"),
        ("!!.e30.x", "malformed JWT: the header is not base64url JSON"),
        ("W10.e30.x", "malformed JWT: the header is not a JSON object"),
        ("x" * 17000, "token is longer than 16384 characters"),
    ],
)
async def test_malformed_tokens_are_refused(
    foreign_as: ForeignAS, token: str, description: str
) -> None:
    """Garbage is an invalid token (RFC 6750 §3.1), never an exception of another kind."""
    async with foreign_as.verifier(RESOURCE) as verifier:
        assert await refused(verifier, token) == description


# -- keys: unknown kid, rotation, rate limit ------------------------------------------------------


async def test_key_rotation_at_the_as_never_fails_a_request(start_as: StartAS) -> None:
    """RFC 7517 §5 with rotation: after `bastion keys rotate --now`, tokens signed with the new
    key verify at once (the unknown kid triggers one JWKS refetch), and tokens of the old key
    keep verifying, all in the same burst of concurrent requests."""
    async with start_as() as live:
        client = await service_client(live.settings)
        verifier = verifier_for(live)
        old = (await get_token(live.issuer, client, resource=live.resource))["access_token"]
        await verifier.verify(old)
        new_kid = await admin.rotate_keys(live.settings, now=True)
        live.clock.advance(31)  # the AS reloads its key set every 30 s
        fresh = [
            (await get_token(live.issuer, client, resource=live.resource))["access_token"]
            for _ in range(3)
        ]
        assert {header_of(t)["kid"] for t in fresh} == {new_kid}
        assert header_of(old)["kid"] != new_kid
        results = await asyncio.gather(*(verifier.verify(t) for t in [*fresh, old, *fresh]))
        assert all(p.subject == client.client_id for p in results)
        assert verifier.jwks_fetches == 2  # the first load and one refetch for the new kid
        await verifier.aclose()


async def test_unknown_kid_refetches_are_coalesced_and_rate_limited(
    foreign_as: ForeignAS,
) -> None:
    """A flood of tokens with random kids costs the AS one JWKS request per
    jwks_refresh_min_interval, however many arrive at once; a rotated key published after the
    interval is picked up by the next unknown kid."""
    clock = MovableClock()
    verifier = foreign_as.verifier(RESOURCE, clock=clock, jwks_refresh_min_interval=30)
    stranger = ECKey.generate_key("P-256", private=True)
    flood = [
        foreign_as.sign(foreign_as.claims(RESOURCE, now=clock()), kid=f"random-{i}", key=stranger)
        for i in range(50)
    ]
    outcomes = await asyncio.gather(*(verifier.verify(t) for t in flood), return_exceptions=True)
    assert all(isinstance(o, InvalidToken) for o in outcomes)
    assert str(outcomes[0]).startswith("unknown key: kid 'random-")
    assert len(foreign_as.hits) == 2  # first load + one refetch, not 50
    assert verifier.signature_checks == 0
    # The AS rotates in a new key; within the interval the verifier does not ask again...
    new = ECKey.generate_key("P-256", parameters={"kid": "k2"}, private=True)
    foreign_as.keys["k2"] = new
    foreign_as.jwks["keys"].append(new.as_dict(private=False))
    rotated = foreign_as.sign(foreign_as.claims(RESOURCE, now=clock()), kid="k2")
    await refused(verifier, rotated)
    assert len(foreign_as.hits) == 2
    # ...and once it has passed, the unknown kid is fetched and the token accepted.
    clock.advance(30)
    assert (await verifier.verify(rotated)).subject == "alice"
    assert len(foreign_as.hits) == 3


async def test_first_use_loads_the_jwks_once_for_concurrent_requests(
    foreign_as: ForeignAS,
) -> None:
    """Lazily fetched, and concurrent first requests share one fetch."""
    verifier = foreign_as.verifier(RESOURCE)
    assert foreign_as.hits == []
    tokens = [foreign_as.sign(foreign_as.claims(RESOURCE)) for _ in range(20)]
    results = await asyncio.gather(*(verifier.verify(t) for t in tokens))
    assert len(results) == 20
    assert len(foreign_as.hits) == 1


async def test_jwks_is_refreshed_after_max_age_and_kept_when_refresh_fails(
    foreign_as: ForeignAS,
) -> None:
    """Cached keys are refreshed after jwks_max_age; if the AS then serves garbage the stale keys
    stay in use (availability), and the refresh is retried after the minimum interval only."""
    clock = MovableClock()
    verifier = foreign_as.verifier(
        RESOURCE, clock=clock, jwks_max_age=300, jwks_refresh_min_interval=30, cache_size=0
    )
    await verifier.verify(foreign_as.sign(foreign_as.claims(RESOURCE, now=clock())))
    clock.advance(300)
    await verifier.verify(foreign_as.sign(foreign_as.claims(RESOURCE, now=clock())))
    assert len(foreign_as.hits) == 2
    keys = foreign_as.jwks.pop("keys")
    clock.advance(300)
    await verifier.verify(
        foreign_as.sign(foreign_as.claims(RESOURCE, now=clock()))
    )  # stale keys still work
    assert len(foreign_as.hits) == 3
    await verifier.verify(foreign_as.sign(foreign_as.claims(RESOURCE, now=clock())))
    assert len(foreign_as.hits) == 3  # no retry on every request
    foreign_as.jwks["keys"] = keys
    clock.advance(30)
    await verifier.verify(foreign_as.sign(foreign_as.claims(RESOURCE, now=clock())))
    assert len(foreign_as.hits) == 4


async def test_unreachable_jwks_is_unavailable_not_an_invalid_token() -> None:
    """If the keys cannot be fetched the token is not known to be bad: 503, not 401, so clients
    do not throw away good tokens; retries are spaced, not one fetch per request."""
    port = free_port()
    verifier = JwtVerifier(
        issuer="https://as.example.com", audience=RESOURCE, jwks_uri=f"http://127.0.0.1:{port}/jwks"
    )
    token = jwt.encode(
        {"alg": "ES256", "kid": "k", "typ": "at+jwt"},
        {"sub": "x"},
        ECKey.generate_key("P-256", private=True),
        algorithms=["ES256"],
    )
    for _ in range(3):
        with pytest.raises(TemporarilyUnavailable) as caught:
            await verifier.verify(token)
        assert caught.value.status_code == 503
    assert verifier.jwks_fetches == 1
    await verifier.aclose()


# -- tokens of any standards-following AS ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kid", "alg"), [("k1", "ES256"), ("r1", "RS256"), ("r1", "PS256"), ("e1", "Ed25519")]
)
async def test_rfc9068_token_of_another_as_is_accepted(
    foreign_as: ForeignAS, kid: str, alg: str
) -> None:
    """RFC 9068 §2: typ application/at+jwt, aud as an array, scope as a string; any of the default
    algorithms (the way node-oidc-provider, Keycloak or Auth0 issue them)."""
    claims = foreign_as.claims(["https://api.example.com", RESOURCE], scope="mcp:tools files:read")
    token = foreign_as.sign(claims, kid=kid, alg=alg, typ="application/at+jwt")
    async with foreign_as.verifier(RESOURCE) as verifier:
        principal = await verifier.verify(token)
    assert principal.subject == "alice"
    assert principal.client_id == "client-1"
    assert principal.scopes == frozenset({"mcp:tools", "files:read"})


async def test_scp_claim_and_azp_are_understood(foreign_as: ForeignAS) -> None:
    """Scopes from scp (a list, or Entra ID's space-separated string) when there is no scope
    claim; azp names the client when client_id is absent."""
    verifier = foreign_as.verifier(RESOURCE)
    for scp in (["a", "b"], "a b"):
        claims = foreign_as.claims(RESOURCE, scope=None, client_id=None, scp=scp, azp="app-9")
        principal = await verifier.verify(foreign_as.sign(claims))
        assert principal.scopes == frozenset({"a", "b"})
        assert principal.client_id == "app-9"


async def test_key_type_must_fit_the_algorithm(foreign_as: ForeignAS) -> None:
    """RFC 8725 §3.1: a kid naming an RSA key cannot verify an ES256 header, and a JWK restricted
    to one alg cannot verify another."""
    async with foreign_as.verifier(RESOURCE) as verifier:
        token = foreign_as.sign(
            foreign_as.claims(RESOURCE), kid="r1", alg="ES256", key=foreign_as.keys["k1"]
        )
        assert (await refused(verifier, token)).startswith("key 'r1' (RSA) cannot verify alg ES256")
    foreign_as.jwks["keys"][1]["alg"] = "RS256"  # r1 is now published for RS256 only
    async with foreign_as.verifier(RESOURCE) as verifier:
        ps = foreign_as.sign(foreign_as.claims(RESOURCE), kid="r1", alg="PS256")
        assert "cannot verify alg PS256" in await refused(verifier, ps)


async def test_symmetric_and_encryption_keys_in_the_jwks_are_never_used(
    foreign_as: ForeignAS,
) -> None:
    """Only public signature keys verify: an "oct" key or a "use": "enc" key under a kid is
    ignored, so the token's kid is unknown."""
    rsa = RSAKey.generate_key(2048, parameters={"kid": "enc1"}, private=True)
    foreign_as.jwks["keys"] += [
        {"kty": "oct", "kid": "sym1", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"},
        {**rsa.as_dict(private=False), "use": "enc"},
    ]
    async with foreign_as.verifier(RESOURCE) as verifier:
        enc = foreign_as.sign(foreign_as.claims(RESOURCE), kid="enc1", alg="RS256", key=rsa)
        assert await refused(verifier, enc) == "unknown key: kid 'enc1' is not in the AS's JWKS"
        hs = hmac_signed(
            b"secret-secret-secret-secret",
            {"alg": "ES256", "kid": "sym1", "typ": "at+jwt"},
            foreign_as.claims(RESOURCE),
        )
        assert await refused(verifier, hs) == "unknown key: kid 'sym1' is not in the AS's JWKS"


async def test_token_without_kid_is_checked_against_the_keys_that_fit(
    foreign_as: ForeignAS,
) -> None:
    """RFC 7515 §4.1.4: kid is optional; then every JWKS key fitting alg is tried."""
    async with foreign_as.verifier(RESOURCE) as verifier:
        token = foreign_as.sign(
            foreign_as.claims(RESOURCE), kid="e1", alg="Ed25519", header={"kid": None}
        )
        assert "kid" not in header_of(token)
        assert (await verifier.verify(token)).subject == "alice"
        assert verifier.signature_checks == 1


# -- the JOSE rules shared with federation and client authentication (bastion.oauth.jose) -----


@pytest.mark.parametrize(("published", "alg"), [("EdDSA", "Ed25519"), ("Ed25519", "EdDSA")])
async def test_a_jwk_published_under_either_eddsa_name_verifies_the_other(
    foreign_as: ForeignAS, published: str, alg: str
) -> None:
    """RFC 9864 §2, RFC 7517 §4.4: "EdDSA" with an Ed25519 key is the algorithm named Ed25519,
    so a JWK whose own alg is one name verifies tokens under the other (it used to be refused
    as a key that "cannot verify" the alg)."""
    foreign_as.jwks["keys"][2]["alg"] = published  # e1, the Ed25519 key
    async with foreign_as.verifier(RESOURCE) as verifier:
        token = foreign_as.sign(foreign_as.claims(RESOURCE), kid="e1", alg=alg)
        assert (await verifier.verify(token)).subject == "alice"


async def test_an_ed448_key_verifies_under_its_own_name_and_eddsa(foreign_as: ForeignAS) -> None:
    """RFC 9864 §2, RFC 8037 §3.1: Ed448 tokens verify when the operator allows Ed448 or
    EdDSA; an Ed25519 key never verifies an Ed448 header."""
    ed448 = OKPKey.generate_key("Ed448", parameters={"kid": "x1"}, private=True)
    foreign_as.keys["x1"] = ed448
    foreign_as.jwks["keys"].append(ed448.as_dict(private=False))
    async with foreign_as.verifier(RESOURCE, algorithms=["Ed448", "EdDSA"]) as verifier:
        for alg in ("Ed448", "EdDSA"):
            token = foreign_as.sign(foreign_as.claims(RESOURCE), kid="x1", alg=alg)
            assert (await verifier.verify(token)).subject == "alice"
        wrong = foreign_as.sign(foreign_as.claims(RESOURCE), kid="e1", alg="Ed448", key=ed448)
        assert "cannot verify alg Ed448" in await refused(verifier, wrong)


async def test_a_key_whose_key_ops_leave_out_verify_is_never_used(foreign_as: ForeignAS) -> None:
    """RFC 7517 §4.3: a JWK with key_ops that do not include "verify" is skipped, so its kid is
    unknown."""
    foreign_as.jwks["keys"][0]["key_ops"] = ["encrypt"]  # k1
    async with foreign_as.verifier(RESOURCE) as verifier:
        token = foreign_as.sign(foreign_as.claims(RESOURCE), kid="k1")
        assert await refused(verifier, token) == "unknown key: kid 'k1' is not in the AS's JWKS"


async def test_keys_sharing_a_kid_each_verify_their_own_alg(foreign_as: ForeignAS) -> None:
    """RFC 7517 §4.5: keys of different types may share a kid; the one that fits the token's
    alg verifies it (the first key of that kid used to be the only one tried)."""
    twin = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
    foreign_as.jwks["keys"].append(twin.as_dict(private=False))
    async with foreign_as.verifier(RESOURCE) as verifier:
        es = foreign_as.sign(foreign_as.claims(RESOURCE), kid="k1", alg="ES256")
        rs = foreign_as.sign(foreign_as.claims(RESOURCE), kid="k1", alg="RS256", key=twin)
        assert (await verifier.verify(es)).subject == "alice"
        assert (await verifier.verify(rs)).subject == "alice"
