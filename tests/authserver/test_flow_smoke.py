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
