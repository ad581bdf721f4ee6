"""The client_credentials grant and client authentication at the token endpoint.

OAuth 2.1 §4.2 (client credentials grant) and §2.4 (client authentication), RFC 6749 §2.3.1
(client_secret_basic / client_secret_post), RFC 7523 §2.2 and §3 (private_key_jwt assertions),
RFC 9068 §2 (JWT access token profile), RFC 8707 §2 (resource).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import warnings
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

from bastion.authserver import admin
from bastion.config import Settings
from tests.authserver._tokens import (
    RESOURCE,
    Confidential,
    assert_error,
    assert_no_store,
    basic,
    confidential_client,
)
from tests.support.asgi import running
from tests.support.flow import REDIRECT_URI, register

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def cc(**extra: str) -> dict[str, str]:
    """A client_credentials token request body."""
    return {"grant_type": "client_credentials", "resource": RESOURCE, **extra}


@pytest.fixture
async def service(settings: Settings, app_client: httpx.AsyncClient) -> Confidential:
    """A confidential client registered for client_credentials with client_secret_basic."""
    return await confidential_client(settings)


def assert_token_response(response: httpx.Response, settings: Settings, scope: str) -> None:
    """RFC 6749 §4.4.3, §5.1: no refresh token for client_credentials."""
    assert response.status_code == 200, response.text
    assert_no_store(response)
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.tokens.access_token_ttl
    assert body["scope"] == scope


async def test_a01_client_secret_basic_gets_an_access_token(
    settings: Settings, app_client: httpx.AsyncClient, service: Confidential
) -> None:
    """OAuth 2.1 §4.2, RFC 6749 §2.3.1: HTTP Basic with client_id and client_secret."""
    response = await app_client.post(
        "/token", data=cc(scope="mcp:tools"), headers=service.authorization
    )
    assert_token_response(response, settings, "mcp:tools")


async def test_basic_credentials_are_form_urlencoded_before_base64(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    """RFC 6749 §2.3.1: client_id and secret are application/x-www-form-urlencoded, then joined
    with ':' and base64-encoded; an id holding a space and a colon must round-trip."""
    odd = await confidential_client(settings, client_id="a b:c")
    header = basic(odd.client_id, odd.secret)
    raw = base64.b64decode(header.split(" ", 1)[1]).decode()
    assert raw.startswith("a+b%3Ac:")
    response = await app_client.post(
        "/token", data=cc(scope="mcp:tools"), headers={"Authorization": header}
    )
    assert_token_response(response, settings, "mcp:tools")


async def test_client_secret_post_gets_an_access_token(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    """RFC 6749 §2.3.1: client_id and client_secret in the form body."""
    poster = await confidential_client(settings, auth_method="client_secret_post")
    response = await app_client.post(
        "/token",
        data=cc(scope="mcp:tools", client_id=poster.client_id, client_secret=poster.secret),
    )
    assert_token_response(response, settings, "mcp:tools")


async def test_registered_method_is_enforced(
    app_client: httpx.AsyncClient, service: Confidential
) -> None:
    """OAuth 2.1 §2.4: a client registered for client_secret_basic that posts its secret in the
    body is not authenticated -> 401 invalid_client."""
    response = await app_client.post(
        "/token", data=cc(client_id=service.client_id, client_secret=service.secret)
    )
    assert_error(response, 401, "invalid_client")


async def test_access_token_is_an_rfc9068_jwt_verified_against_the_jwks(
    settings: Settings, app_client: httpx.AsyncClient, service: Confidential
) -> None:
    """RFC 9068 §2.1, §2.2: header typ at+jwt and a kid published in /jwks; claims iss, sub (the
    client itself for client_credentials), aud (the resource), client_id, scope, iat, exp, jti."""
    response = await app_client.post(
        "/token", data=cc(scope="mcp:tools"), headers=service.authorization
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    jwks = (await app_client.get("/jwks")).json()
    token_obj = jwt.decode(token, KeySet.import_key_set(jwks))
    header = token_obj.header
    assert header["typ"] == "at+jwt"
    assert header["kid"] in {key["kid"] for key in jwks["keys"]}
    assert header["alg"] == settings.tokens.signing_alg
    claims = token_obj.claims
    assert claims["iss"] == settings.issuer
    assert claims["sub"] == service.client_id
    assert claims["aud"] == RESOURCE
    assert claims["client_id"] == service.client_id
    assert claims["scope"] == "mcp:tools"
    assert isinstance(claims["iat"], int)
    assert abs(claims["iat"] - int(time.time())) < 60
    assert claims["exp"] == claims["iat"] + settings.tokens.access_token_ttl
    assert isinstance(claims["jti"], str)
    assert len(claims["jti"]) >= 16


async def test_each_token_has_a_fresh_jti(
    app_client: httpx.AsyncClient, service: Confidential
) -> None:
    """RFC 9068 §2.2, RFC 7519 §4.1.7: jti is unique per token."""
    jtis = set()
    keys = KeySet.import_key_set((await app_client.get("/jwks")).json())
    for _ in range(3):
        response = await app_client.post("/token", data=cc(), headers=service.authorization)
        assert response.status_code == 200, response.text
        jtis.add(jwt.decode(response.json()["access_token"], keys).claims["jti"])
    assert len(jtis) == 3


async def test_public_client_is_unauthorized_client(app_client: httpx.AsyncClient) -> None:
    """OAuth 2.1 §4.2: the grant is for confidential clients only; a public client (auth method
    none) -> unauthorized_client."""
    public = await register(app_client)
    response = await app_client.post("/token", data=cc(client_id=public["client_id"]))
    assert_error(response, 400, "unauthorized_client")


async def test_client_without_the_grant_is_unauthorized_client(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    """RFC 6749 §5.2: an authenticated client not registered for client_credentials."""
    web = await confidential_client(
        settings,
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=[REDIRECT_URI],
    )
    response = await app_client.post("/token", data=cc(), headers=web.authorization)
    assert_error(response, 400, "unauthorized_client")


async def test_wrong_secret_is_401_invalid_client_with_www_authenticate(
    app_client: httpx.AsyncClient, service: Confidential
) -> None:
    """RFC 6749 §5.2: failed authentication through the Authorization header answers 401 with a
    WWW-Authenticate challenge for the scheme used."""
    headers = {"Authorization": basic(service.client_id, "wrong-" + service.secret)}
    response = await app_client.post("/token", data=cc(), headers=headers)
    assert_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic ")


async def test_unknown_client_is_401_invalid_client(app_client: httpx.AsyncClient) -> None:
    """RFC 6749 §5.2: an unknown client -> invalid_client."""
    headers = {"Authorization": basic("nobody", "secret")}
    response = await app_client.post("/token", data=cc(), headers=headers)
    assert_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic ")


async def test_two_authentication_methods_in_one_request_are_invalid_request(
    app_client: httpx.AsyncClient, service: Confidential
) -> None:
    """RFC 6749 §2.3: the client MUST NOT use more than one authentication method per request."""
    response = await app_client.post(
        "/token",
        data=cc(client_id=service.client_id, client_secret=service.secret),
        headers=service.authorization,
    )
    assert_error(response, 400, "invalid_request")


async def test_unknown_scope_is_invalid_scope(
    app_client: httpx.AsyncClient, service: Confidential
) -> None:
    """RFC 6749 §5.2: a scope the server does not know -> invalid_scope."""
    response = await app_client.post(
        "/token", data=cc(scope="mcp:tools admin:everything"), headers=service.authorization
    )
    assert_error(response, 400, "invalid_scope")


async def test_scope_outside_the_clients_registration_is_invalid_scope(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    """RFC 6749 §5.2: a known scope the client is not registered for -> invalid_scope."""
    narrow = await confidential_client(settings, scope="mcp:tools")
    response = await app_client.post(
        "/token", data=cc(scope="mcp:prompts"), headers=narrow.authorization
    )
    assert_error(response, 400, "invalid_scope")


async def test_unknown_resource_is_invalid_target(
    app_client: httpx.AsyncClient, service: Confidential
) -> None:
    """RFC 8707 §2: a resource the server does not serve -> invalid_target."""
    response = await app_client.post(
        "/token",
        data={"grant_type": "client_credentials", "resource": "https://elsewhere.example/mcp"},
        headers=service.authorization,
    )
    assert_error(response, 400, "invalid_target")


async def test_no_resource_without_a_default_resource_is_invalid_target(
    app_client: httpx.AsyncClient, service: Confidential
) -> None:
    """RFC 8707 §2, MCP: tokens are audience-restricted; with no resource and no configured
    default_resource the audience is unknown -> invalid_target."""
    response = await app_client.post(
        "/token", data={"grant_type": "client_credentials"}, headers=service.authorization
    )
    assert_error(response, 400, "invalid_target")


async def test_no_resource_uses_the_default_resource(
    make_settings: Callable[..., Settings],
) -> None:
    """With ``default_resource`` configured, a request without resource gets that audience."""
    settings = make_settings(default_resource=RESOURCE)
    async with running(settings) as client:
        service = await confidential_client(settings)
        response = await client.post(
            "/token", data={"grant_type": "client_credentials"}, headers=service.authorization
        )
        assert response.status_code == 200, response.text
        keys = KeySet.import_key_set((await client.get("/jwks")).json())
    assert jwt.decode(response.json()["access_token"], keys).claims["aud"] == RESOURCE


# private_key_jwt (RFC 7523) ---------------------------------------------------------------


class KeyClient:
    """A client registered (RFC 7591) with the public half of a key it holds (EC unless said)."""

    def __init__(
        self, client_id: str, key: ECKey | OKPKey | RSAKey, issuer: str, alg: str = "ES256"
    ) -> None:
        self.client_id = client_id
        self.key = key
        self.issuer = issuer
        self.alg = alg

    def assertion(self, *, lifetime: int = 60, drop: str | None = None, **overrides: Any) -> str:
        """An RFC 7523 §3 client assertion: iss = sub = client_id, aud = issuer, exp, jti.

        ``lifetime`` sets exp relative to now (negative: already expired); ``drop`` omits a claim.
        """
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.issuer,
            "iat": min(now, now + lifetime - 60),
            "exp": now + lifetime,
            "jti": secrets.token_urlsafe(16),
        }
        claims.update(overrides)
        if drop is not None:
            del claims[drop]
        header = {"alg": self.alg, "kid": self.key.kid}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)  # joserfc's note that EdDSA is older
            return jwt.encode(
                {k: v for k, v in header.items() if v is not None},
                claims,
                self.key,
                algorithms=[self.alg],
            )

    def form(self, assertion: str) -> dict[str, str]:
        return cc(client_assertion_type=ASSERTION_TYPE, client_assertion=assertion)


async def machine_with_keys(settings: Settings, jwks: dict[str, Any]) -> admin.NewClient:
    """A machine client an operator registered with the public keys of its private_key_jwt."""
    public = {"keys": [{k: v for k, v in key.items() if k != "d"} for key in jwks["keys"]]}
    return await admin.add_client(
        settings,
        client_id=None,
        name="Key client",
        redirect_uris=[],
        confidential=True,
        grant_types=["client_credentials"],
        scope=None,
        jwks=public,
        resources=["*"],
    )


@pytest.fixture
async def key_client(settings: Settings, app_client: httpx.AsyncClient) -> KeyClient:
    key = ECKey.generate_key("P-256", parameters={"kid": "k1", "alg": "ES256"}, private=True)
    public = key.as_dict(private=False)
    made = await machine_with_keys(settings, {"keys": [public]})
    assert made.secret is None
    return KeyClient(made.client.client_id, key, settings.issuer)


async def test_private_key_jwt_gets_an_access_token(
    settings: Settings, app_client: httpx.AsyncClient, key_client: KeyClient
) -> None:
    """RFC 7523 §2.2: client_assertion_type jwt-bearer and a signed assertion authenticate."""
    response = await app_client.post(
        "/token", data=key_client.form(key_client.assertion()) | {"scope": "mcp:tools"}
    )
    assert_token_response(response, settings, "mcp:tools")


@pytest.mark.parametrize("alg", ["Ed25519", "EdDSA"])
async def test_private_key_jwt_with_an_ed25519_key_under_either_name_is_accepted(
    settings: Settings, app_client: httpx.AsyncClient, alg: str
) -> None:
    """RFC 9864 §2: Ed25519 is the fully specified name of what RFC 8037 called EdDSA with an
    Ed25519 key; assertions under either name authenticate, and metadata lists both."""
    key = OKPKey.generate_key("Ed25519", parameters={"kid": "ed"}, private=True)
    reg = {
        "client_id": (await machine_with_keys(settings, {"keys": [key.as_dict()]})).client.client_id
    }
    now = int(time.time())
    claims = {
        "iss": reg["client_id"],
        "sub": reg["client_id"],
        "aud": settings.issuer,
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc's note that EdDSA is older
        assertion = jwt.encode({"alg": alg, "kid": "ed"}, claims, key, algorithms=[alg])
    response = await app_client.post(
        "/token", data=cc(client_assertion_type=ASSERTION_TYPE, client_assertion=assertion)
    )
    assert response.status_code == 200, response.text
    metadata = (await app_client.get("/.well-known/oauth-authorization-server")).json()
    assert {"Ed25519", "EdDSA"} <= set(metadata["token_endpoint_auth_signing_alg_values_supported"])


async def test_private_key_jwt_with_the_token_endpoint_as_audience_is_accepted(
    settings: Settings, app_client: httpx.AsyncClient, key_client: KeyClient
) -> None:
    """RFC 7523 §3: the token endpoint URL is an acceptable audience as well as the issuer."""
    assertion = key_client.assertion(aud=f"{settings.issuer}/token")
    response = await app_client.post("/token", data=key_client.form(assertion))
    assert response.status_code == 200, response.text


async def test_replayed_client_assertion_is_invalid_client(
    app_client: httpx.AsyncClient, key_client: KeyClient
) -> None:
    """RFC 7523 §3 (jti), RFC 9700 §2.2: an assertion is accepted once."""
    assertion = key_client.assertion()
    first = await app_client.post("/token", data=key_client.form(assertion))
    assert first.status_code == 200, first.text
    again = await app_client.post("/token", data=key_client.form(assertion))
    assert_error(again, 401, "invalid_client")


@pytest.mark.parametrize(
    "variation",
    [
        pytest.param({"aud": "https://other-as.example"}, id="wrong-aud"),
        pytest.param({"lifetime": -120}, id="expired"),
        pytest.param({"lifetime": 3600}, id="lives-too-long"),
        pytest.param({"drop": "jti"}, id="no-jti"),
        pytest.param({"drop": "exp"}, id="no-exp"),
        pytest.param({"iss": "someone-else"}, id="wrong-iss"),
        pytest.param({"sub": "someone-else"}, id="wrong-sub"),
    ],
)
async def test_bad_client_assertion_is_invalid_client(
    app_client: httpx.AsyncClient, key_client: KeyClient, variation: dict[str, Any]
) -> None:
    """RFC 7523 §3: aud must name this AS, exp must be present and not passed, iss = sub =
    client_id, jti present; otherwise the client is not authenticated -> 401 invalid_client."""
    assertion = key_client.assertion(**variation)
    data = key_client.form(assertion) | {"client_id": key_client.client_id}
    response = await app_client.post("/token", data=data)
    assert_error(response, 401, "invalid_client")


async def test_assertion_signed_by_another_key_is_invalid_client(
    app_client: httpx.AsyncClient, key_client: KeyClient
) -> None:
    """RFC 7523 §3: the signature must verify with the client's registered keys."""
    stranger = ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
    forged = KeyClient(key_client.client_id, stranger, key_client.issuer).assertion()
    response = await app_client.post("/token", data=key_client.form(forged))
    assert_error(response, 401, "invalid_client")


