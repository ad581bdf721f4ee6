"""Who may use which server (issue: "who may get which token", attack 2): an access rule per
resource, applied at /authorize (after sign-in), at the code exchange and at every refresh.

Each test runs against a real ``bastion serve`` process, on SQLite and PostgreSQL, and first
shows who must *not* get in.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bastion.access import admin as access_admin
from bastion.authserver.admin import database
from bastion.identity.local import LocalUsers
from bastion.store.schema import users
from tests.access.live import Deployment, SignIn, deployed, redeem, sign_in
from tests.support.flow import add_user, register

CONTACT = "the finance platform team (#ledger-access)"


@pytest.fixture
def deployment(backend: dict[str, Any], tmp_path: Path) -> Iterator[Deployment]:
    with deployed(backend, tmp_path, access_contact=CONTACT) as running:
        yield running


@pytest.fixture
async def http(deployment: Deployment) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=deployment.issuer, trust_env=False) as client:
        yield client


@pytest.fixture
async def people(deployment: Deployment) -> None:
    """alice is in finance; bob is in sales; eve edits notes."""
    await add_user(deployment.settings, "alice", groups=["finance"], email="alice@example.com")
    await add_user(deployment.settings, "bob", groups=["sales"], name="Bob Builder")
    await add_user(deployment.settings, "eve", groups=["editors"])


async def public_client(http: httpx.AsyncClient) -> str:
    client_id: str = (await register(http))["client_id"]
    return client_id


async def test_a_person_outside_the_group_is_refused_and_the_client_gets_access_denied(
    deployment: Deployment, http: httpx.AsyncClient, people: None
) -> None:
    """Only finance may use the ledger. bob signs in and sees a page naming him, what was asked
    for and whom to ask; returning sends the client access_denied with state and iss
    (RFC 6749 §4.1.2.1, RFC 9207 §2). No code is issued."""
    await access_admin.allow(deployment.settings, "ledger", "group:finance", [])
    client_id = await public_client(http)
    refused = await sign_in(http, client_id, deployment.resource("ledger"), username="bob")
    assert refused.page is not None and refused.page.status_code == 403
    page = refused.page.text
    assert 'Signed in as <strong class="signed-in-as">Bob Builder</strong>' in page
    assert "<code>bob</code>" in page
    assert deployment.resource("ledger") in page and "ledger" in page
    assert CONTACT in page
    returned = await sign_in(
        http,
        client_id,
        deployment.resource("ledger"),
        username="bob",
        stop_at_refusal=False,
        decision="deny",
    )
    assert returned.params == {
        "error": "access_denied",
        "error_description": "the user denied the request",
        "state": "st-1",
        "iss": deployment.issuer,
    } or (
        returned.params["error"] == "access_denied" and returned.params["iss"] == deployment.issuer
    )
    assert "code" not in returned.params
    # The same person may still use a server no rule closes.
    notes = await sign_in(http, client_id, deployment.resource("notes"), username="bob")
    assert "code" in notes.params


async def test_a_member_of_the_group_gets_in(
    deployment: Deployment, http: httpx.AsyncClient, people: None
) -> None:
    await access_admin.allow(deployment.settings, "ledger", "group:finance", [])
    client_id = await public_client(http)
    async with httpx.AsyncClient(base_url=deployment.issuer, trust_env=False) as browser:
        signed_in = await sign_in(
            browser, client_id, deployment.resource("ledger"), username="alice"
        )
    tokens = await redeem(http, client_id, signed_in)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["scope"] == "mcp:tools"


async def _alice_tokens(
    deployment: Deployment, http: httpx.AsyncClient
) -> tuple[str, dict[str, Any]]:
    client_id = await public_client(http)
    signed_in = await sign_in(http, client_id, deployment.resource("ledger"), username="alice")
    tokens = await redeem(http, client_id, signed_in)
    assert tokens.status_code == 200, tokens.text
    return client_id, tokens.json()


async def _refresh(http: httpx.AsyncClient, client_id: str, refresh_token: str) -> httpx.Response:
    return await http.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
        },
    )


async def test_refresh_after_removal_from_the_group_is_refused(
    deployment: Deployment, http: httpx.AsyncClient, people: None
) -> None:
    """alice leaves finance (``bastion users groups alice --remove finance``): her grant ends
    and the next refresh is invalid_grant (RFC 6749 §5.2)."""
    await access_admin.allow(deployment.settings, "ledger", "group:finance", [])
    client_id, tokens = await _alice_tokens(deployment, http)
    async with database(deployment.settings) as db:
        await LocalUsers(db).change_groups("alice", remove=["finance"])
    refused = await _refresh(http, client_id, tokens["refresh_token"])
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_grant"


async def test_every_refresh_checks_the_rules_and_groups_again(
    deployment: Deployment, http: httpx.AsyncClient, people: None
) -> None:
    """Even a change no bastion command made (the users table edited by hand) is seen at the
    next refresh: membership and policy are read again, the grant is revoked."""
    await access_admin.allow(deployment.settings, "ledger", "group:finance", [])
    client_id, tokens = await _alice_tokens(deployment, http)
    async with database(deployment.settings) as db, db.transaction() as conn:
        await conn.execute(sa.update(users).where(users.c.username == "alice").values(groups=[]))
    refused = await _refresh(http, client_id, tokens["refresh_token"])
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_grant"
    assert "may no longer use" in refused.json()["error_description"]
    async with database(deployment.settings) as db, db.transaction() as conn:
        await conn.execute(
            sa.update(users).where(users.c.username == "alice").values(groups=["finance"])
        )
    again = await _refresh(http, client_id, tokens["refresh_token"])
    assert again.status_code == 400, "a revoked grant stays revoked"


async def test_scopes_a_person_may_not_have_are_left_out_and_the_consent_page_says_so(
    deployment: Deployment, http: httpx.AsyncClient, people: None
) -> None:
    """Everyone may use the notes server's tools; only editors may write. bob asks for both:
    the consent page lists notes:write as not granted, and the token has mcp:tools only."""
    await access_admin.allow(deployment.settings, "notes", "*", ["mcp:tools"])
    await access_admin.allow(deployment.settings, "notes", "group:editors", [])
    client_id = await public_client(http)
    resource = deployment.resource("notes")
    scope = "mcp:tools notes:write"
    verifier_page = await _consent_page(http, client_id, resource, "bob", scope)
    assert "Not granted" in verifier_page and "<code>notes:write</code>" in verifier_page
    signed_in = await sign_in(http, client_id, resource, username="bob", scope=scope)
    tokens = await redeem(http, client_id, signed_in)
    assert tokens.json()["scope"] == "mcp:tools"
    async with httpx.AsyncClient(base_url=deployment.issuer, trust_env=False) as browser:
        editor = await sign_in(browser, client_id, resource, username="eve", scope=scope)
    assert (await redeem(http, client_id, editor)).json()["scope"] == scope


async def _consent_page(
    http: httpx.AsyncClient, client_id: str, resource: str, username: str, scope: str
) -> str:
    """The consent page's HTML (after signing in), without answering it."""
    import re

    from bastion.oauth import pkce
    from tests.access.live import PASSWORD, REDIRECT_URI, csrf_of

    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "code_challenge": pkce.s256(pkce.new_verifier()),
        "code_challenge_method": "S256",
        "resource": resource,
        "scope": scope,
    }
    location = (await http.get("/authorize", params=params)).headers["location"]
    page = await http.get(location)
    if 'name="password"' in page.text:
        await http.post(
            f"{location}/login",
            data={"csrf": csrf_of(page.text), "username": username, "password": PASSWORD},
        )
        page = await http.get(location)
    assert page.status_code == 200 and re.search("Allow", page.text), page.text
    return page.text


