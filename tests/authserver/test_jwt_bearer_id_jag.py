"""Enterprise-managed authorization: ID-JAGs redeemed with the jwt-bearer grant (RFC 7523 §2.1,
§3, §3.1; the MCP extension §4.3 and §5.1; checklist X06), on SQLite and PostgreSQL.

A stand-in enterprise identity provider (``acme``) serves its discovery document and JWKS on
127.0.0.1 and signs ID-JAGs with a real P-256 key; bastion trusts it (``accept_id_jag``) with
the allow rule ``email_domains = ["example.com"]``. The confidential client ``agent`` is
registered for jwt-bearer. Refusals first, with the exact error and status and nothing
written; then the token, the person's grant and its revocation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bastion.access import admin as access_admin
from bastion.authserver import admin
from bastion.config import AllowRulesSettings, IdentityProviderSettings, ResourceSettings, Settings
from bastion.identity.claims import UpstreamIdentity
from bastion.identity.linking import link_account
from bastion.oauth.token_request import JWT_BEARER
from bastion.store import grants
from bastion.store import users as user_rows
from bastion.store.database import Database
from bastion.store.schema import auth_audit, token_families, users
from tests.authserver._issuers import Issuer, jti, new_key, served, unsigned
from tests.authserver._tokens import (
    Confidential,
    FakeClock,
    assert_error,
    assert_no_store,
    confidential_client,
    introspect,
)
from tests.conftest import ISSUER
from tests.support.asgi import running
from tests.support.jwt import claims_of

DEMO = "http://localhost:9001/mcp"
FILES = "http://localhost:9002/files"
RESOURCES = [
    ResourceSettings(uri=DEMO, name="demo", scopes=["mcp:tools", "mcp:prompts"]),
    ResourceSettings(uri=FILES, name="files", scopes=["files:read"]),
]
TYP = "oauth-id-jag+jwt"


def provider(idp: Issuer, **overrides: Any) -> IdentityProviderSettings:
    values: dict[str, Any] = {
        "name": "acme",
        "kind": "oidc",
        "issuer": idp.url,
        "client_id": "bastion",
        "client_secret": "bastion-secret-at-acme",
        "allow_private_addresses": True,
        "accept_id_jag": True,
        "allow": AllowRulesSettings(email_domains=["example.com"]),
        **overrides,
    }
    return IdentityProviderSettings(**values)


@dataclass
class World:
    settings: Settings
    http: httpx.AsyncClient
    clock: FakeClock
    idp: Issuer
    agent: Confidential
    other: Confidential
    reader: Confidential

    def id_jag(self, *, typ: str | None = TYP, drop: tuple[str, ...] = (), **claims: Any) -> str:
        """An ID-JAG for alice (subject u-1) at demo for ``agent``, with ``claims`` changed."""
        values: dict[str, Any] = {
            "iss": self.idp.url,
            "sub": "u-1",
            "aud": ISSUER,
            "client_id": "agent",
            "resource": DEMO,
            "scope": "mcp:tools",
            "jti": jti(),
            "email": "alice@example.com",
            "email_verified": True,
            **self.idp.times(now=self.clock.now),
            **claims,
        }
        return self.idp.sign({k: v for k, v in values.items() if k not in drop}, typ=typ)

    async def redeem(
        self, assertion: str, caller: Confidential | None = None, **extra: str
    ) -> httpx.Response:
        caller = caller or self.agent
        data = {"grant_type": JWT_BEARER, "assertion": assertion, **extra}
        return await self.http.post("/token", data=data, headers=caller.authorization)

    async def count(self, table: sa.Table) -> int:
        db = Database(self.settings.effective_database_url, schema=self.settings.database_schema)
        try:
            async with db.connect() as conn:
                return int(
                    (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()
                )
        finally:
            await db.dispose()


async def linked_alice(settings: Settings, idp: Issuer, *, disabled: bool = False) -> str:
    """alice, linked to acme's subject u-1 as a sign-in would have done; her user id."""
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        await db.upgrade()
        identity = UpstreamIdentity(
            provider="acme",
            issuer=idp.url,
            subject="u-1",
            email="alice@example.com",
            username="alice",
            groups=("engineering",),
        )
        user = await link_account(db, identity, now=FakeClock().now)
        if disabled:
            async with db.transaction() as conn:
                await user_rows.set_disabled(conn, user.id, True)
        return user.id
    finally:
        await db.dispose()


