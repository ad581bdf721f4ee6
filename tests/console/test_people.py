"""The console's people and groups pages over real HTTP, on both databases: the people refused
first (not an administrator, a form without its token, a stale sign-in for a destructive
action), then what administrators do, checked in the database and in the audit trail."""

from __future__ import annotations

import re
from typing import Any

import httpx
import sqlalchemy as sa

from bastion.access.admin import allow
from bastion.console.guard import csrf_for
from bastion.store.schema import auth_audit, linked_accounts, sessions, users
from tests.console.accounts import NEW_PASSWORD, can_sign_in, grant, refresh_works
from tests.console.conftest import Console, csrf_of
from tests.support.flow import PASSWORD

ACTIONS = ("groups", "disable", "enable", "password", "remove", "admin", "end-sessions")


async def _query(console: Console, statement: Any) -> list[dict[str, Any]]:
    db = console.database()
    try:
        async with db.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(statement)]
    finally:
        await db.dispose()


async def _people(console: Console) -> list[dict[str, Any]]:
    return await _query(console, sa.select(users).order_by(users.c.username))


async def _person(console: Console, username: str) -> dict[str, Any] | None:
    found = await _query(console, sa.select(users).where(users.c.username == username))
    return found[0] if found else None


async def _admin_records(console: Console, kind: str = "admin.%") -> list[dict[str, Any]]:
    """The records of changes made through the console (the fixture's own have no actor)."""
    q = (
        sa.select(auth_audit)
        .where(auth_audit.c.type.like(kind), auth_audit.c.actor.is_not(None))
        .order_by(auth_audit.c.id)
    )
    return await _query(console, q)


async def _sessions_of(console: Console, username: str) -> int:
    q = sa.select(sessions.c.id_hash).join(users, users.c.id == sessions.c.user_id)
    return len(await _query(console, q.where(users.c.username == username)))


async def _post(http: httpx.AsyncClient, path: str, page: str, **data: str) -> httpx.Response:
    """POST a console form of the page at ``page`` (its CSRF token) as a browser would."""
    token = csrf_of((await http.get(page)).text)
    return await http.post(path, data={"csrf": token, **data}, headers={"Origin": _origin(http)})


def _origin(http: httpx.AsyncClient) -> str:
    return str(http.base_url).rstrip("/")