async def test_invalid_scope_when_nothing_the_person_asked_for_is_left(
    deployment: Deployment, http: httpx.AsyncClient, people: None
) -> None:
    await access_admin.allow(deployment.settings, "notes", "*", ["mcp:tools"])
    client_id = await public_client(http)
    result: SignIn = await sign_in(
        http, client_id, deployment.resource("notes"), username="bob", scope="notes:write"
    )
    assert result.params["error"] == "invalid_scope"
    assert result.params["iss"] == deployment.issuer and result.params["state"] == "st-1"


async def test_an_operator_lists_and_revokes_a_persons_grant(
    deployment: Deployment, http: httpx.AsyncClient, people: None
) -> None:
    """`bastion grants list --user alice` shows her grant (its id is the tokens' grant_id);
    `bastion grants revoke ID` ends it: the refresh token is refused."""
    client_id, tokens = await _alice_tokens(deployment, http)
    [grant] = await access_admin.list_grants(deployment.settings, username="alice")
    assert (grant.client_id, grant.resource, grant.scope, grant.username) == (
        client_id,
        deployment.resource("ledger"),
        "mcp:tools",
        "alice",
    )
    payload = tokens["access_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["grant_id"] == grant.grant_id
    assert await access_admin.list_grants(deployment.settings, username="bob") == []
    assert await access_admin.revoke_grants(deployment.settings, grant_id=grant.grant_id) == 1
    refused = await _refresh(http, client_id, tokens["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert await access_admin.list_grants(deployment.settings) == []
