"""The refresh_token grant: rotation and reuse detection.

OAuth 2.1 §4.3 (refresh token grant) and §4.3.1 (rotation for public clients), RFC 6749 §6
(scope of the refreshed token), RFC 9700 §4.14.2 (reuse of a rotated refresh token revokes the
active one). Checklist A06.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import sqlalchemy as sa
from joserfc import jwt
from joserfc.jwk import KeySet

from bastion.access import admin as access_admin
from bastion.authserver.admin import database
from bastion.config import Settings
from bastion.identity.local import LocalUsers
from bastion.store.federation import LinkedAccount, add_link
from bastion.store.schema import access_rules, users
from tests.authserver._tokens import (
    FakeClock,
    assert_error,
    assert_no_store,
    code_grant,
    confidential_client,
    introspect,
    refresh,
)
from tests.store.test_database import pooled_backends, terminate, until_closed
from tests.support.asgi import running
from tests.support.flow import add_user, register


@pytest.fixture
async def alice(settings: Settings, app_client: httpx.AsyncClient) -> None:
    """The resource owner every flow logs in as (added once the app has migrated the database)."""
    await add_user(settings)


async def claims_of(client: httpx.AsyncClient, token: str) -> dict[str, object]:
    keys = KeySet.import_key_set((await client.get("/jwks")).json())
    return dict(jwt.decode(token, keys).claims)


async def test_a06_refresh_rotates_the_refresh_token(
    settings: Settings, app_client: httpx.AsyncClient, alice: None
) -> None:
    """OAuth 2.1 §4.3.1: every refresh answers a new refresh token; the new one works and the
    previous one is refused."""
    grant = await code_grant(app_client)
    seen = {grant.tokens["refresh_token"]}
    current = grant.tokens["refresh_token"]
    for _ in range(3):
        response = await refresh(app_client, grant.client_id, current)
        assert response.status_code == 200, response.text
        assert_no_store(response)
        body = response.json()
        assert set(body) == {"access_token", "token_type", "expires_in", "scope", "refresh_token"}
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == settings.tokens.access_token_ttl
        assert body["scope"] == "mcp:tools"
        assert body["refresh_token"] not in seen
        seen.add(body["refresh_token"])
        current = body["refresh_token"]
    refused = await refresh(app_client, grant.client_id, grant.tokens["refresh_token"])
    assert_error(refused, 400, "invalid_grant")


@pytest.fixture
async def clocked(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[tuple[Settings, httpx.AsyncClient, FakeClock]]:
    """The AS on a clock the test moves, with alice and the default reuse window."""
    settings = make_settings()
    clock = FakeClock()
    async with running(settings, clock=clock) as client:
        await add_user(settings)
        yield settings, client, clock


async def test_a06_reuse_of_a_rotated_refresh_token_after_the_window_revokes_the_whole_family(
    clocked: tuple[Settings, httpx.AsyncClient, FakeClock],
) -> None:
    """RFC 9700 §4.14.2: when a rotated refresh token is presented again after
    tokens.refresh_reuse_window, the active refresh token and the access tokens of the grant
    are revoked."""
    settings, app_client, clock = clocked
    resource_server = await confidential_client(settings, introspects=["*"])
    grant = await code_grant(app_client)
    first = grant.tokens
    rotated = await refresh(app_client, grant.client_id, first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    for token in (first["access_token"], second["access_token"]):
        assert (await introspect(app_client, resource_server, token))["active"] is True

    clock.advance(settings.tokens.refresh_reuse_window + 1)
    reused = await refresh(app_client, grant.client_id, first["refresh_token"])
    assert_error(reused, 400, "invalid_grant")

    newest = await refresh(app_client, grant.client_id, second["refresh_token"])
    assert_error(newest, 400, "invalid_grant")
    for token in (first["access_token"], second["access_token"]):
        assert await introspect(app_client, resource_server, token) == {"active": False}


async def test_a06_a_refresh_repeated_within_the_window_gets_the_same_successor(
    clocked: tuple[Settings, httpx.AsyncClient, FakeClock],
) -> None:
    """An answer lost to a crash or a dropped connection: the same client presents the token it
    sent again within tokens.refresh_reuse_window and gets the successor already issued (one
    live branch) with a new access token; the grant lives on. Once that successor has been
    used, the old token is reuse like any other and ends the grant."""
    settings, app_client, clock = clocked
    grant = await code_grant(app_client)
    t0 = grant.tokens["refresh_token"]
    first = await refresh(app_client, grant.client_id, t0)
    assert first.status_code == 200, first.text
    clock.advance(settings.tokens.refresh_reuse_window)
    again = await refresh(app_client, grant.client_id, t0)
    assert again.status_code == 200, again.text
    assert again.json()["refresh_token"] == first.json()["refresh_token"]
    assert again.json()["access_token"] != first.json()["access_token"]
    onward = await refresh(app_client, grant.client_id, first.json()["refresh_token"])
    assert onward.status_code == 200, onward.text
    late = await refresh(app_client, grant.client_id, t0)
    assert_error(late, 400, "invalid_grant")
    ended = await refresh(app_client, grant.client_id, onward.json()["refresh_token"])
    assert_error(ended, 400, "invalid_grant")


async def test_a06_reuse_by_another_client_revokes_the_grant_even_within_the_window(
    clocked: tuple[Settings, httpx.AsyncClient, FakeClock],
) -> None:
    """The window is for the client the token belongs to: a rotated token presented by another
    client is a stolen token, and the grant ends."""
    _, app_client, _ = clocked
    grant = await code_grant(app_client)
    t0 = grant.tokens["refresh_token"]
    first = await refresh(app_client, grant.client_id, t0)
    assert first.status_code == 200, first.text
    thief = (await register(app_client))["client_id"]
    stolen = await refresh(app_client, thief, t0)
    assert_error(stolen, 400, "invalid_grant")
    rightful = await refresh(app_client, grant.client_id, first.json()["refresh_token"])
    assert_error(rightful, 400, "invalid_grant")


async def test_refresh_with_a_narrower_scope_is_allowed(
    app_client: httpx.AsyncClient, alice: None
) -> None:
    """RFC 6749 §6: the refreshed token may carry less than was granted; omitting scope gives
    the originally granted scope back."""
    grant = await code_grant(app_client, scope="mcp:tools mcp:resources")
    assert grant.tokens["scope"] == "mcp:resources mcp:tools"
    narrow = await refresh(
        app_client, grant.client_id, grant.tokens["refresh_token"], scope="mcp:tools"
    )
    assert narrow.status_code == 200, narrow.text
    assert narrow.json()["scope"] == "mcp:tools"
    assert (await claims_of(app_client, narrow.json()["access_token"]))["scope"] == "mcp:tools"

    full = await refresh(app_client, grant.client_id, narrow.json()["refresh_token"])
    assert full.status_code == 200, full.text
    assert full.json()["scope"] == "mcp:resources mcp:tools"


async def test_refresh_with_a_wider_scope_is_invalid_scope(
    app_client: httpx.AsyncClient, alice: None
) -> None:
    """RFC 6749 §6: the requested scope must not include any scope not originally granted."""
    grant = await code_grant(app_client, scope="mcp:tools")
    response = await refresh(
        app_client, grant.client_id, grant.tokens["refresh_token"], scope="mcp:tools mcp:prompts"
    )
    assert_error(response, 400, "invalid_scope")


async def test_refresh_token_of_another_client_is_invalid_grant(
    app_client: httpx.AsyncClient, alice: None
) -> None:
    """RFC 6749 §6, OAuth 2.1 §4.3: the refresh token must have been issued to the client."""
    grant = await code_grant(app_client)
    other = await register(app_client)
    response = await refresh(app_client, other["client_id"], grant.tokens["refresh_token"])
    assert_error(response, 400, "invalid_grant")


async def test_refresh_token_of_an_expired_family_is_invalid_grant(settings: Settings) -> None:
    """RFC 6749 §5.2: an expired refresh token -> invalid_grant (tokens.refresh_token_ttl bounds
    the family from the code's redemption)."""
    clock = FakeClock()
    async with running(settings, clock=clock) as client:
        await add_user(settings)
        grant = await code_grant(client)
        clock.advance(settings.tokens.refresh_token_ttl)
        response = await refresh(client, grant.client_id, grant.tokens["refresh_token"])
    assert_error(response, 400, "invalid_grant")


async def test_unknown_refresh_token_is_invalid_grant(app_client: httpx.AsyncClient) -> None:
    """RFC 6749 §5.2: a refresh token the server never issued -> invalid_grant."""
    reg = await register(app_client)
    response = await refresh(app_client, reg["client_id"], "not-a-refresh-token")
    assert_error(response, 400, "invalid_grant")


async def test_missing_refresh_token_is_invalid_request(app_client: httpx.AsyncClient) -> None:
    """RFC 6749 §6, §5.2: refresh_token is required."""
    reg = await register(app_client)
    response = await app_client.post(
        "/token", data={"grant_type": "refresh_token", "client_id": reg["client_id"]}
    )
    assert_error(response, 400, "invalid_request")


async def test_refresh_by_a_client_without_the_refresh_grant_is_unauthorized_client(
    app_client: httpx.AsyncClient, alice: None
) -> None:
    """RFC 6749 §5.2: a client not registered for refresh_token may not use the grant."""
    grant = await code_grant(app_client, grant_types=["authorization_code"])
    response = await refresh(app_client, grant.client_id, "anything")
    assert_error(response, 400, "unauthorized_client")


@pytest.mark.parametrize(
    "bad",
    [{"scope": "mcp:tools mcp:prompts"}, {"resource": "http://localhost:9999/other"}],
)
async def test_a_refused_refresh_does_not_spend_the_token(
    app_client: httpx.AsyncClient, alice: None, bad: dict[str, str]
) -> None:
    """RFC 9700 §4.14.2: reuse detection must only fire on real reuse. A request refused for its
    scope or resource leaves the refresh token usable, so the rightful client's corrected retry
    succeeds and does not revoke the grant."""
    grant = await code_grant(app_client, scope="mcp:tools")
    token = grant.tokens["refresh_token"]
    refused = await refresh(app_client, grant.client_id, token, **bad)
    assert refused.status_code == 400
    retry = await refresh(app_client, grant.client_id, token)
    assert retry.status_code == 200, retry.text


async def test_removing_a_user_revokes_their_grants(
    settings: Settings, app_client: httpx.AsyncClient, alice: None
) -> None:
    """Members only (seed 000): once a user is removed, their refresh tokens stop working and
    the access tokens of their grants are reported inactive (RFC 7662 §2.2), at once rather
    than when the refresh family expires."""
    resource_server = await confidential_client(settings, introspects=["*"])
    grant = await code_grant(app_client)
    async with database(settings) as db:
        assert await LocalUsers(db).remove("alice")
    answer = await introspect(app_client, resource_server, grant.tokens["access_token"])
    assert answer == {"active": False}
    refused = await refresh(app_client, grant.client_id, grant.tokens["refresh_token"])
    assert_error(refused, 400, "invalid_grant")


async def test_a_disabled_user_cannot_refresh(
    settings: Settings, app_client: httpx.AsyncClient, alice: None
) -> None:
    """A disabled user's grant is refused at the next refresh and revoked with its tokens."""
    resource_server = await confidential_client(settings, introspects=["*"])
    grant = await code_grant(app_client)
    async with database(settings) as db, db.transaction() as conn:
        await conn.execute(
            sa.update(users).where(users.c.username == "alice").values(disabled=True)
        )
    refused = await refresh(app_client, grant.client_id, grant.tokens["refresh_token"])
    assert_error(refused, 400, "invalid_grant")
    assert "disabled" in refused.json()["error_description"]
    answer = await introspect(app_client, resource_server, grant.tokens["access_token"])
    assert answer == {"active": False}


async def test_grants_of_federated_users_end_after_the_providers_session_max_age(
    make_settings: Callable[..., Settings],
) -> None:
    """upstreams.session_max_age: a user linked to that provider refreshes until that long
    after signing in, then must sign in there again (where the allow rules and groups are
    checked anew); someone without such a link keeps refresh_token_ttl."""
    corp = {
        "name": "corp",
        "kind": "oidc",
        "issuer": "https://idp.example.com",
        "client_id": "bastion",
        "client_secret": "s3cret",
        "session_max_age": 3600,
    }
    settings = make_settings(upstreams=[corp])
    clock = FakeClock()
    async with running(settings, clock=clock) as client:
        await add_user(settings, "alice")
        await add_user(settings, "bob")
        async with database(settings) as db, db.transaction() as conn:
            alice_id = (
                await conn.execute(sa.select(users.c.id).where(users.c.username == "alice"))
            ).scalar_one()
            await add_link(
                conn,
                LinkedAccount(
                    issuer="https://idp.example.com",
                    subject="alice-at-corp",
                    provider="corp",
                    user_id=alice_id,
                    created_at=clock(),
                    last_login_at=clock(),
                ),
            )
        alice = await code_grant(client, username="alice")
        # bob signs in from a browser of his own (no session cookie of alice's).
        async with httpx.AsyncClient(
            transport=client._transport, base_url=client.base_url
        ) as bobs_browser:
            bob = await code_grant(bobs_browser, username="bob")
        clock.advance(3599)
        renewed = await refresh(client, alice.client_id, alice.tokens["refresh_token"])
        assert renewed.status_code == 200, renewed.text
        clock.advance(1)
        ended = await refresh(client, alice.client_id, renewed.json()["refresh_token"])
        assert_error(ended, 400, "invalid_grant")
        assert "corp" in ended.json()["error_description"]
        still = await refresh(client, bob.client_id, bob.tokens["refresh_token"])
        assert still.status_code == 200, still.text


async def test_refresh_and_code_grants_work_after_postgresql_ended_the_pooled_connections(
    settings: Settings, app_client: httpx.AsyncClient, alice: None
) -> None:
    """The pool pings no connection before use: one the server ended (a restart,
    pg_terminate_backend) is found closed at checkout and replaced, and no request fails."""
    if not settings.effective_database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's backends")
    db = app_client.app.state.bastion.db  # type: ignore[attr-defined]
    grant = await code_grant(app_client)
    pids, connections = await pooled_backends(db)
    await terminate(pids)
    await until_closed(connections)

    refreshed = await refresh(app_client, grant.client_id, grant.tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    again = await code_grant(app_client)
    assert "refresh_token" in again.tokens


async def test_a_rule_changed_behind_the_servers_back_ends_the_grant_at_the_next_refresh(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    """The rules are read with the grant at every refresh (on PostgreSQL in the same query),
    not from a cache: a rule changed in the table by hand, which no process announced, is
    seen; the refresh is refused and the grant revoked."""
    await add_user(settings, groups=["finance"])
    await access_admin.allow(settings, "demo", "group:finance", [])
    grant = await code_grant(app_client)
    async with database(settings) as db, db.transaction() as conn:
        await conn.execute(sa.update(access_rules).values(who="group:hr"))
    refused = await refresh(app_client, grant.client_id, grant.tokens["refresh_token"])
    assert_error(refused, 400, "invalid_grant")
    assert "may no longer use" in refused.json()["error_description"]

    async with database(settings) as db:
        await access_admin.allow(settings, "demo", "group:finance", [], db=db)
    again = await refresh(app_client, grant.client_id, grant.tokens["refresh_token"])
    assert_error(again, 400, "invalid_grant")


async def test_a_refresh_under_the_rules_gets_the_scopes_they_give(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    await add_user(settings, groups=["finance"])
    await access_admin.allow(settings, "demo", "group:finance", [])
    grant = await code_grant(app_client)
    refreshed = await refresh(app_client, grant.client_id, grant.tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["scope"] == "mcp:tools"
