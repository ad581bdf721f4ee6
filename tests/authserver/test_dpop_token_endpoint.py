"""DPoP at the token endpoint (RFC 9449; checklist X01, X02, X04), on SQLite and PostgreSQL.

Refusals first, with the exact error and status: a proof that fails a check of §4.3
(invalid_dpop_proof, §5), a replayed one (§11.1), a missing or stale nonce when the server
demands one (use_dpop_nonce with DPoP-Nonce, §8), a client registered with
``dpop_bound_access_tokens`` that sends none (§5.2), a public client's bound refresh token used
without a proof of its key (§5), a code bound with ``dpop_jkt`` redeemed with another key (§10).
Then who may: every grant answers ``token_type`` DPoP with ``cnf.jkt`` the proof key's RFC 7638
thumbprint (§5, §6.1), introspection says so (§6.2), the metadata lists the algorithms (§5.1).
Proofs are made with a real P-256 key (tests/support/dpop.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bastion.authserver import admin
from bastion.config import ResourceSettings, Settings, TokenExchangeRule
from bastion.config.dpop import DPoPSettings
from bastion.oauth.token_request import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE
from bastion.store.database import Database
from bastion.store.schema import auth_audit, token_families
from tests.authserver._tokens import (
    RESOURCE,
    Confidential,
    FakeClock,
    assert_error,
    assert_no_store,
    confidential_client,
    introspect,
    refresh,
)
from tests.support.asgi import running
from tests.support.dpop import make_proof, new_key, thumbprint
from tests.support.flow import REDIRECT_URI, add_user, authorize, exchange, register
from tests.support.jwt import claims_of

ISSUER = "http://localhost"
TOKEN_URL = f"{ISSUER}/token"
FILES = "http://localhost:9002/files"
RESOURCES = [
    ResourceSettings(uri=RESOURCE, name="demo", scopes=["mcp:tools", "files:read"]),
    ResourceSettings(uri=FILES, name="files", scopes=["files:read"]),
]
RULES = [TokenExchangeRule(client="mcp-server", source="demo", target=FILES, scopes=["files:read"])]


@dataclass
class World:
    """The AS in-process on a clock the test moves, a machine client and alice."""

    settings: Settings
    http: httpx.AsyncClient
    clock: FakeClock
    machine: Confidential

    def proof(self, key: Any, **kwargs: Any) -> str:
        """A proof for POST /token at the world's clock (``kwargs`` override)."""
        return make_proof(
            key,
            kwargs.pop("htm", "POST"),
            kwargs.pop("htu", TOKEN_URL),
            iat=kwargs.pop("iat", self.clock.now),
            **kwargs,
        )

    async def machine_token(self, *proofs: str) -> httpx.Response:
        """A client_credentials request of the machine client carrying ``proofs``."""
        headers = [("Authorization", self.machine.authorization["Authorization"])]
        headers += [("DPoP", proof) for proof in proofs]
        return await self.http.post(
            "/token",
            data={"grant_type": "client_credentials", "resource": RESOURCE},
            headers=headers,
        )

    async def code(self, client_id: str, **extra: str) -> Any:
        """alice authorizes ``client_id`` (authorization request parameters ``extra``)."""
        return await authorize(self.http, client_id, resource=RESOURCE, extra=extra)

    async def redeem(self, client_id: str, done: Any, proof: str | None) -> httpx.Response:
        """Redeem alice's code, with ``proof`` in a DPoP header if given."""
        return await exchange(self.http, client_id, done, headers={"DPoP": proof} if proof else {})


def world_fixture(**dpop: Any) -> Any:
    @pytest.fixture
    async def world(make_settings: Callable[..., Settings]) -> AsyncIterator[World]:
        settings = make_settings(
            resources=RESOURCES, token_exchange=RULES, dpop=DPoPSettings(**dpop)
        )
        await add_user(settings, "alice")
        machine = await confidential_client(settings, client_id="machine")
        clock = FakeClock()
        async with running(settings, clock=clock) as http:
            yield World(settings, http, clock, machine)

    return world


world = world_fixture()
nonce_world = world_fixture(require_nonce=True, nonce_lifetime=60)


