"""L8: changing a person's password, or disabling them, ends what they could do.

`bastion users passwd` ends their browser sessions and every grant they gave; a disabled
user's session no longer signs anyone in, their pending code cannot be exchanged and their
refresh tokens are refused (RFC 6749 §5.2 invalid_grant)."""

from __future__ import annotations

import httpx

from bastion.authserver.admin import database
from bastion.config import Settings
from bastion.identity.local import LocalUsers
from tests.authserver._tokens import assert_error, code_grant, refresh
from tests.support.flow import add_user, authorize, exchange, register


async def test_l8_a_new_password_ends_sessions_and_grants(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    await add_user(settings)
    grant = await code_grant(app_client)
    async with database(settings) as db:
        assert await LocalUsers(db).set_password("alice", "a brand new password 42")
    refused = await refresh(app_client, grant.client_id, grant.tokens["refresh_token"])
    assert_error(refused, 400, "invalid_grant")
    # The browser (app_client keeps the session cookie) must sign in again.
    again = await app_client.get(
        "/authorize",
        params={
            "response_type": "code",
            "client_id": grant.client_id,
            "redirect_uri": "http://127.0.0.1:53682/callback",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
            "resource": "http://localhost:9001/mcp",
        },
    )
    page = await app_client.get(again.headers["location"])
    assert 'name="password"' in page.text


async def test_l8_a_disabled_users_session_code_and_refresh_token_stop_working(
    settings: Settings, app_client: httpx.AsyncClient
) -> None:
    await add_user(settings)
    grant = await code_grant(app_client)
    client_id = (await register(app_client))["client_id"]
    pending = await authorize(app_client, client_id)  # a code not exchanged yet
    async with database(settings) as db:
        assert await LocalUsers(db).set_disabled("alice", True) is not None
    assert_error(await exchange(app_client, client_id, pending), 400, "invalid_grant")
    refused = await refresh(app_client, grant.client_id, grant.tokens["refresh_token"])
    assert_error(refused, 400, "invalid_grant")
    async with database(settings) as db:
        assert await LocalUsers(db).set_disabled("alice", False) is not None
    # Enabled again: she signs in afresh (the session ended), and new grants work.
    again = await authorize(app_client, client_id)
    assert (await exchange(app_client, client_id, again)).status_code == 200
