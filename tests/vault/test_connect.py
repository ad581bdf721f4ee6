"""The connect pages (vault.connect) against a live authorization server and the OAuth-protected
upstream of tests/support/oauth_upstream.py (node-oidc-provider and an ``mcp`` SDK server), over
real HTTP, on SQLite and PostgreSQL.

Who must not get in comes first: no session, a link made for another person (MCP 2025-11-25
elicitation "Phishing", X09), an expired, unknown or other upstream's link, a GET that would
redirect upstream, a form from another site, a callback that is unknown, replayed, from another
browser or another person, an upstream error, an ``iss`` that is not the upstream's (RFC 9207
§2.4). Then alice connects, and her tokens are stored encrypted and shown nowhere (X11).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from bastion.authserver.app import create_app
from bastion.authserver.secret_key import cipher_for
from bastion.config import Settings
from bastion.config.gateway import GatewaySettings
from bastion.store import upstream_connections as repo
from bastion.store.database import Database
from bastion.store.schema import (
    auth_audit,
    upstream_connect_requests,
    upstream_connect_states,
    upstream_connections,
    users,
)
from bastion.store.sealed import connection_binding
from bastion.store.upstream_connections import ConnectRequest
from tests.console.conftest import Clock, Console, csrf_of
from tests.support.flow import PASSWORD, add_user
from tests.support.live import free_port, serve
from tests.support.oauth_upstream import OAuthUpstream, oauth_upstream
from tests.support.oidc_provider import authorization_response


@dataclass
class Vault:
    """A live authorization server whose gateway configuration has two auth = "oauth"
    upstreams (notes, ledger: the same server), and that upstream."""

    console: Console
    upstream: OAuthUpstream

    @property
    def issuer(self) -> str:
        return self.console.issuer

    def database(self) -> Database:
        return self.console.database()

    async def user_id(self, username: str) -> str:
        db = self.database()
        try:
            async with db.connect() as conn:
                found = await conn.scalar(sa.select(users.c.id).where(users.c.username == username))
        finally:
            await db.dispose()
        assert isinstance(found, str)
        return found

    async def elicitation(
        self, username: str, upstream: str = "notes", *, expires_in: int = 600
    ) -> str:
        """A URL elicitation as the gateway stores it, for ``username``'s call."""
        request_id = secrets.token_urlsafe(32)
        now = int(time.time())
        db = self.database()
        try:
            async with db.transaction() as conn:
                await repo.save_request(
                    conn,
                    ConnectRequest(
                        id=request_id,
                        user_id=await self.user_id(username),
                        upstream=upstream,
                        client_id="some-mcp-client",
                        created_at=now,
                        expires_at=now + expires_in,
                    ),
                )
        finally:
            await db.dispose()
        return request_id

    async def rows(self, table: sa.Table) -> list[dict[str, Any]]:
        db = self.database()
        try:
            async with db.connect() as conn:
                return [dict(r._mapping) for r in await conn.execute(sa.select(table))]
        finally:
            await db.dispose()

    async def started(self, http: httpx.AsyncClient, elicitation: str | None = None) -> str:
        """The connect page's button pressed in ``http``'s browser: the authorization URL."""
        query = f"?elicitation={elicitation}" if elicitation else ""
        page = await http.get(f"/connect/notes{query}")
        assert page.status_code == 200, page.text
        form = {"csrf": csrf_of(page.text)}
        if elicitation:
            form["elicitation"] = elicitation
        sent = await http.post("/connect/notes", data=form)
        assert sent.status_code == 303, sent.text
        return sent.headers["location"]

    async def upstream_answer(self, url: str, login: str = "alice-upstream") -> dict[str, str]:
        """The person signs in at the upstream's provider and consents; its redirect's query."""
        async with httpx.AsyncClient(timeout=10, follow_redirects=False) as browser:
            return await authorization_response(
                browser, url, redirect_uri=f"{self.issuer}/connect/callback", login=login
            )


@pytest.fixture
async def vault(make_settings: Callable[..., Settings]) -> AsyncIterator[Vault]:
    """bastion pre-registered at the upstream."""
    async with running_vault(make_settings) as running:
        yield running