def _assert_by_alice(records: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    assert [r["type"] for r in records] == [kind], records
    assert records[0]["actor"] == "console:alice" and records[0]["request_id"]
    return records[0]


# -- who may not ----------------------------------------------------------------------------


async def test_a_person_who_is_not_an_administrator_is_refused_every_people_and_groups_page(
    console: Console,
) -> None:
    bob = await console.signed_in("bob")
    for path in (
        "/admin/people",
        "/admin/people/new",
        "/admin/people/alice",
        "/admin/groups",
        "/admin/groups/sales",
    ):
        answer = await bob.get(path)
        assert answer.status_code == 403, path
        assert "Administrators only" in answer.text and "Alice Admin" not in answer.text
    before = await _people(console)
    token = csrf_for(bob.cookies["bastion-session"])  # bob's own valid token: not enough
    posts = [
        ("/admin/people", {"username": "mallory", "password": "", "repeat": ""}),
        ("/admin/groups/platform-admins", {"action": "add", "username": "bob"}),
        *[(f"/admin/people/alice/{a}", {"make": "0", "remove": "x", "add": "y"}) for a in ACTIONS],
        ("/admin/people/bob/admin", {"make": "1"}),
        ("/admin/people/bob/groups", {"add": "platform-admins"}),
    ]
    for path, data in posts:
        answer = await bob.post(path, data={"csrf": token, **data})
        assert answer.status_code == 403, path
    assert await _people(console) == before
    assert await _admin_records(console) == []


async def test_people_and_groups_forms_without_the_sessions_token_are_refused(
    console: Console,
) -> None:
    alice = await console.signed_in("alice")
    before = await _people(console)
    posts = [
        ("/admin/people", {"username": "mallory"}),
        ("/admin/groups/sales", {"action": "remove", "username": "bob"}),
        *[(f"/admin/people/bob/{a}", {"make": "1", "remove": "sales"}) for a in ACTIONS],
    ]
    for path, data in posts:
        for token in ({}, {"csrf": "forged"}):
            answer = await alice.post(path, data={**data, **token})
            assert answer.status_code == 403, path
            assert "Form refused" in answer.text
    assert await _people(console) == before
    assert await _admin_records(console) == []


async def test_a_stale_sign_in_disables_resets_removes_and_changes_administrators_nothing(
    console: Console,
) -> None:
    alice = await console.signed_in("alice")
    await console.signed_in("bob")
    token = csrf_of((await alice.get("/admin/people/bob")).text)
    before = await _people(console)
    console.clock.offset = console.settings.console.fresh_sign_in + 5
    for action, data in (
        ("disable", {}),
        ("password", {"password": NEW_PASSWORD, "repeat": NEW_PASSWORD}),
        ("password", {}),
        ("remove", {}),
        ("admin", {"make": "1"}),
    ):
        answer = await alice.post(
            f"/admin/people/bob/{action}",
            data={"csrf": token, **data},
            headers={"Origin": console.issuer},
        )
        assert answer.status_code == 303, action
        assert answer.headers["location"] == "/signin?next=%2Fadmin%2Fpeople%2Fbob&fresh=1"
        assert "password" not in answer.text
    assert await _people(console) == before
    assert await _sessions_of(console, "bob") == 1
    assert await _admin_records(console) == []
    assert await can_sign_in(console, "bob", PASSWORD)


# -- what administrators do -----------------------------------------------------------------


async def test_an_administrator_adds_a_person_who_then_signs_in_with_the_typed_password(
    console: Console,
) -> None:
    alice = await console.signed_in("alice")
    answer = await _post(
        alice,
        "/admin/people",
        "/admin/people/new",
        username="dave",
        name="Dave Data",
        email="dave@example.com",
        groups="research, ops  sales",
        password=NEW_PASSWORD,
        repeat=NEW_PASSWORD,
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/admin/people/dave?notice=added"
    dave = await _person(console, "dave")
    assert dave is not None
    assert (dave["name"], dave["email"]) == ("Dave Data", "dave@example.com")
    assert dave["groups"] == ["research", "ops", "sales"] and not dave["is_admin"]
    record = _assert_by_alice(await _admin_records(console), "admin.user_added")
    assert record["target_id"] == dave["id"] and NEW_PASSWORD not in str(record)
    assert await can_sign_in(console, "dave", NEW_PASSWORD)
    page = await alice.get(answer.headers["location"])
    assert "They were added" in page.text and "Dave Data" in page.text


async def test_a_generated_password_is_shown_once_on_the_answer_that_is_never_stored(
    console: Console,
) -> None:
    alice = await console.signed_in("alice")
    answer = await _post(alice, "/admin/people", "/admin/people/new", username="erin", is_admin="1")
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    shown = re.search(r'<code class="secret" id="password">([^<]+)</code>', answer.text)
    assert shown, answer.text
    assert await can_sign_in(console, "erin", shown.group(1))
    erin = await _person(console, "erin")
    assert erin is not None and erin["is_admin"]
    assert shown.group(1) not in (await alice.get("/admin/people/erin")).text
    assert shown.group(1) not in str(await _admin_records(console))


async def test_adding_a_person_with_bad_input_says_why_and_stores_nothing(
    console: Console,
) -> None:
    alice = await console.signed_in("alice")
    before = await _people(console)
    least = console.settings.login.min_password_length
    short = "x" * (least - 1)
    for data, status, message in (
        ({"username": "dave", "password": short, "repeat": short}, 400, f"at least {least}"),
        ({"username": "dave", "password": NEW_PASSWORD, "repeat": "other"}, 400, "differ"),
        ({"username": "two words"}, 400, "no spaces"),
        ({"username": ""}, 400, "A user name is needed"),
        ({"username": "dave", "email": "not-an-address"}, 400, "e-mail"),
        ({"username": "dave", "groups": "ok\x01bad"}, 400, "not a group name"),
        ({"username": "bob", "password": NEW_PASSWORD, "repeat": NEW_PASSWORD}, 409, "already"),
    ):
        answer = await _post(alice, "/admin/people", "/admin/people/new", **data)
        assert answer.status_code == status, (data, answer.text)
        assert message in answer.text, data
        assert 'name="username"' in answer.text  # the form again, to correct
        assert NEW_PASSWORD not in answer.text
    assert await _people(console) == before
    assert await _admin_records(console) == []


async def test_the_list_shows_everyone_with_how_they_sign_in_and_searches(
    console: Console,
) -> None:
    db = console.database()
    try:
        async with db.transaction() as conn:
            await conn.execute(
                sa.insert(users).values(
                    id="fed-1",
                    username="frank@corp.example",
                    password_hash=None,
                    email="frank@corp.example",
                    name="Frank Federated",
                    groups=["engineering"],
                    is_admin=False,
                    disabled=False,
                    created_at=1,
                )
            )
            await conn.execute(
                sa.insert(linked_accounts).values(
                    issuer="https://idp.example",
                    subject="f-123",
                    provider="corp",
                    user_id="fed-1",
                    created_at=1,
                    last_login_at=2,
                )
            )
    finally:
        await db.dispose()
    alice = await console.signed_in("alice")
    everyone = (await alice.get("/admin/people")).text
    for shown in ("alice", "Bob Builder", "Carol Ops", "Frank Federated", ">corp<", ">password<"):
        assert shown in everyone, shown
    assert everyone.count("administrator</span>") == 2  # alice, and carol through her group
    found = (await alice.get("/admin/people", params={"q": "BUILDER"})).text
    assert "Bob Builder" in found and "Carol Ops" not in found and "1 of 4" in found
    found = (await alice.get("/admin/people", params={"q": "corp.example"})).text
    assert "Frank Federated" in found and "Bob Builder" not in found
    page = await alice.get("/admin/people/frank@corp.example")
    assert page.status_code == 200
    assert "has no password here" in page.text and 'name="repeat"' not in page.text
    assert "their groups come from it at each sign-in" in page.text
    assert "https://idp.example" in page.text and "f-123" in page.text
    refused = await _post(
        alice,
        "/admin/people/frank@corp.example/password",
        "/admin/people/frank@corp.example",
    )
    assert refused.status_code == 409 and "reset it at their provider" in refused.text
    assert (await _person(console, "frank@corp.example") or {})["password_hash"] is None
    missing = await alice.get("/admin/people/nobody")
    assert missing.status_code == 404 and "No such person" in missing.text


async def test_a_persons_page_shows_their_live_grants_and_recent_sign_ins(
    console: Console,
) -> None:
    await grant(console, "bob")
    assert not await can_sign_in(console, "bob", "a wrong password for bob")
    alice = await console.signed_in("alice")
    page = (await alice.get("/admin/people/bob")).text
    assert re.search(r"<dt>Live grants</dt><dd>1</dd>", page)
    assert "signed in</span>" in page and "wrong_password" in page


async def test_an_administrator_disables_and_enables_a_person(console: Console) -> None:
    bob = await console.signed_in("bob")
    refresh = await grant(console, "bob")
    alice = await console.signed_in("alice")
    answer = await _post(alice, "/admin/people/bob/disable", "/admin/people/bob")
    assert answer.headers["location"] == "/admin/people/bob?notice=disabled"
    assert (await _person(console, "bob") or {})["disabled"]
    assert await _sessions_of(console, "bob") == 0
    assert (await bob.get("/account")).status_code == 303  # signed out
    assert not await can_sign_in(console, "bob", PASSWORD)
    assert not await refresh_works(console, refresh)
    _assert_by_alice(await _admin_records(console), "admin.user_disabled")
    answer = await _post(alice, "/admin/people/bob/enable", "/admin/people/bob")
    assert answer.headers["location"] == "/admin/people/bob?notice=enabled"
    assert await can_sign_in(console, "bob", PASSWORD)
    enabled = await _admin_records(console, "admin.user_enabled")
    assert enabled[0]["actor"] == "console:alice"


async def test_an_administrator_resets_a_password_which_ends_sessions_and_grants(
    console: Console,
) -> None:
    refresh = await grant(console, "bob")
    bob = await console.signed_in("bob")
    alice = await console.signed_in("alice")
    least = console.settings.login.min_password_length
    short = await _post(
        alice, "/admin/people/bob/password", "/admin/people/bob", password="short", repeat="short"
    )
    assert short.status_code == 400 and f"at least {least}" in short.text
    assert await can_sign_in(console, "bob", PASSWORD)
    answer = await _post(
        alice,
        "/admin/people/bob/password",
        "/admin/people/bob",
        password=NEW_PASSWORD,
        repeat=NEW_PASSWORD,
    )
    assert answer.headers["location"] == "/admin/people/bob?notice=password_set"
    assert not await can_sign_in(console, "bob", PASSWORD)
    assert await can_sign_in(console, "bob", NEW_PASSWORD)
    assert (await bob.get("/account")).status_code == 303
    assert not await refresh_works(console, refresh)
    record = _assert_by_alice(await _admin_records(console), "admin.user_password_set")
    assert NEW_PASSWORD not in str(record)
    page = await alice.get(answer.headers["location"])
    assert "every grant they gave is revoked" in page.text


async def test_an_administrator_changes_a_persons_groups(console: Console) -> None:
    refresh = await grant(console, "bob")
    alice = await console.signed_in("alice")
    added = await _post(alice, "/admin/people/bob/groups", "/admin/people/bob", add="ops, research")
    assert added.headers["location"] == "/admin/people/bob?notice=groups_changed"
    assert (await _person(console, "bob") or {})["groups"] == ["ops", "research", "sales"]
    assert await refresh_works(console, refresh)  # adding keeps the grants
    removed = await _post(alice, "/admin/people/bob/groups", "/admin/people/bob", remove="sales")
    assert removed.headers["location"] == "/admin/people/bob?notice=groups_revoked"
    assert (await _person(console, "bob") or {})["groups"] == ["ops", "research"]
    records = await _admin_records(console, "admin.user_groups_changed")
    assert [r["detail"] for r in records] == [
        {"username": "bob", "added": ["ops", "research"], "removed": []},
        {"username": "bob", "added": [], "removed": ["sales"]},
    ]
    assert {r["actor"] for r in records} == {"console:alice"}
    empty = await _post(alice, "/admin/people/bob/groups", "/admin/people/bob", add=" , ")
    assert empty.status_code == 400 and "Type a group" in empty.text


async def test_an_administrator_removes_a_person(console: Console) -> None:
    refresh = await grant(console, "bob")
    alice = await console.signed_in("alice")
    answer = await _post(alice, "/admin/people/bob/remove", "/admin/people/bob")
    assert answer.headers["location"] == "/admin/people?notice=removed"
    assert await _person(console, "bob") is None
    assert not await refresh_works(console, refresh)
    _assert_by_alice(await _admin_records(console), "admin.user_removed")
    assert "They were removed" in (await alice.get(answer.headers["location"])).text
    gone = await _post(alice, "/admin/people/bob/remove", "/admin/people/new")
    assert gone.status_code == 404


async def test_bastion_always_keeps_one_administrator(console: Console) -> None:
    alice = await console.signed_in("alice")
    # carol administers through her group; once out of it, alice is the last administrator.
    out = await _post(
        alice,
        "/admin/groups/platform-admins",
        "/admin/people/new",
        action="remove",
        username="carol",
    )
    assert out.status_code == 303
    before = await _people(console)
    records = await _admin_records(console)
    for action, data in (
        ("admin", {"make": "0"}),
        ("disable", {}),
        ("remove", {}),
    ):
        answer = await _post(alice, f"/admin/people/alice/{action}", "/admin/people/alice", **data)
        assert answer.status_code == 409, action
        assert "bastion would have no administrator left" in answer.text
    assert await _people(console) == before
    assert await _admin_records(console) == records
    made = await _post(alice, "/admin/people/bob/admin", "/admin/people/bob", make="1")
    assert made.headers["location"] == "/admin/people/bob?notice=made_admin"
    unmade = await _post(alice, "/admin/people/alice/admin", "/admin/people/alice", make="0")
    assert unmade.headers["location"] == "/admin/people/alice?notice=unmade_admin"
    assert (await _person(console, "bob") or {})["is_admin"]
    assert not (await _person(console, "alice") or {})["is_admin"]
    changes = await _admin_records(console, "admin.user_admin_changed")
    assert [(r["detail"], r["actor"]) for r in changes] == [
        ({"username": "bob", "is_admin": True}, "console:alice"),
        ({"username": "alice", "is_admin": False}, "console:alice"),
    ]
    assert all(r["request_id"] for r in changes)
    assert (await alice.get("/admin")).status_code == 403  # alice is no administrator now


async def test_the_groups_pages_list_members_rules_and_administrators(console: Console) -> None:
    await allow(console.settings, "notes", "group:sales", ["mcp:tools"], db=None)
    await allow(console.settings, "*", "group:auditors", [], db=None)
    alice = await console.signed_in("alice")
    listed = (await alice.get("/admin/groups")).text
    for shown in ("sales", "auditors", "platform-admins", "notes: mcp:tools"):
        assert shown in listed, shown
    assert "every resource: all scopes" in listed
    sales = await alice.get("/admin/groups/sales")
    assert sales.status_code == 200 and "Bob Builder" in sales.text and "notes" in sales.text
    admins = (await alice.get("/admin/groups/platform-admins")).text
    assert "Carol Ops" in admins and "administer bastion" in admins
    added = await _post(
        alice, "/admin/groups/sales", "/admin/groups/sales", action="add", username="alice"
    )
    assert added.headers["location"] == "/admin/groups/sales?notice=member_added"
    assert "sales" in (await _person(console, "alice") or {})["groups"]
    unknown = await _post(
        alice, "/admin/groups/sales", "/admin/groups/sales", action="add", username="nobody"
    )
    assert unknown.status_code == 404 and "No person called" in unknown.text
    not_in = await _post(
        alice, "/admin/groups/sales", "/admin/groups/sales", action="remove", username="carol"
    )
    assert not_in.status_code == 409 and "not in this group" in not_in.text
    await _post(alice, "/admin/groups/ops", "/admin/people/new", action="add", username="bob")
    emptied = await _post(
        alice, "/admin/groups/ops", "/admin/groups/ops", action="remove", username="bob"
    )
    assert emptied.headers["location"] == "/admin/groups?notice=group_emptied"
    assert (await alice.get("/admin/groups/ops")).status_code == 404
    records = await _admin_records(console, "admin.user_groups_changed")
    assert len(records) == 3 and {r["actor"] for r in records} == {"console:alice"}
    assert records[0]["detail"]["username"] == "alice"
