"""``/account`` over real HTTP, on both databases: the refusals first (no session, another
person's application, a form without its token), then what a person sees and does on their own
page: the applications they allowed (through the real /authorize flow), revoking one, their
sign-ins, signing out of every other browser; each action checked in the database and the audit
trail."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import httpx
import sqlalchemy as sa

from bastion.store.schema import auth_audit, consents, sessions, token_families, users
from tests.console.conftest import Console, csrf_of
from tests.support.flow import PASSWORD, authorize, exchange, register


@dataclass
class Allowed:
    """An application a person allowed: its client id and refresh token."""

    client_id: str
    refresh_token: str


async def allow_application(
    console: Console, username: str, client_id: str | None = None, *, name: str = "Notes app"
) -> Allowed:
    """``username`` allows a (newly registered) public client for the "notes" server through
    /authorize, log-in and consent; the client redeems the code."""
    async with httpx.AsyncClient(base_url=console.issuer) as http:
        if client_id is None:
            client_id = (await register(http, client_name=name))["client_id"]
        done = await authorize(
            http, client_id, username=username, resource=console.url("/mcp/notes")
        )
        tokens = await exchange(http, client_id, done)
        assert tokens.status_code == 200, tokens.text
        return Allowed(client_id, tokens.json()["refresh_token"])


async def refresh(console: Console, allowed: Allowed) -> httpx.Response:
    async with httpx.AsyncClient(base_url=console.issuer) as http:
        return await http.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": allowed.refresh_token,
                "client_id": allowed.client_id,
            },
        )


async def query(console: Console, statement: sa.Select[tuple[object, ...]]) -> list[sa.Row]:  # type: ignore[type-arg]
    db = console.database()
    try:
        async with db.connect() as conn:
            return list(await conn.execute(statement))
    finally:
        await db.dispose()


async def user_id(console: Console, username: str) -> str:
    [row] = await query(console, sa.select(users.c.id).where(users.c.username == username))
    return str(row.id)


async def live_grants(console: Console, username: str) -> int:
    return len(
        await query(
            console,
            sa.select(token_families.c.id).where(
                token_families.c.subject == await user_id(console, username),
                token_families.c.revoked_at.is_(None),
            ),
        )
    )


async def consents_of(console: Console, username: str) -> int:
    who = await user_id(console, username)
    return len(await query(console, sa.select(consents).where(consents.c.user_id == who)))


async def records(console: Console, *types: str) -> list[sa.Row]:  # type: ignore[type-arg]
    return await query(
        console, sa.select(auth_audit).where(auth_audit.c.type.in_(types)).order_by(auth_audit.c.id)
    )


def revoke_path(client_id: str) -> str:
    return f"/account/applications/{quote(client_id, safe='')}/revoke"


async def test_without_a_session_the_account_and_its_forms_send_to_the_sign_in(
    console: Console,
) -> None:
    allowed = await allow_application(console, "alice")
    async with httpx.AsyncClient(base_url=console.issuer) as http:
        for path in ("/account", revoke_path(allowed.client_id), "/account/sessions/end-others"):
            method = http.get if path == "/account" else http.post
            answer = await method(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/signin?next=%2Faccount")
    assert await live_grants(console, "alice") == 1
    assert await records(console, "application_revoked", "grant_revoked", "sessions_ended") == []


async def test_a_person_cannot_see_nor_revoke_another_persons_application(
    console: Console,
) -> None:
    alices = await allow_application(console, "alice")
    bob = await console.signed_in("bob")
    page = await bob.get("/account")
    assert page.status_code == 200
    assert alices.client_id not in page.text and "Notes app" not in page.text
    answer = await bob.post(revoke_path(alices.client_id), data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 404 and "No such application" in answer.text
    assert await live_grants(console, "alice") == 1 and await consents_of(console, "alice") == 1
    # bob allows the same client: revoking it ends his grant, never alice's.
    bobs = await allow_application(console, "bob", alices.client_id)
    answer = await bob.post(revoke_path(alices.client_id), data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 303
    assert await live_grants(console, "bob") == 0 and await consents_of(console, "bob") == 0
    assert await live_grants(console, "alice") == 1 and await consents_of(console, "alice") == 1
    assert (await refresh(console, alices)).status_code == 200
    assert (await refresh(console, bobs)).json()["error"] == "invalid_grant"
    [withdrawn] = await records(console, "application_revoked")
    assert withdrawn.subject == await user_id(console, "bob")


async def test_a_form_without_the_sessions_token_is_refused_and_changes_nothing(
    console: Console,
) -> None:
    allowed = await allow_application(console, "alice")
    alice = await console.signed_in("alice")
    other = await console.signed_in("alice")
    bobs = csrf_of((await (await console.signed_in("bob")).get("/account")).text)
    for path in (revoke_path(allowed.client_id), "/account/sessions/end-others"):
        for data in ({"note": "no token"}, {"csrf": ""}, {"csrf": bobs}):
            answer = await alice.post(path, data=data)
            assert answer.status_code == 403 and "Form refused" in answer.text, (path, data)
    assert await live_grants(console, "alice") == 1 and await consents_of(console, "alice") == 1
    assert (await other.get("/account")).status_code == 200
    assert await records(console, "application_revoked", "grant_revoked", "sessions_ended") == []


async def test_a_person_sees_the_application_they_allowed_and_revokes_it(
    console: Console,
) -> None:
    allowed = await allow_application(console, "alice")
    assert (await refresh(console, allowed)).status_code == 200  # a refresh: "last used"
    allowed = Allowed(allowed.client_id, (await refresh(console, allowed)).json()["refresh_token"])
    alice = await console.signed_in("alice")
    page = await alice.get("/account")
    assert page.status_code == 200
    assert "Notes app" in page.text and allowed.client_id in page.text
    assert '<span class="tag" title="' + console.url("/mcp/notes") + '">notes</span>' in page.text
    assert "mcp:tools" in page.text and "not used" not in page.text
    # A revoke URL names the application: a stale sign-in is enough (it is the person's own).
    console.clock.offset = console.settings.console.fresh_sign_in + 5
    answer = await alice.post(revoke_path(allowed.client_id), data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/account?notice=revoked"
    assert await live_grants(console, "alice") == 0 and await consents_of(console, "alice") == 0
    assert (await refresh(console, allowed)).json()["error"] == "invalid_grant"
    after = await alice.get(answer.headers["location"])
    assert "no longer has access" in after.text and allowed.client_id not in after.text
    alice_id = await user_id(console, "alice")
    [withdrawn] = await records(console, "application_revoked")
    assert withdrawn.actor == "console:alice" and withdrawn.request_id
    assert (withdrawn.subject, withdrawn.client_id) == (alice_id, allowed.client_id)
    assert withdrawn.detail == {
        "by": "owner",
        "grants": 1,
        "resources": [console.url("/mcp/notes")],
    }
    revoked = [r for r in await records(console, "grant_revoked") if r.actor == "console:alice"]
    assert len(revoked) == 1 and revoked[0].subject == alice_id
    assert revoked[0].detail == {"reason": "revoked by the person who allowed it"}
    # The consent was forgotten: the application asks again.
    async with httpx.AsyncClient(base_url=console.issuer) as http:
        console.clock.offset = 0
        again = await authorize(
            http, allowed.client_id, resource=console.url("/mcp/notes"), decision="deny"
        )
        assert again.params["error"] == "access_denied"


async def test_a_person_sees_their_sign_ins_to_applications_and_to_the_console(
    console: Console,
) -> None:
    await allow_application(console, "alice", name="Sketch pad")
    async with httpx.AsyncClient(base_url=console.issuer) as http:
        form = await http.get("/signin")
        await http.post(
            "/signin",
            data={"csrf": csrf_of(form.text), "username": "alice", "password": "wrong"},
        )
    alice = await console.signed_in("alice")
    page = (await alice.get("/account")).text
    sign_ins = page.split('id="sign-ins"')[1].split("</section>")[0]
    rows = sign_ins.split("<tr>")[2:]
    assert len(rows) == 3, sign_ins
    assert "signed in" in rows[0] and "this console" in rows[0] and "password" in rows[0]
    assert "failed" in rows[1] and "this console" in rows[1]
    assert "signed in" in rows[2] and "Sketch pad" in rows[2]
    assert "127.0.0.1" in rows[0]
    assert "With your user name <strong>alice</strong> and password" in page
    assert PASSWORD not in page


async def test_signing_out_everywhere_else_ends_the_other_sessions_and_keeps_this_one(
    console: Console,
) -> None:
    elsewhere = await console.signed_in("alice")
    here = await console.signed_in("alice")
    bob = await console.signed_in("bob")
    page = await here.get("/account")
    answer = await here.post("/account/sessions/end-others", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/account?notice=others_ended"
    assert "signed out of every other browser" in (await here.get(answer.headers["location"])).text
    assert (await elsewhere.get("/account")).status_code == 303
    assert (await bob.get("/account")).status_code == 200
    alice_id = await user_id(console, "alice")
    left = await query(console, sa.select(sessions).where(sessions.c.user_id == alice_id))
    assert len(left) == 1
    [record] = await records(console, "sessions_ended")
    assert record.actor == "console:alice" and record.request_id and record.subject == alice_id
    assert record.detail == {"sessions": 1, "kept": "current"}
