"""End-to-end smoke of the authorization code flow in-process (OAuth 2.1 §4.1)."""

from __future__ import annotations

from bastion.config import Settings
from tests.support.flow import add_user, authorize, exchange, register


async def test_a01_code_flow_with_dcr_client_issues_tokens(settings: Settings, app_client) -> None:
    await add_user(settings)
    reg = await register(app_client)
    done = await authorize(app_client, reg["client_id"])
    assert done.params["state"] == "xyz"
    assert done.params["iss"] == settings.issuer
    response = await exchange(app_client, reg["client_id"], done)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["refresh_token"]
    assert response.headers["cache-control"] == "no-store"


async def test_repeated_failed_logins_are_paused(make_settings, tmp_path) -> None:
    """Password guessing is slowed: after login.max_failures failures per user name and address
    the log-in form answers 429 for the rest of the window, even with the right password."""
    from tests.support.asgi import running
    from tests.support.flow import PASSWORD, login_form

    settings = make_settings(login={"max_failures": 3})
    await add_user(settings)
    async with running(settings) as client:
        reg = await register(client)
        location, csrf = await login_form(client, reg["client_id"])
        for _ in range(3):
            failed = await client.post(
                f"{location}/login", data={"csrf": csrf, "username": "alice", "password": "no"}
            )
            assert failed.status_code == 401
        paused = await client.post(
            f"{location}/login", data={"csrf": csrf, "username": "alice", "password": PASSWORD}
        )
        assert paused.status_code == 429
        assert "Too many failed attempts" in paused.text
