"""Token exchange at the token endpoint (RFC 8693, checklist X08), on SQLite and PostgreSQL.

A person (alice) authorizes a public client for the MCP server ``demo``; the confidential client
``mcp-server`` (the MCP server itself) may exchange tokens for ``demo`` for tokens for ``files``
with ``files:read``; ``files-server`` may exchange tokens for ``files`` for tokens for
``archive``. Refusals first: who must not get a token, with the exact error of RFC 8693 §2.2.2
and RFC 6749 §5.2; then the answer of §2.2.1, ``act`` (§4.1) and its nesting, the expiry cap,
the audit record and the grant's revocation.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey

from bastion.access import admin as access_admin
from bastion.authserver import admin
from bastion.config import ResourceSettings, Settings, TokenExchangeRule
from bastion.identity.local import LocalUsers
from bastion.oauth.token_request import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE
from bastion.store.database import Database
from bastion.store.schema import auth_audit
from tests.authserver._tokens import (
    Confidential,
    FakeClock,
    assert_error,
    assert_no_store,
    confidential_client,
    introspect,
)
from tests.support.asgi import running
from tests.support.flow import REDIRECT_URI, add_user, authorize, exchange
from tests.support.jwt import claims_of

DEMO = "http://localhost:9001/mcp"
FILES = "http://localhost:9002/files"
ARCHIVE = "http://localhost:9003/archive"
RESOURCES = [
    ResourceSettings(uri=DEMO, name="demo", scopes=["mcp:tools", "files:read"]),
    ResourceSettings(uri=FILES, name="files", scopes=["files:read", "files:write"]),
    ResourceSettings(uri=ARCHIVE, name="archive", scopes=["files:read"]),
]
RULES = [
    TokenExchangeRule(client="mcp-server", source="demo", target=FILES, scopes=["files:read"]),
    TokenExchangeRule(client="files-server", source=FILES, target="archive", scopes=["files:read"]),
    TokenExchangeRule(client="public-app", source=DEMO, target=FILES, scopes=["files:read"]),
]
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"


@dataclass
class World:
    """The AS in-process on a clock the test moves, its clients and alice's token for demo."""

    settings: Settings
    http: httpx.AsyncClient
    clock: FakeClock
    mcp: Confidential
    files: Confidential
    outsider: Confidential
    person: dict[str, Any]

    async def exchange(
        self, caller: Confidential | None, subject: str | None = None, **extra: str
    ) -> httpx.Response:
        """A token exchange request by ``caller`` (None: no authentication) for ``subject``
        (alice's access token by default) with resource ``files`` unless given."""
        data = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": self.person["access_token"] if subject is None else subject,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "resource": FILES,
            **extra,
        }
        data = {k: v for k, v in data.items() if v != ""}
        headers = caller.authorization if caller is not None else {}
        return await self.http.post("/token", data=data, headers=headers)


async def person_token(
    http: httpx.AsyncClient, client_id: str, username: str = "alice", scope: str = "mcp:tools"
) -> dict[str, Any]:
    """``username`` authorizes ``client_id`` for demo with ``scope`` and redeems the code."""
    done = await authorize(http, client_id, resource=DEMO, scope=scope, username=username)
    response = await exchange(http, client_id, done)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def world(make_settings: Callable[..., Settings]) -> AsyncIterator[World]:
    settings = make_settings(resources=RESOURCES, token_exchange=RULES)
    await add_user(settings, "alice")
    await add_user(settings, "bob")
    mcp = await confidential_client(settings, client_id="mcp-server")
    files = await confidential_client(settings, client_id="files-server")
    outsider = await confidential_client(settings, client_id="outsider")
    await admin.add_client(
        settings,
        client_id="public-app",
        name="Public app",
        redirect_uris=[REDIRECT_URI],
        confidential=False,
        grant_types=["authorization_code", "refresh_token"],
        scope=None,
    )
    clock = FakeClock()
    async with running(settings, clock=clock) as http:
        person = await person_token(http, "public-app", scope="mcp:tools files:read")
        yield World(settings, http, clock, mcp, files, outsider, person)


# -- who must not get a token ------------------------------------------------------------------