def assert_bound(response: httpx.Response, key: Any) -> dict[str, Any]:
    """RFC 9449 §5, §6.1: 200, token_type DPoP, the JWT's cnf.jkt the key's thumbprint."""
    assert response.status_code == 200, response.text
    assert_no_store(response)
    body: dict[str, Any] = response.json()
    assert body["token_type"] == "DPoP"
    assert claims_of(body["access_token"])["cnf"] == {"jkt": thumbprint(key)}
    return body


# -- §4.3, §5: a proof that fails a check is invalid_dpop_proof, and nothing is issued ---------


@pytest.mark.parametrize(
    ("case", "change"),
    [
        ("htm_is_not_post", {"htm": "GET"}),
        ("htu_is_another_uri", {"htu": "http://localhost/authorize"}),
        ("htu_is_another_host", {"htu": "http://evil.example/token"}),
        ("iat_too_old", {"iat": -120}),
        ("iat_in_the_future", {"iat": +60}),
    ],
)
async def test_rfc9449_4_3_a_proof_for_another_request_or_time_is_invalid_dpop_proof(
    world: World, case: str, change: dict[str, Any]
) -> None:
    """§4.3 points 8, 9, 11: htm, htu and iat are those of this request; else 400
    invalid_dpop_proof (§5)."""
    if "iat" in change:
        change = {"iat": world.clock.now + change["iat"]}
    response = await world.machine_token(world.proof(new_key(), **change))
    body = assert_error(response, 400, "invalid_dpop_proof")
    assert "DPoP proof" in body["error_description"], case


async def test_rfc9449_4_3_two_dpop_headers_or_a_malformed_proof_are_invalid_dpop_proof(
    world: World,
) -> None:
    """§4.3 points 1, 2: exactly one DPoP header holding a signed JWT."""
    key = new_key()
    assert_error(
        await world.machine_token(world.proof(key), world.proof(key)), 400, "invalid_dpop_proof"
    )
    assert_error(await world.machine_token("not.a.jwt"), 400, "invalid_dpop_proof")
    forged = world.proof(key).rsplit(".", 1)[0] + "." + world.proof(new_key()).rsplit(".", 1)[1]
    assert_error(await world.machine_token(forged), 400, "invalid_dpop_proof")


async def test_rfc9449_11_1_a_replayed_proof_is_invalid_dpop_proof(world: World) -> None:
    """§11.1: a proof's jti is accepted once within its window; the replay is refused."""
    key = new_key()
    proof = world.proof(key)
    assert_bound(await world.machine_token(proof), key)
    body = assert_error(await world.machine_token(proof), 400, "invalid_dpop_proof")
    assert "already used" in body["error_description"]
    assert_bound(await world.machine_token(world.proof(key)), key)


async def test_rfc9449_4_3_a_refused_proof_leaves_the_code_unspent(world: World) -> None:
    """The proof is checked before the grant: a code sent with a bad proof is not consumed and
    the client may redeem it with a good one."""
    reg = await register(world.http)
    done = await world.code(reg["client_id"])
    key = new_key()
    bad = await world.redeem(reg["client_id"], done, world.proof(key, htm="PUT"))
    assert_error(bad, 400, "invalid_dpop_proof")
    assert_bound(await world.redeem(reg["client_id"], done, world.proof(key)), key)


# -- §8: nonces ---------------------------------------------------------------------------------


async def test_rfc9449_8_without_the_demanded_nonce_400_use_dpop_nonce_with_dpop_nonce(
    nonce_world: World,
) -> None:
    """§8: a proof without a nonce when the server demands one: 400 use_dpop_nonce and a
    DPoP-Nonce header (exactly one); the retry with that nonce succeeds, and the success
    carries the nonce to use next (§8.2)."""
    key = new_key()
    refused = await nonce_world.machine_token(nonce_world.proof(key))
    assert_error(refused, 400, "use_dpop_nonce")
    nonce = refused.headers["dpop-nonce"]
    assert len(refused.headers.get_list("dpop-nonce")) == 1
    done = await nonce_world.machine_token(nonce_world.proof(key, nonce=nonce))
    assert_bound(done, key)
    assert done.headers["dpop-nonce"] == nonce


