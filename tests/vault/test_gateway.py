"""The gateway at an upstream with its own OAuth (``auth = "oauth"``): whose upstream token goes
with which call, and what a caller without one is answered.

MCP security best practices, "Token Passthrough" (checklist X11, R05): the client's bastion
token never reaches the upstream; each person's own upstream token does, never another's. MCP
2025-11-25 client/elicitation, "URL Elicitation Required Error" (checklist X09): a person
without a connection gets -32042 with a URL on bastion's issuer that carries nothing secret
("Safe URL Handling"). Real pieces throughout (tests/vault/gateway_stack.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from bastion.clock import system_clock
from bastion.config import Settings
from bastion.store.schema import upstream_connect_requests
from tests.support.live import free_port
from tests.vault.gateway_stack import (
    ACCEPT,
    INIT,
    UPSTREAM,
    VaultStack,
    elicitation_id_in,
    elicitation_of,
    vault_stack,
)


def call(name: str, request_id: int = 2) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name}}


@pytest.fixture
async def stack(make_settings: Callable[..., Settings]) -> AsyncIterator[VaultStack]:
    async with vault_stack(make_settings) as running:
        yield running


async def whoami(stack: VaultStack, token: str) -> str:
    """Initialize a session through the gateway and call the upstream's whoami tool."""
    init = await stack.post(token, INIT)
    assert init.status_code == 200, init.text
    body = _json(init)
    assert "result" in body, body
    session = init.headers["mcp-session-id"]
    headers = {"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
    await stack.post(token, {"jsonrpc": "2.0", "method": "notifications/initialized"}, **headers)
    answer = await stack.post(token, call("whoami"), **headers)
    assert answer.status_code == 200, answer.text
    result = _json(answer)["result"]
    assert not result.get("isError"), result
    return str(result["content"][0]["text"])


def _json(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC message of a JSON or single-event SSE answer."""
    if response.headers["content-type"].startswith("text/event-stream"):
        import json

        [data] = [
            line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")
        ]
        found: dict[str, Any] = json.loads(data)
        return found
    found = response.json()
    return found


# -- who must not get through -----------------------------------------------------------------


async def test_x11_a_machine_client_is_refused_and_nothing_reaches_the_upstream(
    stack: VaultStack,
) -> None:
    """A client_credentials token speaks for no person: there is no upstream account to act
    for. 403 with a JSON-RPC error saying a person must sign in; the upstream sees nothing."""
    token = await stack.machine_token()
    answer = await stack.post(token, INIT)
    assert answer.status_code == 403
    body = answer.json()
    assert body["id"] == 1
    assert body["error"]["code"] == -32600
    assert "person" in body["error"]["message"]
    assert "-32042" not in answer.text and "elicitation" not in answer.text
    assert stack.upstream.authorizations == []


async def test_x09_a_person_without_a_connection_gets_url_elicitation_required(
    stack: VaultStack,
) -> None:
    """MCP 2025-11-25 client/elicitation: -32042 with one URL elicitation, even for
    ``initialize``; the URL is bastion's connect page for this upstream, its only parameter the
    elicitation id, which is random, recorded for this person and client, and nothing else
    ("Safe URL Handling": no token, no user id in it). The message carries the URL for clients
    without URL elicitation. Nothing reaches the upstream."""
    alice_id, token = await stack.person("alice")
    answer = await stack.post(token, INIT)
    assert answer.status_code == 200
    body = answer.json()
    assert body["id"] == 1 and "result" not in body
    elicitation = elicitation_of(body)
    url = elicitation["url"]
    assert elicitation["mode"] == "url"
    assert url.startswith(f"{stack.issuer}/connect/{UPSTREAM}?")
    assert set(parse_qs(urlsplit(url).query)) == {"elicitation"}
    elicitation_id = elicitation_id_in(url)
    assert elicitation["elicitationId"] == elicitation_id
    assert len(elicitation_id) >= 43  # 32 random bytes
    assert url in body["error"]["message"] and url in elicitation["message"]
    for secret in (token, alice_id, stack.public_client_id):
        assert secret not in url
    request = await stack.connect_request(elicitation_id)
    assert request is not None
    assert (request.user_id, request.upstream) == (alice_id, UPSTREAM)
    assert request.client_id == stack.public_client_id
    assert request.completed_at is None
    assert request.expires_at > system_clock()
    assert stack.upstream.authorizations == []


async def test_x09_a_batch_gets_one_elicitation_per_request_notifications_202_get_403(
    stack: VaultStack,
) -> None:
    """Each request of a batch is answered -32042 (notifications get no answer, JSON-RPC
    2.0 §6); a POST of only notifications is accepted (202) and not forwarded; a GET (the SSE
    stream) and a DELETE get 403 with a JSON-RPC error, never 401 (bastion's token is fine)."""
    _, token = await stack.person("alice")
    batch = [call("whoami", 7), {"jsonrpc": "2.0", "method": "notifications/x"}, call("whoami", 8)]
    answer = await stack.post(token, batch)
    assert answer.status_code == 200
    assert [a["id"] for a in answer.json()] == [7, 8]
    assert {elicitation_of(a)["mode"] for a in answer.json()} == {"url"}
    notification = await stack.post(
        token, {"jsonrpc": "2.0", "method": "notifications/initialized"}
    )
    assert notification.status_code == 202 and notification.content == b""
    async with httpx.AsyncClient(timeout=10) as http:
        for method in ("GET", "DELETE"):
            response = await http.request(
                method, stack.url, headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT}
            )
            assert response.status_code == 403, (method, response.text)
            assert "connect" in response.json()["error"]["message"]
            assert "www-authenticate" not in response.headers
    assert stack.upstream.authorizations == []


async def test_x11_alice_s_connection_is_never_used_for_bob(stack: VaultStack) -> None:
    """With only alice connected, bob is asked to connect (his own elicitation), and nothing
    of his reaches the upstream; alice's call carries her upstream token, never a bastion
    token."""
    alice_id, alice = await stack.person("alice")
    bob_id, bob = await stack.person("bob")
    await stack.seed_connection(alice_id, await stack.upstream_tokens("alice-upstream"))
    answer = await stack.post(bob, INIT)
    request = await stack.connect_request(elicitation_id_in(elicitation_of(answer.json())["url"]))
    assert request is not None and request.user_id == bob_id
    assert stack.upstream.authorizations == []
    assert await whoami(stack, alice) == "alice-upstream"
    connection = await stack.connection(alice_id)
    assert connection is not None
    upstream_token = stack.open_token(connection)
    assert set(stack.upstream.authorizations) == {f"Bearer {upstream_token}"}
    assert await stack.connection(bob_id) is None


async def test_x11_the_client_s_bastion_token_never_reaches_the_upstream(
    stack: VaultStack,
) -> None:
    """R05 for auth = "oauth": whatever the client sends as Authorization, the upstream gets
    only the person's upstream token (and bob gets his own upstream identity)."""
    alice_id, alice = await stack.person("alice")
    bob_id, bob = await stack.person("bob")
    await stack.seed_connection(alice_id, await stack.upstream_tokens("alice-upstream"))
    await stack.seed_connection(bob_id, await stack.upstream_tokens("bob-upstream"))
    assert await whoami(stack, alice) == "alice-upstream"
    assert await whoami(stack, bob) == "bob-upstream"
    seen = "\n".join(a or "" for _, a in stack.upstream.seen)
    assert alice not in seen and bob not in seen
    assert all(a is not None and a.startswith("Bearer ") for a in stack.upstream.authorizations)


async def test_upstream_401_forgets_the_connection_and_elicits_again(stack: VaultStack) -> None:
    """The person's grant revoked at the upstream (RFC 7009): the upstream answers 401, the
    gateway deletes the connection and answers -32042 (not 502), and again on the next call
    (no error loop); once connected again the call goes through."""
    alice_id, alice = await stack.person("alice")
    tokens = await stack.upstream_tokens("alice-upstream")
    await stack.seed_connection(alice_id, tokens)
    assert await whoami(stack, alice) == "alice-upstream"
    await stack.revoke_upstream(tokens["access_token"])
    refused = await stack.post(alice, INIT)
    assert refused.status_code == 200
    elicitation_of(refused.json())
    assert await stack.connection(alice_id) is None
    again = await stack.post(alice, INIT)
    assert again.status_code == 200
    elicitation_of(again.json())
    await stack.seed_connection(alice_id, await stack.upstream_tokens("alice-upstream"))
    assert await whoami(stack, alice) == "alice-upstream"


async def test_an_expired_upstream_token_is_refreshed_once(stack: VaultStack) -> None:
    """A token past its refresh point (expires_at - refresh_margin) is refreshed before the
    call (refresh_token grant, OAuth 2.1 §4.3); the new tokens are stored encrypted and used
    from then on, without another refresh."""
    alice_id, alice = await stack.person("alice")
    tokens = await stack.upstream_tokens("alice-upstream")
    assert tokens.get("refresh_token")
    await stack.seed_connection(alice_id, tokens, expires_at=system_clock() + 5)
    assert await whoami(stack, alice) == "alice-upstream"
    refreshed = await stack.connection(alice_id)
    assert refreshed is not None and refreshed.refreshed_at is not None
    assert refreshed.expires_at is not None and refreshed.expires_at > system_clock() + 600
    assert refreshed.refresh_lease_until is None
    new_token = stack.open_token(refreshed)
    assert new_token != tokens["access_token"]
    assert stack.open_token(refreshed, "refresh") != tokens["refresh_token"]  # rotated
    assert tokens["access_token"] not in refreshed.access_token_encrypted
    assert stack.upstream.authorizations[-1] == f"Bearer {new_token}"
    assert f"Bearer {tokens['access_token']}" not in stack.upstream.authorizations
    assert await whoami(stack, alice) == "alice-upstream"
    again = await stack.connection(alice_id)
    assert again is not None and again.refreshed_at == refreshed.refreshed_at
    assert "grant.error" not in stack.op.log()


async def test_a_refused_refresh_elicits_and_deletes_the_connection(stack: VaultStack) -> None:
    """invalid_grant on refresh (the refresh token revoked at the upstream, RFC 7009): the
    grant is gone, so the connection is deleted and the person asked to connect (-32042)."""
    alice_id, alice = await stack.person("alice")
    tokens = await stack.upstream_tokens("alice-upstream")
    await stack.seed_connection(alice_id, tokens, expires_at=system_clock() - 1)
    await stack.revoke_upstream(tokens["refresh_token"], "refresh_token")
    answer = await stack.post(alice, INIT)
    assert answer.status_code == 200
    elicitation_of(answer.json())
    assert await stack.connection(alice_id) is None
    assert stack.upstream.authorizations == []


async def test_an_unreachable_upstream_authorization_server_is_502_naming_the_upstream(
    make_settings: Callable[..., Settings],
) -> None:
    """The upstream's authorization server cannot be reached (here: configured on a port where
    nothing listens): a person with a connection gets 502 with a JSON-RPC error naming the
    upstream, not an elicitation (connecting again would not help); a person without one is
    still asked to connect, which needs no request upstream."""
    nowhere = f"http://127.0.0.1:{free_port()}/oidc"
    oauth = {"authorization_server": nowhere, "resource": "http://127.0.0.1:1/mcp"}
    async with vault_stack(make_settings, oauth=oauth) as stack:
        alice_id, alice = await stack.person("alice")
        _, bob = await stack.person("bob")
        await stack.seed_connection(alice_id, await stack.upstream_tokens("alice-upstream"))
        answer = await stack.post(alice, INIT)
        assert answer.status_code == 502
        error = answer.json()["error"]
        assert answer.json()["id"] == 1
        assert error["code"] == -32000 and "'up'" in error["message"]
        assert "try again later" in error["message"]
        assert "-32042" not in answer.text
        elicitation_of((await stack.post(bob, INIT)).json())
        assert stack.upstream.authorizations == []


async def test_x09_a_person_asking_again_gets_the_same_live_elicitation(
    stack: VaultStack,
) -> None:
    """A client retrying before the person connected is sent the elicitation it already has
    (one link to follow, one row), not a new one per call; another person never gets it."""
    _, alice = await stack.person("alice")
    _, bob = await stack.person("bob")
    first = elicitation_of((await stack.post(alice, INIT)).json())
    again = elicitation_of((await stack.post(alice, call("whoami"))).json())
    theirs = elicitation_of((await stack.post(bob, INIT)).json())
    assert again["elicitationId"] == first["elicitationId"]
    assert theirs["elicitationId"] != first["elicitationId"]
    async with stack.db_session() as conn:
        rows = (await conn.execute(sa.select(upstream_connect_requests))).all()
    assert len(rows) == 2


async def test_a_failing_token_store_is_503_and_nothing_reaches_the_upstream(
    stack: VaultStack,
) -> None:
    """The database holding the tokens fails (here: its table is gone): 503 with a JSON-RPC
    error, never a 500 or a stack trace, and the call does not go upstream without a token."""
    alice_id, alice = await stack.person("alice")
    await stack.seed_connection(alice_id, await stack.upstream_tokens("alice-upstream"))
    async with stack.db_session(write=True) as conn:
        await conn.execute(sa.text("DROP TABLE upstream_connections"))
    answer = await stack.post(alice, INIT)
    assert answer.status_code == 503
    body = answer.json()
    assert body["id"] == 1 and body["error"]["code"] == -32000
    assert "token store" in body["error"]["message"]
    assert "Traceback" not in answer.text
    assert stack.upstream.authorizations == []
