"""Who may see the console and send its forms, over real HTTP, on both databases: the people
refused first (no session, not an administrator, a forged or foreign form, a stale sign-in
for a destructive action), then the administrators who get through, with the audit record
naming them."""

from __future__ import annotations

import sqlalchemy as sa

from bastion.console.guard import csrf_for
from bastion.store.schema import auth_audit, sessions, users
from tests.console.conftest import Console, csrf_of

END_SESSIONS = "/admin/people/bob/end-sessions"


async def _sessions_of(console: Console, username: str) -> int:
    db = console.database()
    try:
        async with db.connect() as conn:
            q = (
                sa.select(sa.func.count())
                .select_from(sessions.join(users, users.c.id == sessions.c.user_id))
                .where(users.c.username == username)
            )
            return int(await conn.scalar(q) or 0)
    finally:
        await db.dispose()


async def _records(console: Console, kind: str) -> list[sa.Row[tuple[object, ...]]]:
    db = console.database()
    try:
        async with db.connect() as conn:
            rows = await conn.execute(sa.select(auth_audit).where(auth_audit.c.type == kind))
            return list(rows)
    finally:
        await db.dispose()


async def test_without_a_session_every_page_sends_to_the_sign_in(console: Console) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=console.issuer) as http:
        for path in ("/admin", "/admin/people/bob", "/account"):
            answer = await http.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/signin?next=")
        posted = await http.post(END_SESSIONS, data={"csrf": "x"})
        assert posted.status_code == 303
        assert posted.headers["location"].startswith("/signin?")
    async with httpx.AsyncClient(
        base_url=console.issuer, cookies={"bastion-session": "made-up-session-id"}
    ) as forged:
        assert (await forged.get("/admin")).status_code == 303


async def test_a_person_who_is_not_an_administrator_is_refused_admin_pages(
    console: Console,
) -> None:
    bob = await console.signed_in("bob")
    for path in ("/admin", "/admin/people/alice"):
        answer = await bob.get(path)
        assert answer.status_code == 403, path
        assert "Administrators only" in answer.text
        assert "Live grants" not in answer.text and "Alice Admin" not in answer.text
    assert (await bob.get("/account")).status_code == 200
    token = csrf_for(bob.cookies["bastion-session"])  # bob's own valid token: not enough
    before = await _sessions_of(console, "alice")
    refused = await bob.post("/admin/people/alice/end-sessions", data={"csrf": token})
    assert refused.status_code == 403
    assert await _sessions_of(console, "alice") == before
    assert await _records(console, "admin.user_sessions_ended") == []


async def test_a_form_without_the_sessions_token_or_from_another_site_is_refused(
    console: Console,
) -> None:
    alice = await console.signed_in("alice")
    await console.signed_in("bob")
    token = csrf_of((await alice.get("/admin/people/bob")).text)
    carol = await console.signed_in("carol")
    carols = csrf_of((await carol.get("/admin/people/bob")).text)
    refusals = [
        {"data": {"note": "no token"}},
        {"data": {"csrf": ""}},
        {"data": {"csrf": token[:-1] + ("A" if token[-1] != "A" else "B")}},
        {"data": {"csrf": carols}},  # another administrator's token
        {"data": {"csrf": token}, "headers": {"Origin": "https://evil.example"}},
        {"data": {"csrf": token}, "headers": {"Origin": "null"}},
        {"data": {"csrf": token}, "headers": {"Sec-Fetch-Site": "cross-site"}},
        {"data": {"csrf": token}, "headers": {"Sec-Fetch-Site": "same-site"}},
    ]
    for attempt in refusals:
        answer = await alice.post(END_SESSIONS, **attempt)  # type: ignore[arg-type]
        assert answer.status_code == 403, attempt
        assert "Form refused" in answer.text
    assert await _sessions_of(console, "bob") == 1
    assert await _records(console, "admin.user_sessions_ended") == []


async def test_a_stale_sign_in_is_asked_to_sign_in_again_before_a_destructive_action(
    console: Console,
) -> None:
    alice = await console.signed_in("alice")
    await console.signed_in("bob")
    token = csrf_of((await alice.get("/admin/people/bob")).text)
    console.clock.offset = console.settings.console.fresh_sign_in + 5
    answer = await alice.post(END_SESSIONS, data={"csrf": token})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/signin?next=%2Fadmin%2Fpeople%2Fbob&fresh=1"
    assert await _sessions_of(console, "bob") == 1
    again = await alice.get(answer.headers["location"])
    assert again.status_code == 200 and "Confirm it is you" in again.text
    assert 'value="alice"' in again.text
    # Reading pages needs no fresh sign-in.
    assert (await alice.get("/admin/people/bob")).status_code == 200


async def test_an_administrator_ends_a_persons_sessions_and_the_record_names_them(
    console: Console,
) -> None:
    await console.signed_in("bob")
    for admin in ("alice", "carol"):  # carol through console.admin_groups
        http = await console.signed_in(admin)
        page = await http.get("/admin/people/bob")
        assert page.status_code == 200 and "Bob Builder" in page.text
        answer = await http.post(
            END_SESSIONS, data={"csrf": csrf_of(page.text)}, headers={"Origin": console.issuer}
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/admin/people/bob?notice=sessions_ended"
        assert await _sessions_of(console, "bob") == 0
    records = await _records(console, "admin.user_sessions_ended")
    assert [r.actor for r in records] == ["console:alice", "console:carol"]
    assert all(r.request_id for r in records)
    assert records[0].detail["sessions"] == 1 and records[1].detail["sessions"] == 0


async def test_console_pages_forbid_scripts_frames_and_foreign_form_targets(
    console: Console,
) -> None:
    alice = await console.signed_in("alice")
    answer = await alice.get("/admin")
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "form-action 'self'" in policy
    assert "script-src" not in policy and "frame-ancestors 'none'" in policy
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-frame-options"] == "DENY"
    assert "<script" not in answer.text


async def test_the_sign_in_only_sends_the_browser_back_to_console_pages(console: Console) -> None:
    import httpx

    from tests.support.flow import PASSWORD

    for wanted in (
        "https://evil.example/admin",
        "//evil.example/admin",
        "/\\evil.example",
        "/authorize?client_id=x",
        "/admin/../token",
        "javascript:alert(1)",
    ):
        async with httpx.AsyncClient(base_url=console.issuer) as http:
            form = await http.get("/signin", params={"next": wanted})
            answer = await http.post(
                "/signin",
                data={
                    "csrf": csrf_of(form.text),
                    "next": wanted,
                    "username": "bob",
                    "password": PASSWORD,
                },
            )
            assert answer.status_code == 303
            assert answer.headers["location"] == "/account", wanted