async def test_rfc9449_8_a_stale_or_foreign_nonce_is_use_dpop_nonce_with_a_new_one(
    nonce_world: World,
) -> None:
    """§8: a nonce the server did not supply recently is refused with use_dpop_nonce and a
    new nonce, which then works."""
    key = new_key()
    first = await nonce_world.machine_token(nonce_world.proof(key))
    old = first.headers["dpop-nonce"]
    foreign = await nonce_world.machine_token(nonce_world.proof(key, nonce="made-up-nonce"))
    assert_error(foreign, 400, "use_dpop_nonce")
    nonce_world.clock.advance(3 * 60)  # three nonce lifetimes later: the old nonce is stale
    stale = await nonce_world.machine_token(nonce_world.proof(key, nonce=old))
    assert_error(stale, 400, "use_dpop_nonce")
    fresh = stale.headers["dpop-nonce"]
    assert fresh != old
    assert_bound(await nonce_world.machine_token(nonce_world.proof(key, nonce=fresh)), key)


async def test_rfc9449_8_without_a_proof_no_nonce_is_demanded(nonce_world: World) -> None:
    """Nonces are for DPoP requests: a request without a proof gets a Bearer token."""
    response = await nonce_world.machine_token()
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"
    assert "dpop-nonce" not in response.headers


# -- §5.2: dpop_bound_access_tokens -------------------------------------------------------------


async def test_rfc9449_5_2_a_dpop_bound_client_without_a_proof_is_refused(world: World) -> None:
    """§5.2: a client registered with dpop_bound_access_tokens true is refused a token without
    a DPoP header (invalid_request: the RFC names no code), and the code is not spent."""
    reg = await register(world.http, dpop_bound_access_tokens=True)
    assert reg["dpop_bound_access_tokens"] is True
    done = await world.code(reg["client_id"])
    refused = await world.redeem(reg["client_id"], done, None)
    body = assert_error(refused, 400, "invalid_request")
    assert "dpop_bound_access_tokens" in body["error_description"]
    key = new_key()
    assert_bound(await world.redeem(reg["client_id"], done, world.proof(key)), key)


async def test_rfc9449_5_2_a_pre_registered_dpop_bound_client_without_a_proof_is_refused(
    world: World,
) -> None:
    """§5.2 for a client an operator made (``bastion clients add --dpop-bound``): its
    client_credentials request without a proof is invalid_request; with one, a bound token."""
    made = await admin.add_client(
        world.settings,
        client_id="bound-robot",
        name="Bound robot",
        redirect_uris=[],
        confidential=True,
        grant_types=["client_credentials"],
        scope=None,
        resources=["*"],
        dpop_bound=True,
    )
    assert made.secret is not None
    assert made.client.metadata.dpop_bound_access_tokens is True
    robot = Confidential("bound-robot", made.secret)
    data = {"grant_type": "client_credentials", "resource": RESOURCE}
    refused = await world.http.post("/token", data=data, headers=robot.authorization)
    assert_error(refused, 400, "invalid_request")
    key = new_key()
    bound = await world.http.post(
        "/token", data=data, headers={**robot.authorization, "DPoP": world.proof(key)}
    )
    assert_bound(bound, key)


async def test_rfc9449_5_2_dpop_bound_access_tokens_must_be_a_boolean(world: World) -> None:
    """RFC 7591 §3.2.2: a malformed value is invalid_client_metadata."""
    response = await world.http.post(
        "/register",
        json={
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "dpop_bound_access_tokens": "yes",
        },
    )
    assert_error(response, 400, "invalid_client_metadata")


# -- §5: refresh tokens of public clients are bound ---------------------------------------------


async def test_rfc9449_5_a_public_clients_refresh_token_needs_a_proof_of_its_key(
    world: World,
) -> None:
    """§5: a refresh token issued to a public client with a proof is bound to its key:
    without a proof, or with another key, invalid_grant (the token is not spent); with the
    key, a new bound access token and refresh token."""
    reg = await register(world.http)
    key = new_key()
    done = await world.code(reg["client_id"])
    tokens = assert_bound(await world.redeem(reg["client_id"], done, world.proof(key)), key)
    token = tokens["refresh_token"]
    missing = assert_error(await refresh(world.http, reg["client_id"], token), 400, "invalid_grant")
    assert "bound to a DPoP key" in missing["error_description"]
    other = await world.http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": reg["client_id"]},
        headers={"DPoP": world.proof(new_key())},
    )
    assert_error(other, 400, "invalid_grant")
    again = await world.http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": reg["client_id"]},
        headers={"DPoP": world.proof(key)},
    )
    renewed = assert_bound(again, key)
    assert renewed["refresh_token"] != token
    still = await refresh(world.http, reg["client_id"], renewed["refresh_token"])
    assert_error(still, 400, "invalid_grant")