async def test_x08_without_any_rule_the_grant_is_unsupported(
    make_settings: Callable[..., Settings],
) -> None:
    """RFC 6749 §5.2 unsupported_grant_type: with no [[token_exchange]] rule the grant does not
    exist here (refused by default, before client authentication), as the metadata says."""
    async with running(make_settings(resources=RESOURCES)) as http:
        response = await http.post(
            "/token",
            data={"grant_type": TOKEN_EXCHANGE, "subject_token": "x"},
            headers={"Authorization": "Basic d3Jvbmc6d3Jvbmc="},
        )
    assert_error(response, 400, "unsupported_grant_type")


async def test_x08_client_without_a_rule_is_unauthorized_client(world: World) -> None:
    """RFC 8693 §2.2.2, RFC 6749 §5.2: a confidential client no [[token_exchange]] rule names
    may not use the grant (refused by default)."""
    body = assert_error(await world.exchange(world.outsider), 400, "unauthorized_client")
    assert "token_exchange" in body["error_description"]


async def test_x08_public_client_is_unauthorized_client(world: World) -> None:
    """RFC 8693 §2.1 with RFC 6749 §5.2: a public client is refused even when a rule names it
    (only confidential clients exchange)."""
    response = await world.exchange(None, client_id="public-app")
    assert_error(response, 400, "unauthorized_client")


async def test_x08_wrong_secret_is_invalid_client(world: World) -> None:
    """RFC 6749 §5.2: client authentication failed -> 401 invalid_client, before the grant."""
    wrong = Confidential("mcp-server", "not-the-secret")
    assert_error(await world.exchange(wrong), 401, "invalid_client")


@pytest.mark.parametrize(
    ("left_out", "extra"),
    [
        ("subject_token", {"subject_token": ""}),
        ("subject_token_type", {"subject_token_type": ""}),
        ("actor_token_type", {"actor_token": "x"}),
        ("actor_token", {"actor_token_type": ACCESS_TOKEN_TYPE}),
    ],
)
async def test_x08_missing_parameters_are_invalid_request(
    world: World, left_out: str, extra: dict[str, str]
) -> None:
    """RFC 8693 §2.1: subject_token and subject_token_type are REQUIRED, actor_token_type
    comes with actor_token and never without it; §2.2.2 invalid_request."""
    body = assert_error(await world.exchange(world.mcp, **extra), 400, "invalid_request")
    assert left_out.split("_type")[0] in body["error_description"]