@pytest.fixture
async def world(make_settings: Callable[..., Settings]) -> AsyncIterator[World]:
    async with served(Issuer()) as idp:
        settings = make_settings(resources=RESOURCES, upstreams=[provider(idp)])
        agent = await confidential_client(settings, client_id="agent", grant_types=[JWT_BEARER])
        other = await confidential_client(settings, client_id="other", grant_types=[JWT_BEARER])
        reader = await confidential_client(
            settings, client_id="rs", grant_types=["client_credentials"], introspects=["*"]
        )
        clock = FakeClock()
        async with running(settings, clock=clock) as http:
            yield World(settings, http, clock, idp, agent, other, reader)


# -- who must not get a token ------------------------------------------------------------------


async def test_x06_without_a_trusting_provider_the_grant_is_unsupported(
    make_settings: Callable[..., Settings],
) -> None:
    """RFC 6749 §5.2: no upstream accepts ID-JAGs and no workload rule exists: the grant does
    not exist here, and the metadata does not list it."""
    async with served(Issuer()) as idp:
        settings = make_settings(upstreams=[provider(idp, accept_id_jag=False)])
        async with running(settings) as http:
            response = await http.post(
                "/token",
                data={"grant_type": JWT_BEARER, "assertion": "x.y.z"},
                headers={"Authorization": "Basic d3Jvbmc6d3Jvbmc="},
            )
            metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
    assert_error(response, 400, "unsupported_grant_type")
    assert JWT_BEARER not in metadata["grant_types_supported"]


async def test_rfc7523_3_1_wrong_secret_is_invalid_client(world: World) -> None:
    """OAuth 2.1 §3.2.1: the client is authenticated before the assertion is looked at."""
    wrong = Confidential("agent", "not-the-secret")
    assert_error(await world.redeem(world.id_jag(), wrong), 401, "invalid_client")


async def test_x06_missing_assertion_is_invalid_request(world: World) -> None:
    """RFC 7523 §2.1: ``assertion`` is REQUIRED."""
    response = await world.http.post(
        "/token", data={"grant_type": JWT_BEARER}, headers=world.agent.authorization
    )
    body = assert_error(response, 400, "invalid_request")
    assert "assertion" in body["error_description"]


async def test_x06_public_client_is_unauthorized_client(world: World) -> None:
    """draft-ietf-oauth-identity-assertion-authz-grant (security considerations): ID-JAGs are
    redeemed by clients that authenticate; a client_id alone gets unauthorized_client."""
    await admin.add_client(
        world.settings,
        client_id="public-agent",
        name="Public agent",
        redirect_uris=[],
        confidential=False,
        grant_types=[JWT_BEARER],
        scope=None,
    )
    response = await world.http.post(
        "/token",
        data={
            "grant_type": JWT_BEARER,
            "assertion": world.id_jag(client_id="public-agent"),
            "client_id": "public-agent",
        },
    )
    body = assert_error(response, 400, "unauthorized_client")
    assert "confidential" in body["error_description"]


async def test_x06_client_not_registered_for_the_grant_is_unauthorized_client(
    world: World,
) -> None:
    """RFC 6749 §5.2 unauthorized_client: the grant is not in the client's grant_types."""
    assert_error(
        await world.redeem(world.id_jag(client_id="rs"), world.reader), 400, "unauthorized_client"
    )


@pytest.mark.parametrize("typ", [None, "JWT", "at+jwt", "application/oauth-id-jag+jwt"])
async def test_x06_typ_must_be_exactly_oauth_id_jag_jwt(world: World, typ: str | None) -> None:
    """§5.1 (RFC 8725 §3.11): the header's typ is oauth-id-jag+jwt; any other is not an
    ID-JAG, and bastion takes no other assertion from this issuer -> invalid_grant."""
    body = assert_error(await world.redeem(world.id_jag(typ=typ)), 400, "invalid_grant")
    assert "oauth-id-jag+jwt" in body["error_description"]


async def test_rfc7523_3_unsigned_assertion_is_invalid_grant(world: World) -> None:
    """RFC 7523 §3 item 9 (RFC 8725 §3.1): alg none is never accepted."""
    claims = claims_of(world.id_jag())
    assert_error(await world.redeem(unsigned(claims, TYP)), 400, "invalid_grant")


async def test_rfc7523_3_forged_signature_is_invalid_grant(world: World) -> None:
    """RFC 7523 §3 item 9: signed by a key the provider does not publish (same kid)."""
    forged = world.idp.sign(claims_of(world.id_jag()), typ=TYP, key=new_key("key-1"))
    assert_error(await world.redeem(forged), 400, "invalid_grant")


async def test_rfc7523_3_unknown_kid_fetches_the_keys_once_then_is_invalid_grant(
    world: World,
) -> None:
    """A new kid makes bastion fetch the provider's JWKS again (a key rotation), then refuse."""
    other = new_key("key-2")
    before = world.idp.jwks_requests
    token = world.idp.sign(claims_of(world.id_jag()), typ=TYP, key=other, kid="key-2")
    body = assert_error(await world.redeem(token), 400, "invalid_grant")
    assert "does not publish" in body["error_description"]
    assert world.idp.jwks_requests >= before + 1