@contextlib.asynccontextmanager
async def running_vault(
    make_settings: Callable[..., Settings], *, pre_registered: bool = True
) -> AsyncIterator[Vault]:
    """The authorization server with alice and bob, and the upstream: bastion pre-registered
    there, or (``pre_registered=False``) registering itself (RFC 7591)."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    async with oauth_upstream(
        bastion_issuer=issuer if pre_registered else None, registration=not pre_registered
    ) as up:
        settings: Settings = make_settings(
            issuer=issuer,
            gateway=GatewaySettings(
                upstreams=[
                    up.upstream_settings("notes", "/mcp/notes"),
                    up.upstream_settings("ledger", "/mcp/ledger"),
                ]
            ),
        )
        await add_user(settings, "alice", name="Alice")
        await add_user(settings, "bob", name="Bob")
        clock = Clock()
        async with serve(create_app(settings, clock=clock), port=port):
            console = Console(issuer, settings, clock)
            try:
                yield Vault(console, up)
            finally:
                for http in console.clients:
                    await http.aclose()


def _callback(state: str, **params: str) -> str:
    return "/connect/callback?" + urlencode({"state": state, **params})


# -- who must not get in -------------------------------------------------------------------------


async def test_x09_connect_page_needs_a_session_and_comes_back_after_sign_in(vault: Vault) -> None:
    """Without a bastion session: 303 to the sign-in, whose ``next`` may be exactly this connect
    page (with its elicitation) and nothing else."""
    elicitation = await vault.elicitation("alice")
    wanted = f"/connect/notes?elicitation={elicitation}"
    async with httpx.AsyncClient(base_url=vault.issuer) as http:
        answer = await http.get(wanted)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/signin?" + urlencode({"next": wanted})
        assert (await http.post("/connect/notes", data={"csrf": "x"})).status_code == 303
    for next_url, lands in [
        (wanted, wanted),
        ("/connect/notes", "/connect/notes"),
        (wanted + "&then=https://evil.example", "/account"),
        ("/connect/callback?state=x", "/account"),
        ("/connect/../token", "/account"),
        ("//evil.example/connect/notes", "/account"),
    ]:
        async with httpx.AsyncClient(base_url=vault.issuer) as http:
            form = await http.get("/signin", params={"next": next_url})
            signed = await http.post(
                "/signin",
                data={
                    "csrf": csrf_of(form.text),
                    "next": next_url,
                    "username": "alice",
                    "password": PASSWORD,
                },
            )
        assert signed.status_code == 303, signed.text
        assert signed.headers["location"] == lands, next_url


async def test_x09_a_link_made_for_another_person_is_refused(vault: Vault) -> None:
    """MCP 2025-11-25 elicitation "Phishing": bob opening alice's link is refused (GET and
    POST) and nothing is stored or completed."""
    elicitation = await vault.elicitation("alice")
    bob = await vault.console.signed_in("bob")
    page = await bob.get(f"/connect/notes?elicitation={elicitation}")
    assert page.status_code == 403
    assert "made for another person" in page.text
    assert "Continue to" not in page.text
    own = await bob.get("/connect/notes")
    sent = await bob.post(
        "/connect/notes", data={"csrf": csrf_of(own.text), "elicitation": elicitation}
    )
    assert sent.status_code == 403
    assert await vault.rows(upstream_connect_states) == []
    assert await vault.rows(upstream_connections) == []
    [request] = await vault.rows(upstream_connect_requests)
    assert request["completed_at"] is None


async def test_x09_expired_unknown_and_other_upstream_links_are_refused(vault: Vault) -> None:
    expired = await vault.elicitation("alice", expires_in=-1)
    ledger = await vault.elicitation("alice", "ledger")
    alice = await vault.console.signed_in("alice")
    for query, status in [
        (f"elicitation={expired}", 404),
        ("elicitation=" + secrets.token_urlsafe(32), 404),
        ("elicitation=not%20an%20id", 404),
        (f"elicitation={ledger}", 400),
    ]:
        answer = await alice.get(f"/connect/notes?{query}")
        assert answer.status_code == status, query
        assert "Continue to" not in answer.text
    assert (await alice.get("/connect/nothing-here")).status_code == 404
    assert await vault.rows(upstream_connect_states) == []


async def test_x09_a_get_never_redirects_upstream_and_the_form_needs_csrf_and_same_origin(
    vault: Vault,
) -> None:
    """The page is a page (a GET that redirected would let any site start a sign-in in the
    person's name); the button's POST needs the session's CSRF token and this origin."""
    alice = await vault.console.signed_in("alice")
    page = await alice.get("/connect/notes")
    assert page.status_code == 200
    assert "location" not in page.headers
    assert "Continue to 127.0.0.1" in page.text
    csrf = csrf_of(page.text)
    for form, headers in [
        ({"elicitation": ""}, {}),
        ({"csrf": "wrong"}, {}),
        ({"csrf": csrf}, {"Origin": "https://evil.example"}),
        ({"csrf": csrf}, {"Sec-Fetch-Site": "cross-site"}),
    ]:
        refused = await alice.post("/connect/notes", data=form, headers=headers)
        assert refused.status_code == 403, (form, headers)
    assert await vault.rows(upstream_connect_states) == []
    location = await vault.started(alice)
    assert location.startswith(vault.upstream.provider.authorization_endpoint)
    params = parse_qs(urlsplit(location).query)
    assert params["code_challenge_method"] == ["S256"]
    assert params["resource"] == [vault.upstream.resource]
    [state] = await vault.rows(upstream_connect_states)
    assert state["state_hash"] != params["state"][0]  # only its hash is stored
    assert params["state"][0] not in str(state)


async def test_c11_x09_callback_refusals(vault: Vault) -> None:
    """Unknown state; a callback from another browser (no binding cookie) or another signed-in
    person; the upstream's access_denied; an ``iss`` that is not the upstream's, or none when it
    advertises it (RFC 9207 §2.4); a replayed state. Nothing is connected by any of them."""
    alice = await vault.console.signed_in("alice")
    issuer = vault.upstream.issuer
    assert (await alice.get(_callback("never-issued", code="x", iss=issuer))).status_code == 400

    location = await vault.started(alice)
    state = parse_qs(urlsplit(location).query)["state"][0]
    other_browser = await vault.console.signed_in("alice")
    answer = await other_browser.get(_callback(state, code="x", iss=issuer))
    assert answer.status_code == 403
    assert "another browser" in answer.text
    assert (await alice.get(_callback(state, code="x", iss=issuer))).status_code == 400  # used

    location = await vault.started(alice)
    state = parse_qs(urlsplit(location).query)["state"][0]
    bob = await vault.console.signed_in("bob")
    binding = alice.cookies.get("bastion-connect")
    assert binding
    bob.cookies.set("bastion-connect", binding, domain="127.0.0.1")
    answer = await bob.get(_callback(state, code="x", iss=issuer))
    assert answer.status_code == 403
    assert "another person" in answer.text

    for params, status in [
        ({"error": "access_denied", "iss": issuer}, 403),
        ({"code": "x", "iss": "http://127.0.0.1:1/evil"}, 400),
        ({"code": "x"}, 400),
    ]:
        location = await vault.started(alice)
        state = parse_qs(urlsplit(location).query)["state"][0]
        answer = await alice.get(_callback(state, **params))
        assert answer.status_code == status, params
    assert await vault.rows(upstream_connections) == []
    events = [(r["type"], r["outcome"]) for r in await vault.rows(auth_audit)]
    assert ("upstream_connect_failed", "access_denied") in events
    assert ("upstream_connect_failed", "issuer_mismatch") in events
    assert ("upstream_connect_failed", "other_person") in events
    assert not any(kind == "upstream_connected" for kind, _ in events)


# -- who may -------------------------------------------------------------------------------------


def _claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


async def test_x11_alice_connects_and_her_tokens_are_stored_encrypted_and_shown_nowhere(
    vault: Vault, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole flow over HTTP: the connection row holds the tokens encrypted (no plaintext in
    any column), bound to alice and the upstream; they decrypt to the upstream's tokens for
    alice's account there; the page, the URLs and the log carry neither; the elicitation is
    complete and the trail says upstream_connected. A replay of the callback is refused."""
    caplog.set_level(logging.DEBUG)
    elicitation = await vault.elicitation("alice")
    alice = await vault.console.signed_in("alice")
    location = await vault.started(alice, elicitation)
    answer = await vault.upstream_answer(location, login="alice-upstream")
    callback = _callback(answer["state"], code=answer["code"], iss=answer["iss"])
    done = await alice.get(callback)
    assert done.status_code == 200, done.text
    assert "Connected to notes" in done.text

    [row] = await vault.rows(upstream_connections)
    alice_id = await vault.user_id("alice")
    assert (row["user_id"], row["upstream"], row["issuer"]) == (
        alice_id,
        "notes",
        vault.upstream.issuer,
    )
    cipher = cipher_for(vault.console.settings)
    access = cipher.decrypt(
        row["access_token_encrypted"], bound_to=connection_binding(alice_id, "notes", "access")
    ).decode()
    refresh = cipher.decrypt(
        row["refresh_token_encrypted"], bound_to=connection_binding(alice_id, "notes", "refresh")
    ).decode()
    claims = _claims(access)
    assert claims["sub"] == "alice-upstream"
    assert claims["aud"] == vault.upstream.resource
    assert row["expires_at"] is not None and row["expires_at"] > time.time()
    for token in (access, refresh):
        assert token not in str(row)
        assert token not in done.text
        assert token not in callback
        assert token not in caplog.text
    [request] = await vault.rows(upstream_connect_requests)
    assert request["completed_at"] is not None
    events = [(r["type"], r["subject"]) for r in await vault.rows(auth_audit)]
    assert ("upstream_connected", alice_id) in events
    assert (await alice.get(callback)).status_code == 400  # the state is consumed once


async def test_the_client_metadata_document_is_served(vault: Vault) -> None:
    async with httpx.AsyncClient(base_url=vault.issuer) as http:
        doc = (await http.get("/connect/client-metadata.json")).json()
    assert doc["client_id"] == f"{vault.issuer}/connect/client-metadata.json"
    assert doc["redirect_uris"] == [f"{vault.issuer}/connect/callback"]


async def test_no_connect_routes_without_an_oauth_upstream(
    make_settings: Callable[..., Settings],
) -> None:
    port = free_port()
    settings = make_settings(issuer=f"http://127.0.0.1:{port}")
    async with serve(create_app(settings), port=port) as base, httpx.AsyncClient() as http:
        assert (await http.get(f"{base}/connect/notes")).status_code == 404
        assert (await http.get(f"{base}/connect/client-metadata.json")).status_code == 404