@pytest.mark.parametrize(
    "extra",
    [
        {"subject_token_type": ID_TOKEN_TYPE},
        {"subject_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
        {"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
        {"actor_token": "x", "actor_token_type": ID_TOKEN_TYPE},
    ],
)
async def test_x08_unsupported_token_types_are_invalid_request(
    world: World, extra: dict[str, str]
) -> None:
    """RFC 8693 §2.2.2: only bastion's own access tokens are exchanged, and only access tokens
    issued; any other token type is invalid_request."""
    assert_error(await world.exchange(world.mcp, **extra), 400, "invalid_request")


async def test_x08_forged_subject_token_is_invalid_request(world: World) -> None:
    """RFC 8693 §2.2.2: a subject token signed by a key that is not bastion's (same claims,
    same kid) is invalid for any reason -> invalid_request, not invalid_grant."""
    claims = claims_of(world.person["access_token"])
    header = {"alg": "ES256", "typ": "at+jwt", "kid": "forged"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        forged = jwt.encode(header, claims, ECKey.generate_key("P-256"))
    for token in (forged, "not-a-token", world.person["access_token"] + "x"):
        assert_error(await world.exchange(world.mcp, subject=token), 400, "invalid_request")


async def test_x08_expired_subject_token_is_invalid_request(world: World) -> None:
    """RFC 8693 §2.2.2: an expired subject token is refused."""
    world.clock.advance(world.settings.tokens.access_token_ttl + 1)
    body = assert_error(await world.exchange(world.mcp), 400, "invalid_request")
    assert "expired" in body["error_description"]


async def test_x08_revoked_subject_token_is_invalid_request(world: World) -> None:
    """RFC 8693 §2.2.2 with RFC 7009: the subject token revoked by its client is refused."""
    revoked = await world.http.post(
        "/revoke", data={"token": world.person["access_token"], "client_id": "public-app"}
    )
    assert revoked.status_code == 200
    body = assert_error(await world.exchange(world.mcp), 400, "invalid_request")
    assert "revoked" in body["error_description"]


async def test_x08_subject_token_of_a_revoked_grant_is_invalid_request(world: World) -> None:
    """RFC 8693 §2.2.2: the grant behind the subject token (its refresh-token family) was
    revoked (RFC 7009 on the refresh token): its access tokens are not exchanged."""
    revoked = await world.http.post(
        "/revoke", data={"token": world.person["refresh_token"], "client_id": "public-app"}
    )
    assert revoked.status_code == 200
    body = assert_error(await world.exchange(world.mcp), 400, "invalid_request")
    assert "revoked" in body["error_description"]


async def test_x08_token_of_a_disabled_person_is_invalid_request(world: World) -> None:
    """RFC 8693 §2.2.2: once alice is disabled (bastion users disable), her tokens are not
    exchanged for anything."""
    db = Database(world.settings.effective_database_url, schema=world.settings.database_schema)
    try:
        assert await LocalUsers(db).set_disabled("alice", True) is not None
    finally:
        await db.dispose()
    assert_error(await world.exchange(world.mcp), 400, "invalid_request")


async def test_x08_token_of_another_issuer_is_invalid_request(
    world: World, make_settings: Callable[..., Settings]
) -> None:
    """RFC 8693 §2.2.2: a token whose ``iss`` is another issuer is refused, even when signed
    with the very same keys (another AS sharing the database)."""
    other = make_settings(
        issuer="http://other.localhost:9999", resources=RESOURCES, allow_insecure_http=True
    )
    async with running(other) as elsewhere:
        foreign = await person_token(elsewhere, "public-app")
    assert claims_of(foreign["access_token"])["iss"] == "http://other.localhost:9999"
    response = await world.exchange(world.mcp, subject=foreign["access_token"])
    assert_error(response, 400, "invalid_request")


async def test_x08_a_clients_own_token_is_not_a_subject(world: World) -> None:
    """RFC 8693 §2.2.2: a client_credentials token has no person behind it: invalid_request."""
    own = await world.http.post(
        "/token",
        data={"grant_type": "client_credentials", "resource": DEMO, "scope": "files:read"},
        headers=world.mcp.authorization,
    )
    assert own.status_code == 200, own.text
    response = await world.exchange(world.mcp, subject=own.json()["access_token"])
    body = assert_error(response, 400, "invalid_request")
    assert "person" in body["error_description"]


@pytest.mark.parametrize(
    "extra",
    [
        {"resource": ARCHIVE},
        {"resource": "http://localhost:9999/unknown"},
        {"resource": "", "audience": "nobody"},
        {"resource": ""},
        {"resource": FILES, "audience": "archive"},
    ],
    ids=["not-allowed", "unknown-resource", "unknown-audience", "no-target", "conflict"],
)
async def test_x08_target_not_allowed_is_invalid_target(
    world: World, extra: dict[str, str]
) -> None:
    """RFC 8693 §2.2.2: the AS is unwilling or unable to issue a token for the target named by
    resource or audience (not allowed by a rule, unknown, missing, contradictory) ->
    invalid_target."""
    assert_error(await world.exchange(world.mcp, **extra), 400, "invalid_target")


async def test_x08_rule_is_for_one_source_resource(world: World) -> None:
    """RFC 8693 §2.2.2: files-server may exchange tokens for files, not alice's token for demo:
    no rule from demo to archive for it -> invalid_target."""
    response = await world.exchange(world.files, resource=ARCHIVE)
    assert_error(response, 400, "invalid_target")


@pytest.mark.parametrize(
    "scope",
    ["files:write", "files:read files:write", "mcp:tools", "no:such"],
    ids=["not-granted", "partly-not-granted", "not-in-rule", "unknown"],
)
async def test_x08_scope_widening_is_invalid_scope(world: World, scope: str) -> None:
    """RFC 6749 §5.2 invalid_scope: scopes the person did not grant in the subject token
    (files:write), granted but beyond what the rule allows at the target (mcp:tools), or
    unknown."""
    assert_error(await world.exchange(world.mcp, scope=scope), 400, "invalid_scope")


async def test_x08_scope_beyond_the_subject_token_is_invalid_scope(world: World) -> None:
    """RFC 6749 §5.2: an exchange never widens what the person granted: a token for demo with
    mcp:tools only cannot become files:read."""
    narrow = await person_token(world.http, "public-app", scope="mcp:tools")
    response = await world.exchange(world.mcp, subject=narrow["access_token"])
    assert_error(response, 400, "invalid_scope")
    response = await world.exchange(world.mcp, subject=narrow["access_token"], scope="files:read")
    assert_error(response, 400, "invalid_scope")


async def test_x08_person_not_admitted_at_the_target_is_invalid_target(world: World) -> None:
    """RFC 8693 §2.2.2: the access rules admit only bob at files; alice's token is not exchanged
    for files (the AS is unwilling to issue a token for that target), though the rule allows
    the client."""
    await access_admin.allow(world.settings, "files", "user:bob", [])
    body = assert_error(await world.exchange(world.mcp), 400, "invalid_target")
    assert "alice" in body["error_description"]
    world.http.cookies.clear()  # alice signs out of the browser; bob signs in
    bobs = await person_token(world.http, "public-app", "bob", "mcp:tools files:read")
    assert claims_of(bobs["access_token"])["sub"] != claims_of(world.person["access_token"])["sub"]
    allowed = await world.exchange(world.mcp, subject=bobs["access_token"])
    assert allowed.status_code == 200, allowed.text


async def test_x08_actor_token_of_another_client_is_invalid_request(world: World) -> None:
    """RFC 8693 §2.1, §2.2.2: the actor token must represent the authenticated client; one the
    outsider obtained for itself, or a person's token, is refused."""
    theirs = await world.http.post(
        "/token",
        data={"grant_type": "client_credentials", "resource": FILES, "scope": "files:read"},
        headers=world.outsider.authorization,
    )
    assert theirs.status_code == 200, theirs.text
    for actor in (theirs.json()["access_token"], world.person["access_token"]):
        response = await world.exchange(
            world.mcp, actor_token=actor, actor_token_type=ACCESS_TOKEN_TYPE
        )
        assert_error(response, 400, "invalid_request")


async def test_x08_metadata_lists_the_grant_only_with_rules(
    world: World, make_settings: Callable[..., Settings]
) -> None:
    """RFC 8414 §2 grant_types_supported: token exchange is advertised only when a rule allows
    some exchange."""
    path = "/.well-known/oauth-authorization-server"
    listed = (await world.http.get(path)).json()["grant_types_supported"]
    assert TOKEN_EXCHANGE in listed
    async with running(make_settings(resources=RESOURCES)) as plain:
        listed = (await plain.get(path)).json()["grant_types_supported"]
    assert TOKEN_EXCHANGE not in listed
    assert listed == ["authorization_code", "refresh_token", "client_credentials"]


def test_x08_rules_name_configured_resources(make_settings: Callable[..., Settings]) -> None:
    """A rule whose ``to`` is not a configured resource, or whose scopes the target does not
    have, stops the configuration with a message naming it."""
    wrong_target = TokenExchangeRule(client="c", source="demo", target="nowhere", scopes=["x"])
    with pytest.raises(ValueError, match="to = 'nowhere' is not a configured resource"):
        make_settings(resources=RESOURCES, token_exchange=[wrong_target])
    wrong_scope = TokenExchangeRule(client="c", source="demo", target="files", scopes=["mcp:tools"])
    with pytest.raises(ValueError, match="mcp:tools are not scopes of"):
        make_settings(resources=RESOURCES, token_exchange=[wrong_scope])


# -- who may -----------------------------------------------------------------------------------


async def test_x08_exchange_answers_per_section_2_2_1(world: World) -> None:
    """RFC 8693 §2.2.1: access_token, issued_token_type (access token), token_type Bearer,
    expires_in and scope; no refresh token. The token is alice's for files, issued to
    mcp-server, in alice's grant, with act.sub mcp-server (§4.1)."""
    response = await world.exchange(world.mcp)
    assert response.status_code == 200, response.text
    assert_no_store(response)
    body = response.json()
    assert set(body) == {"access_token", "issued_token_type", "token_type", "expires_in", "scope"}
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "files:read"
    subject = claims_of(world.person["access_token"])
    claims = claims_of(body["access_token"])
    assert claims["sub"] == subject["sub"]
    assert claims["aud"] == FILES
    assert claims["client_id"] == "mcp-server"
    assert claims["grant_id"] == subject["grant_id"]
    assert claims["act"] == {"sub": "mcp-server"}
    assert claims["scope"] == "files:read"
    assert body["expires_in"] == claims["exp"] - claims["iat"]
    assert claims["exp"] <= subject["exp"]
    seen = await introspect(world.http, world.mcp, body["access_token"])
    assert seen["active"] is True


async def test_x08_audience_by_name_and_an_actor_token(world: World) -> None:
    """RFC 8693 §2.1: the target named by ``audience`` (the resource's name), and an actor
    token the client obtained for itself; act.sub is that client (§4.1)."""
    own = await world.http.post(
        "/token",
        data={"grant_type": "client_credentials", "resource": DEMO, "scope": "mcp:tools"},
        headers=world.mcp.authorization,
    )
    response = await world.exchange(
        world.mcp,
        resource="",
        audience="files",
        actor_token=own.json()["access_token"],
        actor_token_type=ACCESS_TOKEN_TYPE,
    )
    assert response.status_code == 200, response.text
    claims = claims_of(response.json()["access_token"])
    assert claims["aud"] == FILES
    assert claims["act"] == {"sub": "mcp-server"}


async def test_x08_exchanged_token_exchanged_again_nests_act(world: World) -> None:
    """RFC 8693 §4.1: files-server exchanges the token mcp-server obtained; the new token's act
    is files-server, with mcp-server nested as the prior actor."""
    first = await world.exchange(world.mcp)
    assert first.status_code == 200, first.text
    second = await world.exchange(
        world.files, subject=first.json()["access_token"], resource=ARCHIVE
    )
    assert second.status_code == 200, second.text
    claims = claims_of(second.json()["access_token"])
    assert claims["aud"] == ARCHIVE
    assert claims["client_id"] == "files-server"
    assert claims["act"] == {"sub": "files-server", "act": {"sub": "mcp-server"}}
    assert claims["sub"] == claims_of(world.person["access_token"])["sub"]


async def test_x08_exchanged_token_never_outlives_the_subject_token(world: World) -> None:
    """RFC 8693 §2.2.1 expires_in: a token exchanged 100 s before the subject token expires
    lives 100 s, with the subject token's exp."""
    subject = claims_of(world.person["access_token"])
    world.clock.advance(subject["exp"] - world.clock.now - 100)
    response = await world.exchange(world.mcp)
    assert response.status_code == 200, response.text
    assert response.json()["expires_in"] == 100
    assert claims_of(response.json()["access_token"])["exp"] == subject["exp"]


async def test_x08_exchange_is_audited_without_tokens(world: World) -> None:
    """The auth audit records token_exchanged: the client, the person, from and to, the act
    chain; never a token."""
    response = await world.exchange(world.mcp)
    assert response.status_code == 200
    db = Database(world.settings.effective_database_url, schema=world.settings.database_schema)
    try:
        async with db.connect() as conn:
            rows = [
                dict(r._mapping)
                for r in await conn.execute(
                    auth_audit.select().where(auth_audit.c.type == "token_exchanged")
                )
            ]
    finally:
        await db.dispose()
    [row] = rows
    assert row["client_id"] == "mcp-server"
    assert row["subject"] == claims_of(world.person["access_token"])["sub"]
    assert "demo" in str(row["detail"]) or DEMO in str(row["detail"])
    assert FILES in str(row["detail"])
    for token in (world.person["access_token"], response.json()["access_token"]):
        assert token not in str(row)
        assert token.split(".")[2] not in str(row)


async def test_x08_revoking_the_grant_ends_exchanged_tokens(world: World) -> None:
    """Revoking alice's grant (RFC 7009 on its refresh token) makes the exchanged tokens, and
    those exchanged from them, inactive (RFC 7662) and no longer exchangeable."""
    first = (await world.exchange(world.mcp)).json()["access_token"]
    second = await world.exchange(world.files, subject=first, resource=ARCHIVE)
    assert second.status_code == 200, second.text
    issued = [(world.mcp, first), (world.files, second.json()["access_token"])]
    for caller, token in issued:
        assert (await introspect(world.http, caller, token))["active"] is True
    revoked = await world.http.post(
        "/revoke",
        data={"token": world.person["refresh_token"], "client_id": "public-app"},
    )
    assert revoked.status_code == 200
    for caller, token in issued:
        assert (await introspect(world.http, caller, token)) == {"active": False}
    again = await world.exchange(world.files, subject=first, resource=ARCHIVE)
    assert_error(again, 400, "invalid_request")