async def test_rfc7523_3_untrusted_issuer_is_invalid_grant(world: World) -> None:
    """RFC 7523 §3 item 1: an issuer no upstream with accept_id_jag names."""
    async with served(Issuer()) as stranger:
        token = stranger.sign(claims_of(world.id_jag()) | {"iss": stranger.url}, typ=TYP)
        body = assert_error(await world.redeem(token), 400, "invalid_grant")
    assert "not an identity provider trusted" in body["error_description"]


@pytest.mark.parametrize(
    "aud", [ISSUER + "/token", ISSUER + "/", "https://other.example.com", [], DEMO]
)
async def test_rfc7523_3_aud_must_be_exactly_the_issuer(world: World, aud: object) -> None:
    """§5.1: aud identifies bastion's issuer. The token endpoint URL RFC 7523 §3 would allow is
    refused too: the ID-JAG document names the issuer only."""
    body = assert_error(await world.redeem(world.id_jag(aud=aud)), 400, "invalid_grant")
    assert "aud" in body["error_description"]


async def test_x06_client_id_of_another_client_is_invalid_grant(world: World) -> None:
    """§5.1: the client_id claim identifies the authenticated client."""
    token = world.id_jag(client_id="agent")
    body = assert_error(await world.redeem(token, world.other), 400, "invalid_grant")
    assert "client_id" in body["error_description"]


@pytest.mark.parametrize(
    ("change", "drop"),
    [
        ({"exp": -10}, ()),  # expired (beyond the leeway)
        ({}, ("exp",)),
        ({}, ("iat",)),
        ({"iat": 600}, ()),  # issued in the future
        ({"exp": 7200}, ()),  # lives longer than an hour
        ({}, ("jti",)),
    ],
)
async def test_rfc7523_3_times_and_jti_are_checked(
    world: World, change: dict[str, int], drop: tuple[str, ...]
) -> None:
    """RFC 7523 §3 items 4 to 7, §4.3: exp, iat and jti REQUIRED; exp not passed (60 s of
    skew), iat not in the future, at most an hour ahead."""
    now = world.clock.now
    shifted = {k: now + (v - 60 if k == "exp" and v < 0 else v) for k, v in change.items()}
    token = world.id_jag(drop=drop, **shifted)
    assert_error(await world.redeem(token), 400, "invalid_grant")
    assert await world.count(token_families) == 0


async def test_x06_missing_resource_is_invalid_grant(world: World) -> None:
    """§4.3: resource is REQUIRED in the ID-JAG."""
    assert_error(await world.redeem(world.id_jag(drop=("resource",))), 400, "invalid_grant")


async def test_rfc8707_resource_not_served_is_invalid_target(world: World) -> None:
    """RFC 8707 §2: a resource this server does not issue tokens for."""
    token = world.id_jag(resource="https://elsewhere.example.com/mcp")
    assert_error(await world.redeem(token), 400, "invalid_target")


async def test_rfc8707_resource_parameter_must_be_the_id_jags(world: World) -> None:
    """A ``resource`` parameter sent names the ID-JAG's resource, or invalid_target."""
    assert_error(await world.redeem(world.id_jag(), resource=FILES), 400, "invalid_target")


async def test_rfc7523_3_replay_is_invalid_grant_in_another_process(
    world: World, make_settings: Callable[..., Settings]
) -> None:
    """RFC 7523 §3 item 7: the jti is single use in every process on the database: a second
    app (its own engine and connections) refuses what the first redeemed."""
    await linked_alice(world.settings, world.idp)
    token = world.id_jag()
    assert (await world.redeem(token)).status_code == 200
    assert_error(await world.redeem(token), 400, "invalid_grant")
    async with running(world.settings) as second:
        response = await second.post(
            "/token",
            data={"grant_type": JWT_BEARER, "assertion": token},
            headers=world.agent.authorization,
        )
    body = assert_error(response, 400, "invalid_grant")
    assert "already used" in body["error_description"]


async def test_x06_scope_beyond_the_id_jag_is_invalid_scope(world: World) -> None:
    """RFC 6749 §5.2: a scope the ID-JAG does not grant."""
    await linked_alice(world.settings, world.idp)
    token = world.id_jag()
    assert_error(await world.redeem(token, scope="mcp:tools mcp:prompts"), 400, "invalid_scope")
    # Not spent by the refusal: the corrected request redeems it.
    assert (await world.redeem(token, scope="mcp:tools")).status_code == 200


