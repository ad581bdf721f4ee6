"""Log-in and consent, between /authorize and the redirect back (OAuth 2.1 §4.1.1, §7;
RFC 6749 §10.12 CSRF; RFC 6265bis cookie prefixes; MCP security considerations on consent and
unknown clients; checklist A03, A07).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from bastion.config import Settings
from bastion.oauth import pkce
from bastion.store import schema
from tests.authserver._tokens import FakeClock
from tests.authserver.browser_steps import (
    MovableClock,
    authorization_params,
    browse,
    count_rows,
    form_action,
    query_of,
)
from tests.support.asgi import running
from tests.support.flow import PASSWORD, REDIRECT_URI, add_user, authorize, csrf_of, register

ISSUER = "http://localhost"
VSCODE_CLIENT_ID = "aebc6443-996d-45c2-90f0-388ff96faa56"
VSCODE_REDIRECT = "http://127.0.0.1:33418/"
WEB_REDIRECT = "https://app.example.com/cb"
WEB_CLIENT = {
    "redirect_uris": [WEB_REDIRECT],
    "application_type": "web",
    "token_endpoint_auth_method": "client_secret_basic",
}


def start_url(client_id: str, issuer: str = ISSUER, **overrides: str | None) -> str:
    params = authorization_params(client_id, pkce.new_verifier(), **overrides)
    return f"{issuer}/authorize?{urlencode(params)}"


async def open_page(client: httpx.AsyncClient, client_id: str, **overrides: str | None) -> str:
    """Start an authorization request; return the URL of the interaction page it leads to."""
    response = await client.get(start_url(client_id, **overrides))
    assert response.status_code == 303, response.text
    location: str = response.headers["location"]
    return location


async def log_in(client: httpx.AsyncClient, page_url: str, password: str = PASSWORD) -> None:
    page = await client.get(page_url)
    assert 'name="password"' in page.text
    response = await client.post(
        f"{page_url}/login",
        data={"csrf": csrf_of(page.text), "username": "alice", "password": password},
    )
    assert response.status_code == 303, response.text


def cookie_attributes(header: str) -> tuple[str, str, dict[str, str]]:
    """Name, value and lower-cased attributes of one Set-Cookie header."""
    first, *rest = [part.strip() for part in header.split(";")]
    name, _, value = first.partition("=")
    attributes: dict[str, str] = {}
    for part in rest:
        key, _, val = part.partition("=")
        attributes[key.lower()] = val
    return name, value, attributes


def set_cookies(response: httpx.Response) -> dict[str, dict[str, str]]:
    return {
        name: attrs
        for name, _, attrs in map(cookie_attributes, response.headers.get_list("set-cookie"))
    }


def assert_page(response: httpx.Response, status: int, text: str) -> None:
    assert response.status_code == status, response.text
    assert "location" not in response.headers
    assert text in response.text
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


@pytest.fixture
async def client_id(settings: Settings, app_client: httpx.AsyncClient) -> str:
    await add_user(settings)
    reg = await register(app_client, client_name="Weather Desk")
    found: str = reg["client_id"]
    return found


# Log-in


async def test_wrong_password_gets_a_401_page_with_a_message_and_no_session(
    app_client: httpx.AsyncClient, client_id: str
) -> None:
    """A failed log-in shows the form again with a message; no session is started."""
    page_url = await open_page(app_client, client_id)
    page = await app_client.get(page_url)
    for username, password in (("alice", "wrong password"), ("mallory", PASSWORD)):
        response = await app_client.post(
            f"{page_url}/login",
            data={"csrf": csrf_of(page.text), "username": username, "password": password},
        )
        assert_page(response, 401, "The user name or password is not correct.")
        assert 'name="password"' in response.text
        assert "bastion-session" not in set_cookies(response)
    assert "bastion-session" not in app_client.cookies
    again = await app_client.get(page_url)
    assert 'name="password"' in again.text
    nul = await app_client.post(
        f"{page_url}/login",
        data={"csrf": csrf_of(page.text), "username": "alice\x00", "password": PASSWORD},
    )
    assert_page(nul, 400, "a parameter contains a NUL character")


@pytest.mark.parametrize("step", ["login", "consent"])
@pytest.mark.parametrize("attack", ["no_cookie", "mismatch", "no_field"])
async def test_post_without_a_matching_csrf_token_is_refused_with_403_and_issues_nothing(
    settings: Settings, app_client: httpx.AsyncClient, client_id: str, step: str, attack: str
) -> None:
    """RFC 6749 §10.12: the log-in and consent forms carry a CSRF token bound to the browser
    (double-submit cookie); without it nothing happens."""
    page_url = await open_page(app_client, client_id)
    if step == "consent":
        await log_in(app_client, page_url)
    page = await app_client.get(page_url)
    token = csrf_of(page.text)
    data = {"csrf": token, "username": "alice", "password": PASSWORD, "decision": "allow"}
    if attack == "no_cookie":
        del app_client.cookies["bastion-csrf"]
    elif attack == "mismatch":
        data["csrf"] = "A" * len(token)
    else:
        del data["csrf"]
    response = await app_client.post(f"{page_url}/{step}", data=data)
    assert_page(response, 403, "security token does not match")
    assert "bastion-session" not in set_cookies(response)
    assert await count_rows(settings, schema.authorization_codes) == 0
    if step == "login":
        assert "bastion-session" not in app_client.cookies


@pytest.mark.parametrize("step", ["login", "consent"])
@pytest.mark.parametrize("where", ["form", "cookie"])
async def test_csrf_token_with_non_ascii_characters_is_refused_with_403_not_a_server_error(
    settings: Settings, app_client: httpx.AsyncClient, client_id: str, step: str, where: str
) -> None:
    """Found by the fuzzer (tests/fuzz): a CSRF token with characters beyond ASCII, in the form
    or in the cookie, made the constant-time comparison raise (500). It is a mismatch."""
    page_url = await open_page(app_client, client_id)
    if step == "consent":
        await log_in(app_client, page_url)
    page = await app_client.get(page_url)
    token = csrf_of(page.text)
    data = {"csrf": token, "username": "alice", "password": PASSWORD, "decision": "allow"}
    if where == "form":
        data["csrf"] = "\u00e9" + token[1:]
        response = await app_client.post(f"{page_url}/{step}", data=data)
    else:
        del app_client.cookies["bastion-csrf"]
        session = app_client.cookies.get("bastion-session")
        cookie = b"bastion-csrf=\xe9" + token[1:].encode()
        if session is not None:
            cookie += f"; bastion-session={session}".encode()
        app_client.cookies.clear()
        response = await app_client.post(
            f"{page_url}/{step}", data=data, headers={"Cookie": cookie}
        )
    assert_page(response, 403, "security token does not match")
    assert await count_rows(settings, schema.authorization_codes) == 0


async def test_cookies_are_httponly_and_samesite_lax_on_plain_http(
    app_client: httpx.AsyncClient, client_id: str
) -> None:
    """Session and CSRF cookies are out of reach of scripts and not sent on cross-site POSTs.
    Plain http (loopback development) cannot use the __Host- prefix or Secure."""
    page_url = await open_page(app_client, client_id)
    page = await app_client.get(page_url)
    csrf = set_cookies(page)["bastion-csrf"]
    login = await app_client.post(
        f"{page_url}/login",
        data={"csrf": csrf_of(page.text), "username": "alice", "password": PASSWORD},
    )
    session = set_cookies(login)["bastion-session"]
    for attrs in (csrf, session):
        assert "httponly" in attrs
        assert attrs["samesite"].lower() == "lax"
        assert attrs["path"] == "/"
        assert "domain" not in attrs


async def test_cookies_under_https_use_the_host_prefix_secure_path_root_and_no_domain(
    make_settings: Callable[..., Settings],
) -> None:
    """RFC 6265bis §4.1.3.2: a __Host- cookie is Secure, Path=/ and has no Domain, so no
    sibling host can set or read it. The flow completes under https."""
    settings = make_settings(issuer="https://localhost")
    async with running(settings) as client:
        await add_user(settings)
        reg = await register(client)
        response = await client.get(start_url(reg["client_id"], issuer="https://localhost"))
        page_url = response.headers["location"]
        page = await client.get(page_url)
        login = await client.post(
            f"{page_url}/login",
            data={"csrf": csrf_of(page.text), "username": "alice", "password": PASSWORD},
        )
        assert login.status_code == 303, login.text
        cookies = {**set_cookies(page), **set_cookies(login)}
        assert set(cookies) == {"__Host-bastion-csrf", "__Host-bastion-session"}
        for attrs in cookies.values():
            assert "secure" in attrs
            assert "httponly" in attrs
            assert attrs["samesite"].lower() == "lax"
            assert attrs["path"] == "/"
            assert "domain" not in attrs
        done = await authorize(client, reg["client_id"])
        assert done.params["iss"] == "https://localhost"
        assert "code" in done.params


# Consent


async def test_consent_is_remembered_per_user_client_and_scopes(
    settings: Settings, app_client: httpx.AsyncClient, client_id: str
) -> None:
    """For a confidential client, a second authorization with already granted scopes skips the
    consent page; a new scope, another client or another user asks again."""
    web = await register(app_client, client_name="Web App", **WEB_CLIENT)
    first = await browse(app_client, start_url(web["client_id"], redirect_uri=WEB_REDIRECT))
    assert len(first.pages) == 2  # log-in, consent
    assert "code" in first.params
    same = await browse(app_client, start_url(web["client_id"], redirect_uri=WEB_REDIRECT))
    assert same.pages == []
    assert same.location.startswith(f"{WEB_REDIRECT}?")
    assert "code" in same.params
    assert same.params["iss"] == ISSUER
    wider = await browse(
        app_client,
        start_url(web["client_id"], redirect_uri=WEB_REDIRECT, scope="mcp:tools mcp:prompts"),
    )
    assert len(wider.pages) == 1
    assert "mcp:prompts" in wider.pages[0].text
    other = await register(app_client, client_name="Other app", **WEB_CLIENT)
    second_client = await browse(
        app_client, start_url(other["client_id"], redirect_uri=WEB_REDIRECT)
    )
    assert len(second_client.pages) == 1
    assert "Other app" in second_client.pages[0].text
    await add_user(settings, "bob")
    app_client.cookies.clear()
    bob = await browse(
        app_client, start_url(web["client_id"], redirect_uri=WEB_REDIRECT), username="bob"
    )
    assert len(bob.pages) == 2


async def test_public_loopback_client_is_asked_for_consent_every_time(
    app_client: httpx.AsyncClient, client_id: str
) -> None:
    """RFC 8252 §8.6: any program on the user's computer can present a public client's id with a
    loopback redirect URI of its own, so a remembered consent is not enough: the user is asked
    again (without signing in again), and the page carries the localhost warning."""
    first = await browse(app_client, start_url(client_id))
    assert len(first.pages) == 2  # log-in, consent
    again = await browse(app_client, start_url(client_id))
    assert len(again.pages) == 1
    assert "this computer" in again.pages[0].text
    assert "code" in again.params


async def test_l4_public_client_on_a_private_use_scheme_is_asked_every_time(
    app_client: httpx.AsyncClient, client_id: str
) -> None:
    """L4, RFC 8252 §8.6: a remembered consent never re-authorizes a public client silently,
    whatever its redirect URI: any app on the device can claim a private-use URI scheme."""
    native = await register(
        app_client, redirect_uris=["com.example.app:/callback"], client_name="Native app"
    )
    first = await browse(
        app_client, start_url(native["client_id"], redirect_uri="com.example.app:/callback")
    )
    assert len(first.pages) == 2  # log-in, consent
    again = await browse(
        app_client, start_url(native["client_id"], redirect_uri="com.example.app:/callback")
    )
    assert len(again.pages) == 1
    assert 'value="allow"' in again.pages[0].text
    assert "code" in again.params


async def test_remembered_consent_expires_after_consent_ttl(
    make_settings: Callable[..., Settings],
) -> None:
    """login.consent_ttl: a consent older than this is asked again."""
    settings = make_settings(login={"consent_ttl": 3600})
    clock = FakeClock()
    async with running(settings, clock=clock) as client:
        await add_user(settings)
        web = await register(client, client_name="Web App", **WEB_CLIENT)
        url = start_url(web["client_id"], redirect_uri=WEB_REDIRECT)
        assert len((await browse(client, url)).pages) == 2
        clock.advance(3000)
        assert (await browse(client, url)).pages == []
        clock.advance(3601)
        assert len((await browse(client, url)).pages) == 1  # consent only: still signed in


async def test_consent_is_asked_every_time_when_remembering_is_off(
    make_settings: Callable[..., Settings],
) -> None:
    """login.remember_consent = false: every authorization shows the consent page."""
    settings = make_settings(login={"remember_consent": False})
    async with running(settings) as client:
        await add_user(settings)
        reg = await register(client)
        await browse(client, start_url(reg["client_id"]))
        again = await browse(client, start_url(reg["client_id"]))
        assert len(again.pages) == 1
        assert 'value="allow"' in again.pages[0].text


async def test_deny_redirects_access_denied_with_state_and_iss(
    settings: Settings, app_client: httpx.AsyncClient, client_id: str
) -> None:
    """RFC 6749 §4.1.2.1 access_denied; RFC 9207 iss; nothing issued and nothing remembered."""
    done = await authorize(app_client, client_id, decision="deny")
    assert done.location.split("?")[0] == REDIRECT_URI
    assert done.params["error"] == "access_denied"
    assert done.params["state"] == "xyz"
    assert done.params["iss"] == ISSUER
    assert "code" not in done.params
    assert await count_rows(settings, schema.authorization_codes) == 0
    again = await browse(app_client, start_url(client_id))
    assert len(again.pages) == 1  # consent is asked again


async def test_expired_unknown_or_finished_request_id_gets_an_expired_page(
    make_settings: Callable[..., Settings],
) -> None:
    """A pending request lives 15 minutes and is used once: after that every interaction URL
    shows a page telling the user to start again (never a redirect)."""
    settings = make_settings()
    clock = MovableClock()
    async with running(settings, clock=clock) as client:
        await add_user(settings)
        reg = await register(client)
        page_url = await open_page(client, reg["client_id"])
        page = await client.get(page_url)
        clock.advance(901)
        expired = await client.get(page_url)
        assert_page(expired, 400, "has expired or was already completed")
        login = await client.post(
            f"{page_url}/login",
            data={"csrf": csrf_of(page.text), "username": "alice", "password": PASSWORD},
        )
        assert_page(login, 400, "has expired or was already completed")
        for bogus in ("not-a-request", "%00", "a%00b/login"):
            url = f"{ISSUER}/interaction/{bogus}"
            method = "POST" if bogus.endswith("/login") else "GET"
            unknown = await client.request(method, url, data={"csrf": "x"})
            assert_page(unknown, 400, "has expired or was already completed")
        done = await browse(client, start_url(reg["client_id"]))
        finished = await client.get(urlsplit(str(done.pages[-1].url)).path)
        assert_page(finished, 400, "has expired or was already completed")


async def test_consent_form_cannot_be_submitted_twice(
    settings: Settings, app_client: httpx.AsyncClient, client_id: str
) -> None:
    """The pending request is finished with one atomic delete: a second submission (or a
    simultaneous one) gets the expired page and only one code exists."""
    page_url = await open_page(app_client, client_id)
    await log_in(app_client, page_url)
    page = await app_client.get(page_url)
    data = {"csrf": csrf_of(page.text), "decision": "allow"}
    first = await app_client.post(f"{page_url}/consent", data=data)
    assert first.status_code == 303
    assert "code" in query_of(first.headers["location"])
    second = await app_client.post(f"{page_url}/consent", data=data)
    assert_page(second, 400, "has expired or was already completed")
    denied = await app_client.post(f"{page_url}/consent", data={**data, "decision": "deny"})
    assert_page(denied, 400, "has expired or was already completed")
    assert await count_rows(settings, schema.authorization_codes) == 1


async def test_simultaneous_consent_submissions_issue_one_code(
    make_settings: Callable[..., Settings],
) -> None:
    """Two racing submissions of the same consent form: exactly one redirect with a code."""
    settings = make_settings(login={"remember_consent": False})
    async with running(settings) as client:
        await add_user(settings)
        reg = await register(client)
        page_url = await open_page(client, reg["client_id"])
        await log_in(client, page_url)
        page = await client.get(page_url)
        data = {"csrf": csrf_of(page.text), "decision": "allow"}
        answers = await asyncio.gather(
            *(client.post(f"{page_url}/consent", data=data) for _ in range(4))
        )
        assert sorted(a.status_code for a in answers) == [303, 400, 400, 400]
        assert await count_rows(settings, schema.authorization_codes) == 1


async def test_logout_ends_the_session(app_client: httpx.AsyncClient, client_id: str) -> None:
    """After signing out, the next authorization asks to log in again, and the old session
    cookie no longer works (the session is ended on the server, not only in the browser)."""
    await browse(app_client, start_url(client_id))
    old_session = app_client.cookies["bastion-session"]
    page = await app_client.get("/logout")
    assert page.status_code == 200
    assert form_action(page.text) == "/logout"
    refused = await app_client.post("/logout", data={"csrf": "A" * 43})
    assert refused.status_code == 403
    still_signed_in = await browse(app_client, start_url(client_id))
    assert not any('name="password"' in p.text for p in still_signed_in.pages)
    response = await app_client.post("/logout", data={"csrf": csrf_of(page.text)})
    assert response.status_code == 200
    assert "Signed out" in response.text
    assert "bastion-session" not in app_client.cookies
    again = await browse(app_client, start_url(client_id))
    assert 'name="password"' in again.pages[0].text
    app_client.cookies.clear()
    app_client.cookies.set("bastion-session", old_session, domain="localhost")
    page_url = await open_page(app_client, client_id)
    replayed = await app_client.get(page_url)
    assert 'name="password"' in replayed.text


async def test_a03_consent_page_shows_client_name_redirect_host_and_loopback_warning(
    app_client: httpx.AsyncClient, client_id: str
) -> None:
    """MCP security considerations: show the client and where the authorization goes; warn
    when the redirect URI is on this computer (any local program could claim it)."""
    page_url = await open_page(app_client, client_id)
    login = await app_client.get(page_url)
    assert "Weather Desk" in login.text
    assert "127.0.0.1" in login.text
    await log_in(app_client, page_url)
    consent = await app_client.get(page_url)
    assert "Weather Desk" in consent.text
    assert '<strong class="host redirect-host">127.0.0.1</strong>' in consent.text
    assert 'class="warning"' in consent.text
    assert "this computer" in consent.text
    assert "http://localhost:9001/mcp" in consent.text
    assert "mcp:tools" in consent.text


async def test_a03_consent_page_for_an_https_redirect_has_no_loopback_warning(
    app_client: httpx.AsyncClient, client_id: str
) -> None:
    """The warning is specific to loopback redirect URIs; the https host is shown instead."""
    reg = await register(app_client, client_name="Web App", **WEB_CLIENT)
    page_url = await open_page(app_client, reg["client_id"], redirect_uri=WEB_REDIRECT)
    await log_in(app_client, page_url)
    consent = await app_client.get(page_url)
    assert '<strong class="host redirect-host">app.example.com</strong>' in consent.text
    assert "this computer" not in consent.text


async def test_client_name_is_escaped_on_the_pages(app_client: httpx.AsyncClient) -> None:
    """A client chooses its own name: it is shown as text, never as markup."""
    reg = await register(app_client, client_name='<script>alert("x")</script>')
    page_url = await open_page(app_client, reg["client_id"])
    page = await app_client.get(page_url)
    assert "<script>" not in page.text
    assert "&lt;script&gt;" in page.text


# Unknown clients (unknown_clients.policy)


async def test_unknown_client_is_refused_by_default_with_a_page_naming_the_setting(
    app_client: httpx.AsyncClient,
) -> None:
    """unknown_clients.policy = refuse: an unregistered client_id gets a clear page saying how
    to admit it, and no redirect."""
    params = authorization_params(
        VSCODE_CLIENT_ID, pkce.new_verifier(), redirect_uri=VSCODE_REDIRECT
    )
    response = await app_client.get("/authorize", params=params)
    assert_page(response, 400, "unknown_clients.policy")
    assert VSCODE_CLIENT_ID in response.text


async def test_loopback_public_admits_an_unregistered_client_for_loopback_redirects_only(
    make_settings: Callable[..., Settings],
) -> None:
    """unknown_clients.policy = loopback_public (VS Code arrives with its own client_id): the
    client is public, limited to loopback redirect URIs, completes a flow with
    token_endpoint_auth_method none, and is never stored."""
    settings = make_settings(unknown_clients={"policy": "loopback_public"})
    async with running(settings) as client:
        await add_user(settings)
        for refused in ("https://vscode.dev/redirect", "http://example.com:33418/"):
            params = authorization_params(
                VSCODE_CLIENT_ID, pkce.new_verifier(), redirect_uri=refused
            )
            response = await client.get("/authorize", params=params)
            assert_page(response, 400, "Invalid redirect URI")
        page_url = await open_page(client, VSCODE_CLIENT_ID, redirect_uri=VSCODE_REDIRECT)
        await log_in(client, page_url)
        consent = await client.get(page_url)
        assert "not registered with this server" in consent.text
        assert "this computer" in consent.text
        done = await authorize(client, VSCODE_CLIENT_ID, redirect_uri="http://127.0.0.1:40123/")
        assert done.params["iss"] == ISSUER
        token = await client.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": done.params["code"],
                "redirect_uri": "http://127.0.0.1:40123/",
                "code_verifier": done.verifier,
                "client_id": VSCODE_CLIENT_ID,
            },
        )
        assert token.status_code == 200, token.text
        assert token.json()["token_type"] == "Bearer"
        secret = await client.post(
            "/token",
            data={"grant_type": "client_credentials", "client_id": VSCODE_CLIENT_ID},
        )
        assert secret.status_code == 400
        assert secret.json()["error"] == "unauthorized_client"
    assert await count_rows(settings, schema.clients) == 0


# The pages as a person reads them (issue: the first hour of a new user)


async def test_a_wrong_password_keeps_the_user_name_and_moves_to_the_password(
    app_client: httpx.AsyncClient, client_id: str
) -> None:
    page_url = await open_page(app_client, client_id)
    page = await app_client.get(page_url)
    assert 'value="' not in page.text.split('id="username"')[1].split(">")[0]
    response = await app_client.post(
        f"{page_url}/login",
        data={"csrf": csrf_of(page.text), "username": 'al"ice', "password": "wrong password"},
    )
    field = response.text.split('id="username"')[1].split(">")[0]
    assert 'value="al&#34;ice"' in field or 'value="al&quot;ice"' in field
    assert "autofocus" not in field
    assert "autofocus" in response.text.split('id="password"')[1].split(">")[0]


async def test_consent_names_the_resource_describes_scopes_once_and_marks_new_ones(
    make_settings: Callable[..., Settings],
) -> None:
    """A configured scope description is shown; a scope without one is shown once (not
    "notes:write notes:write"); at a step-up the scopes not consented before are marked new."""
    resource = "http://localhost:9001/mcp"
    settings = make_settings(
        resources=[
            {"uri": resource, "name": "Team notes", "scopes": ["mcp:tools", "notes:write", "x:y"]}
        ],
        scope_descriptions={"notes:write": "Add notes to the team notebook"},
    )
    await add_user(settings)
    async with running(settings) as client:
        web = await register(client, client_name="Web App", **WEB_CLIENT)
        first = await browse(client, start_url(web["client_id"], redirect_uri=WEB_REDIRECT))
        consent = first.pages[1].text
        assert '<strong class="resource-name">Team notes</strong>' in consent
        assert resource in consent
        assert 'class="new"' not in consent  # nothing was consented before: nothing is "new"
        wider = await browse(
            client,
            start_url(
                web["client_id"], redirect_uri=WEB_REDIRECT, scope="mcp:tools notes:write x:y"
            ),
        )
        [page] = wider.pages
        assert "<code>notes:write</code> Add notes to the team notebook" in page.text
        assert "<code>x:y</code> <span" in page.text  # no description: the name once
        assert "x:y x:y" not in page.text
        assert page.text.count('<span class="new">new</span>') == 2
        assert "<code>mcp:tools</code> List and call the server&#39;s tools</li>" in page.text


async def test_sign_out_says_who_is_signed_in_and_can_be_cancelled(
    app_client: httpx.AsyncClient, client_id: str
) -> None:
    nobody = await app_client.get("/logout")
    assert "Not signed in" in nobody.text and "<form" not in nobody.text
    await browse(app_client, start_url(client_id))
    page = await app_client.get("/logout")
    assert 'Signed in as <strong class="user">alice</strong>' in page.text
    assert 'href="/logout?stay=1"' in page.text
    stayed = await app_client.get("/logout?stay=1")
    assert "Still signed in" in stayed.text
    assert "bastion-session" in app_client.cookies


async def test_the_unknown_application_page_speaks_to_the_person_apart_from_the_admin(
    app_client: httpx.AsyncClient,
) -> None:
    params = authorization_params(
        VSCODE_CLIENT_ID, pkce.new_verifier(), redirect_uri=VSCODE_REDIRECT
    )
    response = await app_client.get("/authorize", params=params)
    assert_page(response, 400, "is not known to this sign-in service")
    person, admin = response.text.split("For the administrator:")
    assert "unknown_clients.policy" not in person
    assert "unknown_clients.policy" in admin
