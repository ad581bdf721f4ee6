"""Connected services (the token vault) on ``/account`` and on an administrator's person page,
over real HTTP, on both databases, with a real upstream (node-oidc-provider). Refusals first:
no session, another person's connection named in a forged form, a form without its CSRF token
or from another origin, a person who is not an administrator, an administrator whose sign-in is
not fresh: nothing is deleted and the upstream still accepts the tokens. Then: the pages list
the connections and never hold a token; revoking deletes the connection and revokes it upstream
(RFC 7009); removing a person does the same for each of theirs; one revoke in Chromium."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import sqlalchemy as sa
from playwright.async_api import Page, expect

from bastion.authserver.app import create_app
from bastion.config import ConsoleSettings, ResourceSettings, Settings
from bastion.store.schema import users
from tests.console.conftest import ADMIN_GROUP, Clock, Console, browser_sign_in, csrf_of
from tests.support.flow import add_user
from tests.support.live import free_port, serve
from tests.support.oidc_provider import OidcProvider
from tests.vault.connected import (
    UPSTREAM,
    Tokens,
    active,
    audit_records,
    connect,
    connected,
    upstream_server,
    upstream_settings,
)

MINE = f"/account/connections/{UPSTREAM}/revoke"


def admin_path(username: str) -> str:
    return f"/admin/people/{username}/connections/{UPSTREAM}/revoke"


class VaultConsole(Console):
    """The console of a server whose upstream ``files`` has its own OAuth at ``op``."""

    op: OidcProvider


@pytest.fixture
async def console(make_settings: Callable[..., Settings]) -> AsyncIterator[VaultConsole]:
    """alice (administrator), bob (not one), the upstream's authorization server, and the
    console of a live authorization server."""
    async with upstream_server() as op:
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        settings: Settings = make_settings(
            issuer=issuer,
            resources=[ResourceSettings(uri=f"{issuer}/mcp/notes", name="notes")],
            console=ConsoleSettings(admin_groups=[ADMIN_GROUP]),
            gateway={"upstreams": [upstream_settings(op.issuer)]},
        )
        await add_user(settings, "alice", name="Alice Admin", is_admin=True)
        await add_user(settings, "bob", name="Bob Builder")
        clock = Clock()
        async with serve(create_app(settings, clock=clock), port=port):
            running = VaultConsole(issuer, settings, clock)
            running.op = op
            try:
                yield running
            finally:
                for http in running.clients:
                    await http.aclose()


async def _untouched(console: VaultConsole, *held: tuple[str, Tokens]) -> None:
    """Every connection in ``held`` is still stored and still works upstream."""
    assert await connected(console.settings) == sorted((name, UPSTREAM) for name, _ in held)
    for _, tokens in held:
        assert await active(console.op, tokens.refresh_token)
    types = ("upstream_disconnected", "admin.upstream_disconnected")
    assert await audit_records(console.settings, *types) == []


# -- refusals -------------------------------------------------------------------------------------


async def test_without_a_session_nothing_is_shown_nor_revoked(console: VaultConsole) -> None:
    alices = await connect(console.settings, console.op, "alice")
    http = await console.signed_in("bob")
    http.cookies.clear()
    for path in (MINE, admin_path("alice")):
        answer = await http.post(path, data={"csrf": "x"})
        assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")
    await _untouched(console, ("alice", alices))


async def test_a_forged_form_naming_another_persons_connection_touches_only_ones_own(
    console: VaultConsole,
) -> None:
    """Bob posts, with his own session and CSRF token, the revoke of the upstream alice is
    connected to: the name selects among his own connections only (none: 404; his own: only
    his is revoked)."""
    alices = await connect(console.settings, console.op, "alice")
    bob = await console.signed_in("bob")
    shown = await bob.get("/account")
    assert shown.status_code == 200
    assert "You have not connected bastion to any service" in shown.text
    answer = await bob.post(MINE, data={"csrf": csrf_of(shown.text)})
    assert answer.status_code == 404 and "No such connection" in answer.text
    await _untouched(console, ("alice", alices))
    bobs = await connect(console.settings, console.op, "bob")
    answer = await bob.post(MINE, data={"csrf": csrf_of(shown.text)})
    assert answer.status_code == 303
    assert await connected(console.settings) == [("alice", UPSTREAM)]
    assert await active(console.op, alices.refresh_token)
    assert not await active(console.op, bobs.refresh_token)


async def test_a_form_without_its_csrf_token_or_from_another_origin_is_refused(
    console: VaultConsole,
) -> None:
    alices = await connect(console.settings, console.op, "alice")
    alice = await console.signed_in("alice")
    csrf = csrf_of((await alice.get("/account")).text)
    for data, headers in (
        ({"back": "/account"}, {}),
        ({"csrf": "forged"}, {}),
        ({"csrf": csrf}, {"Origin": "https://evil.example"}),
        ({"csrf": csrf}, {"Sec-Fetch-Site": "cross-site"}),
    ):
        for path in (MINE, admin_path("alice")):
            answer = await alice.post(path, data=data, headers=headers)
            assert answer.status_code == 403 and "Form refused" in answer.text, (path, data)
    await _untouched(console, ("alice", alices))


async def test_a_person_who_is_not_an_administrator_cannot_revoke_anothers_connection(
    console: VaultConsole,
) -> None:
    alices = await connect(console.settings, console.op, "alice")
    bob = await console.signed_in("bob")
    csrf = csrf_of((await bob.get("/account")).text)
    answer = await bob.post(admin_path("alice"), data={"csrf": csrf})
    assert answer.status_code == 403 and "Administrators only" in answer.text
    assert (await bob.get("/admin/people/alice")).status_code == 403
    await _untouched(console, ("alice", alices))


async def test_an_administrator_signs_in_again_before_revoking(console: VaultConsole) -> None:
    """Like every destructive administrator action: a sign-in older than
    console.fresh_sign_in is sent to sign in again, and nothing is done."""
    bobs = await connect(console.settings, console.op, "bob")
    alice = await console.signed_in("alice")
    csrf = csrf_of((await alice.get("/admin/people/bob")).text)
    console.clock.offset += console.settings.console.fresh_sign_in + 1
    answer = await alice.post(admin_path("bob"), data={"csrf": csrf, "back": "/admin/people/bob"})
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/signin?next=%2Fadmin%2Fpeople%2Fbob&fresh=1")
    await _untouched(console, ("bob", bobs))


async def test_the_pages_never_hold_a_token(console: VaultConsole) -> None:
    alices = await connect(console.settings, console.op, "alice")
    bobs = await connect(console.settings, console.op, "bob")
    alice = await console.signed_in("alice")
    for path in ("/account", "/admin/people/alice", "/admin/people/bob"):
        html = (await alice.get(path)).text
        assert UPSTREAM in html
        for value in (*alices.values, *bobs.values):
            assert value not in html, path


# -- what people and administrators do ------------------------------------------------------------


async def test_a_person_sees_and_revokes_their_connection_rfc7009(console: VaultConsole) -> None:
    alices = await connect(console.settings, console.op, "alice")
    bobs = await connect(console.settings, console.op, "bob")
    alice = await console.signed_in("alice")
    shown = await alice.get("/account")
    assert 'id="connections">Connected services' in shown.text
    assert f'<th scope="row">{UPSTREAM}</th>' in shown.text
    assert '<span class="tag">mcp:tools</span>' in shown.text
    answer = await alice.post(MINE, data={"csrf": csrf_of(shown.text)})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/account?notice=disconnected_revoked"
    after = await alice.get(answer.headers["location"])
    assert "its tokens were revoked at the service" in after.text
    assert "You have not connected bastion to any service" in after.text
    assert await connected(console.settings) == [("bob", UPSTREAM)]
    assert not await active(console.op, alices.refresh_token)
    assert not await active(console.op, alices.access_token)
    assert await active(console.op, bobs.refresh_token)
    [record] = await audit_records(console.settings, "upstream_disconnected")
    assert record.actor == "console:alice" and record.subject == await _id(console, "alice")
    assert record.detail == {"upstream": UPSTREAM, "issuer": console.op.issuer, "by": "owner"}


async def test_an_administrator_revokes_a_persons_connection(console: VaultConsole) -> None:
    bobs = await connect(console.settings, console.op, "bob")
    alice = await console.signed_in("alice")
    shown = await alice.get("/admin/people/bob")
    assert f'<th scope="row">{UPSTREAM}</th>' in shown.text and console.op.issuer in shown.text
    answer = await alice.post(
        admin_path("bob"), data={"csrf": csrf_of(shown.text), "back": "/admin/people/bob"}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/people/bob?notice=disconnected_revoked"
    assert await connected(console.settings) == []
    assert not await active(console.op, bobs.refresh_token)
    [record] = await audit_records(console.settings, "admin.upstream_disconnected")
    assert record.actor == "console:alice" and record.target_id == await _id(console, "bob")
    again = await alice.post(admin_path("bob"), data={"csrf": csrf_of(shown.text)})
    assert again.status_code == 404 and "no connection to this service" in again.text


async def test_removing_a_person_revokes_their_connections_upstream(
    console: VaultConsole,
) -> None:
    """Issue 18: removing a person deletes their upstream tokens and revokes them upstream."""
    bobs = await connect(console.settings, console.op, "bob")
    alice = await console.signed_in("alice")
    csrf = csrf_of((await alice.get("/admin/people/bob")).text)
    answer = await alice.post("/admin/people/bob/remove", data={"csrf": csrf})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/people?notice=removed"
    assert await connected(console.settings) == []
    assert not await active(console.op, bobs.refresh_token)
    assert not await active(console.op, bobs.access_token)


async def _id(console: Console, username: str) -> str:
    db = console.database()
    try:
        async with db.connect() as conn:
            return str(await conn.scalar(sa.select(users.c.id).where(users.c.username == username)))
    finally:
        await db.dispose()


@pytest.mark.browser
async def test_a_person_revokes_a_connected_service_in_chromium(
    page: Page,
    console: VaultConsole,
) -> None:
    alices = await connect(console.settings, console.op, "alice")
    await page.set_viewport_size({"width": 390, "height": 800})
    await browser_sign_in(page, console, "alice", "/account")
    row = page.locator("#connections ~ .table tbody tr", has_text=UPSTREAM)
    await expect(row).to_contain_text("mcp:tools")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await row.get_by_role("button", name=f"Revoke {UPSTREAM}").click()
    await expect(page.locator(".notice")).to_contain_text("its tokens were revoked at the service")
    await expect(page.locator("#connections").locator("..")).to_contain_text(
        "You have not connected bastion to any service"
    )
    assert await connected(console.settings) == []
    assert not await active(console.op, alices.refresh_token)