async def test_x06_disabled_person_is_invalid_grant(world: World) -> None:
    """A linked person disabled here gets nothing."""
    await linked_alice(world.settings, world.idp, disabled=True)
    body = assert_error(await world.redeem(world.id_jag()), 400, "invalid_grant")
    assert "disabled" in body["error_description"]
    assert await world.count(token_families) == 0


async def test_x06_unlinked_person_refused_by_allow_rules_is_not_created(world: World) -> None:
    """A first-time subject is provisioned only when the provider's allow rules would let the
    person sign in (the same rules, not a second policy): another e-mail domain is refused."""
    token = world.id_jag(sub="u-9", email="mallory@elsewhere.example")
    body = assert_error(await world.redeem(token), 400, "invalid_grant")
    assert "allow rules" in body["error_description"]
    assert await world.count(users) == 0


async def test_x06_person_the_access_rules_refuse_is_invalid_target(world: World) -> None:
    """The access rules for the person at the resource apply as at a sign-in."""
    await linked_alice(world.settings, world.idp)
    await access_admin.allow(world.settings, "files", "group:finance", ["*"])
    token = world.id_jag(resource=FILES, scope="files:read")
    assert_error(await world.redeem(token), 400, "invalid_target")
    assert await world.count(token_families) == 0


async def test_x12_self_registered_client_may_not_register_for_jwt_bearer(world: World) -> None:
    """RFC 7591 §5 (X12): jwt-bearer gives tokens for people without their consent here, so
    a client that registers itself may not have it."""
    response = await world.http.post(
        "/register",
        json={
            "client_name": "Self-made agent",
            "grant_types": [JWT_BEARER],
            "response_types": [],
            "token_endpoint_auth_method": "client_secret_basic",
        },
    )
    body = assert_error(response, 400, "invalid_client_metadata")
    assert JWT_BEARER in body["error_description"]


# -- who may ---------------------------------------------------------------------------------


async def test_x06_linked_person_gets_a_token_in_a_new_grant(world: World) -> None:
    """§5.2: a Bearer access token for the person at the ID-JAG's resource, with its scope;
    no refresh token; the grant is the person's, so revoking it revokes the token."""
    user_id = await linked_alice(world.settings, world.idp)
    assertion = world.id_jag()
    response = await world.redeem(assertion)
    assert response.status_code == 200, response.text
    assert_no_store(response)
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "mcp:tools"
    assert "refresh_token" not in body
    claims = claims_of(body["access_token"])
    assert (claims["sub"], claims["aud"], claims["client_id"]) == (user_id, DEMO, "agent")
    assert claims["email"] == "alice@example.com"
    grant_id = claims["grant_id"]
    db = Database(world.settings.effective_database_url, schema=world.settings.database_schema)
    try:
        async with db.connect() as conn:
            family = await grants.get_family(conn, grant_id)
            record = (
                await conn.execute(sa.select(auth_audit).where(auth_audit.c.grant_id == grant_id))
            ).one()
        assert family is not None and family.subject == user_id
        assert (record.type, record.method, record.provider) == ("grant_created", "id_jag", "acme")
        assert record.detail["assertion_jti"] == claims_of(assertion)["jti"]
        assert (await introspect(world.http, world.reader, body["access_token"]))["active"]
        async with db.transaction() as conn:
            await grants.revoke_families_of(conn, user_id, world.clock.now, "test")
    finally:
        await db.dispose()
    assert not (await introspect(world.http, world.reader, body["access_token"]))["active"]


async def test_x06_first_time_person_admitted_by_allow_rules_is_provisioned(world: World) -> None:
    """An unlinked subject the allow rules admit gets an account linked to the provider, as a
    first sign-in would, and then the token."""
    response = await world.redeem(world.id_jag(sub="u-2", email="bob@example.com"))
    assert response.status_code == 200, response.text
    db = Database(world.settings.effective_database_url, schema=world.settings.database_schema)
    try:
        async with db.connect() as conn:
            user = await user_rows.by_id(conn, claims_of(response.json()["access_token"])["sub"])
    finally:
        await db.dispose()
    assert user is not None and user.username == "acme:bob@example.com"


async def test_x06_requested_scope_narrows_the_id_jags(world: World) -> None:
    """RFC 7521 §4.1: the scope parameter narrows what the ID-JAG grants."""
    await linked_alice(world.settings, world.idp)
    token = world.id_jag(scope="mcp:tools mcp:prompts")
    response = await world.redeem(token, scope="mcp:prompts", resource=DEMO)
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "mcp:prompts"


async def test_x06_metadata_lists_jwt_bearer(world: World) -> None:
    """RFC 8414 §2: grant_types_supported names the grant once a provider accepts ID-JAGs."""
    metadata = (await world.http.get("/.well-known/oauth-authorization-server")).json()
    assert JWT_BEARER in metadata["grant_types_supported"]