async def test_rfc9449_5_a_public_clients_refresh_token_is_bound_by_its_first_dpop_refresh(
    world: World,
) -> None:
    """§5: a Bearer grant refreshed with a proof gets a refresh token bound to that key."""
    reg = await register(world.http)
    done = await world.code(reg["client_id"])
    plain = await world.redeem(reg["client_id"], done, None)
    assert plain.status_code == 200
    assert plain.json()["token_type"] == "Bearer"
    assert "cnf" not in claims_of(plain.json()["access_token"])
    key = new_key()
    bound = await world.http.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": plain.json()["refresh_token"],
            "client_id": reg["client_id"],
        },
        headers={"DPoP": world.proof(key)},
    )
    body = assert_bound(bound, key)
    refused = await refresh(world.http, reg["client_id"], body["refresh_token"])
    assert_error(refused, 400, "invalid_grant")


async def test_rfc9449_5_a_confidential_clients_refresh_token_is_not_bound(
    world: World,
) -> None:
    """§5: a confidential client's refresh token is sender-constrained by its authentication,
    not by a key: refreshed without a proof it gives a Bearer token, with another key a token
    bound to that key."""
    app = await confidential_client(
        world.settings,
        client_id="web-app",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=[REDIRECT_URI],
    )
    done = await world.code("web-app")
    key = new_key()
    first = await world.http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": done.params["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": done.verifier,
        },
        headers={**app.authorization, "DPoP": world.proof(key)},
    )
    token = assert_bound(first, key)["refresh_token"]
    plain = await world.http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": token},
        headers=app.authorization,
    )
    assert plain.status_code == 200, plain.text
    assert plain.json()["token_type"] == "Bearer"
    other = new_key()
    rebound = await world.http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": plain.json()["refresh_token"]},
        headers={**app.authorization, "DPoP": world.proof(other)},
    )
    assert_bound(rebound, other)


# -- §10: authorization code binding (dpop_jkt) -------------------------------------------------


async def test_rfc9449_10_a_code_bound_with_dpop_jkt_needs_a_proof_of_that_key(
    world: World,
) -> None:
    """§10: the proof's key must match dpop_jkt; another key, or no proof, is refused
    (invalid_grant: the RFC names no code) and the code is spent."""
    reg = await register(world.http)
    key = new_key()
    done = await world.code(reg["client_id"], dpop_jkt=thumbprint(key))
    refused = await world.redeem(reg["client_id"], done, world.proof(new_key()))
    body = assert_error(refused, 400, "invalid_grant")
    assert "dpop_jkt" in body["error_description"]
    spent = await world.redeem(reg["client_id"], done, world.proof(key))
    assert_error(spent, 400, "invalid_grant")
    again = await world.code(reg["client_id"], dpop_jkt=thumbprint(key))
    assert_error(await world.redeem(reg["client_id"], again, None), 400, "invalid_grant")


async def test_rfc9449_10_a_code_bound_with_dpop_jkt_is_redeemed_with_that_key(
    world: World,
) -> None:
    reg = await register(world.http)
    key = new_key()
    done = await world.code(reg["client_id"], dpop_jkt=thumbprint(key))
    assert_bound(await world.redeem(reg["client_id"], done, world.proof(key)), key)


async def test_rfc9449_10_a_malformed_dpop_jkt_is_invalid_request(world: World) -> None:
    """A dpop_jkt that is no SHA-256 thumbprint is refused at the authorization endpoint."""
    reg = await register(world.http)
    response = await world.http.get(
        "/authorize",
        params={
            "response_type": "code",
            "client_id": reg["client_id"],
            "redirect_uri": REDIRECT_URI,
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
            "resource": RESOURCE,
            "dpop_jkt": "not-a-thumbprint",
        },
    )
    assert response.status_code == 302, response.text
    assert "error=invalid_request" in response.headers["location"]


# -- §5, §6: every grant binds ------------------------------------------------------------------


async def test_rfc9449_5_client_credentials_is_bound(world: World) -> None:
    key = new_key()
    assert_bound(await world.machine_token(world.proof(key)), key)