async def test_wrong_client_assertion_type_is_invalid_client(
    app_client: httpx.AsyncClient, key_client: KeyClient
) -> None:
    """RFC 7523 §2.2: client_assertion_type must be the jwt-bearer URN."""
    data = key_client.form(key_client.assertion())
    data["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"
    response = await app_client.post("/token", data=data)
    assert_error(response, 401, "invalid_client")


def _unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


async def test_unsigned_client_assertion_is_invalid_client(
    app_client: httpx.AsyncClient, key_client: KeyClient
) -> None:
    """RFC 7523 §3 item 9, RFC 8725 §3.1: an assertion with alg none is never accepted."""
    signed = key_client.assertion()
    claims = dict(jwt.decode(signed, key_client.key).claims)
    response = await app_client.post("/token", data=key_client.form(_unsigned(claims)))
    assert_error(response, 401, "invalid_client")


# The JOSE rules shared with the resource side and federation (bastion.oauth.jose) ---------------


async def registered(settings: Settings, key: ECKey | OKPKey | RSAKey, **members: Any) -> str:
    """A machine client registered with the public JWK of ``key`` (``members`` added to it)."""
    jwk = {**key.as_dict(private=False), **members}
    return (await machine_with_keys(settings, {"keys": [jwk]})).client.client_id


@pytest.mark.parametrize("alg", ["Ed448", "EdDSA"])
async def test_private_key_jwt_with_an_ed448_key_under_either_name_is_accepted(
    settings: Settings, app_client: httpx.AsyncClient, alg: str
) -> None:
    """RFC 9864 §2: Ed448 is the fully specified name of EdDSA with an Ed448 key; assertions
    under either name authenticate, and the metadata lists Ed448 (it was refused before)."""
    key = OKPKey.generate_key("Ed448", parameters={"kid": "ed448"}, private=True)
    client = KeyClient(await registered(settings, key), key, settings.issuer, alg)
    response = await app_client.post("/token", data=client.form(client.assertion()))
    assert response.status_code == 200, response.text
    metadata = (await app_client.get("/.well-known/oauth-authorization-server")).json()
    assert "Ed448" in metadata["token_endpoint_auth_signing_alg_values_supported"]


@pytest.mark.parametrize(
    "members",
    [
        pytest.param({"key_ops": ["encrypt"]}, id="key_ops-without-verify"),
        pytest.param({"use": "enc"}, id="use-enc"),
        pytest.param({"alg": "ES384"}, id="published-for-another-alg"),
    ],
)
async def test_a_registered_key_that_may_not_verify_is_never_used(
    settings: Settings, app_client: httpx.AsyncClient, members: dict[str, Any]
) -> None:
    """RFC 7517 §4.2 (use), §4.3 (key_ops), §4.4 (alg): a key the client published for another
    purpose does not authenticate it -> 401 invalid_client."""
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
    client = KeyClient(await registered(settings, key, **members), key, settings.issuer)
    response = await app_client.post("/token", data=client.form(client.assertion()))
    assert_error(response, 401, "invalid_client")


async def test_a_short_rsa_key_never_authenticates(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    """RFC 7518 §3.3: RSA keys of 2048 bits or more MUST be used; a 1024-bit key is skipped."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # the short key is the point
        key = RSAKey.generate_key(1024, parameters={"kid": "short"}, private=True)
        client = KeyClient(await registered(settings, key), key, settings.issuer, "RS256")
        assertion = client.assertion()
    response = await app_client.post("/token", data=client.form(assertion))
    assert_error(response, 401, "invalid_client")


async def test_an_assertion_before_its_nbf_is_invalid_client(
    app_client: httpx.AsyncClient, key_client: KeyClient
) -> None:
    """RFC 7523 §3 item 5: the JWT must not be accepted before its nbf (5 s of clock skew)."""
    early = key_client.assertion(nbf=int(time.time()) + 60)
    assert_error(
        await app_client.post("/token", data=key_client.form(early)), 401, "invalid_client"
    )
    skewed = key_client.assertion(nbf=int(time.time()) + 2)
    response = await app_client.post("/token", data=key_client.form(skewed))
    assert response.status_code == 200, response.text


async def test_an_assertion_without_kid_is_checked_against_every_registered_key(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    """RFC 7515 §4.1.4: kid is optional; then each registered key that fits the alg is tried
    (with two keys, a kid-less assertion used to be refused)."""
    keys = [ECKey.generate_key("P-256", parameters={"kid": k}, private=True) for k in "ab"]
    made = await machine_with_keys(settings, {"keys": [k.as_dict() for k in keys]})
    signer = ECKey.import_key(
        {k: v for k, v in keys[1].as_dict(private=True).items() if k != "kid"}
    )
    assert signer.kid is None
    client = KeyClient(made.client.client_id, signer, settings.issuer)
    response = await app_client.post("/token", data=client.form(client.assertion()))
    assert response.status_code == 200, response.text


async def test_a01_keys_and_assertions_that_must_not_authenticate_against_a_live_server(
    live_as: tuple[str, Settings],
) -> None:
    """The same refusals against the authorization server under uvicorn: a key published for
    another purpose (RFC 7517 §4.2, §4.3, §4.4), a 1024-bit RSA key (RFC 7518 §3.3), an
    assertion before its nbf (RFC 7523 §3) -> 401 invalid_client, and no token; the client's
    valid assertion is then accepted, so the refusals are about the key or the assertion."""
    issuer, settings = live_as
    form = {"grant_type": "client_credentials", "resource": f"{issuer}/mcp"}
    attempts: list[KeyClient] = []
    for members in ({"key_ops": ["encrypt"]}, {"use": "enc"}, {"alg": "ES384"}):
        key = ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
        attempts.append(KeyClient(await registered(settings, key, **members), key, issuer))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # the short key is the point
        short = RSAKey.generate_key(1024, parameters={"kid": "short"}, private=True)
        attempts.append(KeyClient(await registered(settings, short), short, issuer, "RS256"))
        assertions = [client.assertion() for client in attempts]
    good_key = ECKey.generate_key("P-256", parameters={"kid": "good"}, private=True)
    good = KeyClient(await registered(settings, good_key), good_key, issuer)
    attempts.append(good)
    assertions.append(good.assertion(nbf=int(time.time()) + 60))
    async with httpx.AsyncClient(base_url=issuer) as http:
        for client, assertion in zip(attempts, assertions, strict=True):
            response = await http.post("/token", data={**client.form(assertion), **form})
            assert_error(response, 401, "invalid_client")
            assert "access_token" not in response.text
        accepted = await http.post("/token", data={**good.form(good.assertion()), **form})
    assert accepted.status_code == 200, accepted.text