async def test_rfc9449_5_without_a_proof_tokens_stay_bearer(world: World) -> None:
    response = await world.machine_token()
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"
    assert "cnf" not in claims_of(response.json()["access_token"])


async def test_rfc9449_5_token_exchange_is_bound(world: World) -> None:
    """RFC 8693 with a proof: the exchanged token is bound to the exchanging client's key."""
    mcp = await confidential_client(world.settings, client_id="mcp-server")
    reg = await register(world.http)
    done = await authorize(
        world.http, reg["client_id"], resource=RESOURCE, scope="mcp:tools files:read"
    )
    person = await world.redeem(reg["client_id"], done, None)
    key = new_key()
    response = await world.http.post(
        "/token",
        data={
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": person.json()["access_token"],
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "resource": FILES,
        },
        headers={**mcp.authorization, "DPoP": world.proof(key)},
    )
    body = assert_bound(response, key)
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE


async def test_rfc9449_6_2_introspection_answers_cnf_and_token_type_dpop(world: World) -> None:
    """§6.2: the bound token's cnf.jkt as a top-level member, token_type DPoP."""
    key = new_key()
    token = assert_bound(await world.machine_token(world.proof(key)), key)["access_token"]
    answer = await introspect(world.http, world.machine, token)
    assert answer["active"] is True
    assert answer["token_type"] == "DPoP"
    assert answer["cnf"] == {"jkt": thumbprint(key)}
    plain = (await world.machine_token()).json()["access_token"]
    described = await introspect(world.http, world.machine, plain)
    assert described["token_type"] == "Bearer"
    assert "cnf" not in described


async def test_rfc9449_5_1_metadata_lists_the_configured_algorithms(
    make_settings: Callable[..., Settings],
) -> None:
    """§5.1: dpop_signing_alg_values_supported; absent when [dpop] is disabled."""
    for dpop, expected in (
        (DPoPSettings(), ["ES256", "EdDSA", "RS256", "PS256"]),
        (DPoPSettings(algorithms=["ES256"]), ["ES256"]),
        (DPoPSettings(enabled=False), None),
    ):
        async with running(make_settings(dpop=dpop)) as http:
            doc = (await http.get("/.well-known/oauth-authorization-server")).json()
            assert doc.get("dpop_signing_alg_values_supported") == expected


async def test_rfc9449_4_3_an_algorithm_not_configured_is_refused(
    make_settings: Callable[..., Settings],
) -> None:
    """§4.3 point 5: only the configured algorithms (ES256 proofs refused with EdDSA only)."""
    settings = make_settings(dpop=DPoPSettings(algorithms=["EdDSA"]))
    machine = await confidential_client(settings, client_id="machine")
    async with running(settings) as http:
        response = await http.post(
            "/token",
            data={"grant_type": "client_credentials", "resource": RESOURCE},
            headers={**machine.authorization, "DPoP": make_proof(new_key(), "POST", TOKEN_URL)},
        )
    assert_error(response, 400, "invalid_dpop_proof")


async def test_x02_the_audit_trail_records_the_dpop_key(world: World) -> None:
    """The grant's audit record and the family say which key the tokens are bound to."""
    reg = await register(world.http)
    key = new_key()
    done = await world.code(reg["client_id"])
    assert_bound(await world.redeem(reg["client_id"], done, world.proof(key)), key)
    db = Database(world.settings.effective_database_url, schema=world.settings.database_schema)
    try:
        async with db.connect() as conn:
            details = (
                await conn.execute(
                    sa.select(auth_audit.c.detail).where(auth_audit.c.client_id == reg["client_id"])
                )
            ).scalars()
            families = (await conn.execute(sa.select(token_families.c.dpop_jkt))).scalars()
            assert thumbprint(key) in list(families)
            assert any((d or {}).get("dpop_jkt") == thumbprint(key) for d in details)
    finally:
        await db.dispose()


@pytest.mark.parametrize("alg", ["HS256", "none", "RSA-OAEP"])
def test_rfc9449_4_3_dpop_algorithms_must_be_asymmetric_signatures(alg: str) -> None:
    """§4.3 point 5: a symmetric, absent or non-signature algorithm cannot be configured."""
    with pytest.raises(ValueError, match="cannot sign DPoP proofs"):
        DPoPSettings(algorithms=["ES256", alg])
