"""``/admin/registry`` over real HTTP, on both databases, with the registry on the console's
listener: the refusals first (a person who is not an administrator, a form without its token,
a stale sign-in before what hides or deletes, a server without a registry), then what an
administrator does, checked in the database, in both audit trails and through the registry API
as the people who read it."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx

from bastion.console.guard import csrf_for
from tests.console.conftest import Console, csrf_of
from tests.console.registry_console import (
    ALPHA,
    BETA,
    RegistryConsole,
    registry_console,  # noqa: F401  (the fixture)
)

ENTRY = "/admin/registry/entry?" + urlencode({"name": ALPHA, "version": "1.0.0"})
ACTIONS = ("approve", "reject", "withdraw", "status", "visibility")
FIELDS = {"name": ALPHA, "version": "1.0.0", "status": "deleted", "groups": "sales"}


async def _post(
    http: httpx.AsyncClient, console: Console, action: str, token: str, **fields: str
) -> httpx.Response:
    return await http.post(
        f"/admin/registry/{action}",
        data={"csrf": token, "name": ALPHA, "version": "1.0.0", **fields},
        headers={"Origin": console.issuer},
    )


async def _nothing_changed(console: RegistryConsole) -> None:
    entry = await console.entry(ALPHA)
    assert (entry.status, entry.approved, entry.groups) == ("active", False, ("team-a",))
    assert await console.records() == []
    assert await console.history() == []


async def test_a_person_who_is_not_an_administrator_is_refused_every_registry_route(
    registry_console: RegistryConsole,  # noqa: F811
) -> None:
    bob = await registry_console.signed_in("bob")
    for path in ("/admin/registry", ENTRY):
        answer = await bob.get(path)
        assert answer.status_code == 403, path
        assert ALPHA not in answer.text and "Alpha forecasts" not in answer.text
    token = csrf_for(bob.cookies["bastion-session"])  # bob's own valid token: not enough
    for action in ACTIONS:
        answer = await _post(bob, registry_console, action, token, **FIELDS)
        assert answer.status_code == 403, action
    await _nothing_changed(registry_console)


async def test_a_registry_form_without_the_sessions_token_or_from_another_site_is_refused(
    registry_console: RegistryConsole,  # noqa: F811
) -> None:
    alice = await registry_console.signed_in("alice")
    token = csrf_of((await alice.get(ENTRY)).text)
    for action in ACTIONS:
        for sent, origin in (("", registry_console.issuer), (token, "https://evil.example")):
            answer = await alice.post(
                f"/admin/registry/{action}",
                data={"csrf": sent, **FIELDS},
                headers={"Origin": origin},
            )
            assert answer.status_code == 403, (action, origin)
            assert "Form refused" in answer.text
    await _nothing_changed(registry_console)


async def test_a_stale_sign_in_is_asked_to_sign_in_again_before_hiding_or_deleting(
    registry_console: RegistryConsole,  # noqa: F811
) -> None:
    alice = await registry_console.signed_in("alice")
    token = csrf_of((await alice.get(ENTRY)).text)
    registry_console.clock.offset = registry_console.settings.console.fresh_sign_in + 5
    for action in ("reject", "withdraw", "status", "visibility"):
        answer = await _post(alice, registry_console, action, token, back=ENTRY, **FIELDS)
        assert answer.status_code == 303, action
        assert answer.headers["location"] == "/signin?" + urlencode({"next": ENTRY, "fresh": "1"})
    await _nothing_changed(registry_console)


async def test_without_a_registry_the_registry_pages_answer_not_found(console: Console) -> None:
    alice = await console.signed_in("alice")
    for path in ("/admin/registry", ENTRY):
        answer = await alice.get(path)
        assert answer.status_code == 404
        assert "The registry is not enabled" in answer.text
    page = await alice.get("/admin")
    assert "/admin/registry" not in page.text  # no link to it in the navigation
    answer = await _post(alice, console, "approve", csrf_for(alice.cookies["bastion-session"]))
    assert answer.status_code == 404


async def test_the_registry_page_shows_entries_waiting_for_approval_and_the_publish_history(
    registry_console: RegistryConsole,  # noqa: F811
) -> None:
    carol = await registry_console.signed_in("carol")  # an administrator by group
    page = await carol.get("/admin/registry")
    assert page.status_code == 200
    waiting = page.text.split('id="pending"')[1].split("</section>")[0]
    assert ALPHA in waiting and BETA in waiting
    history = page.text.split('id="history"')[1]
    assert history.count("publish") == 2 and "dave" in history
    assert "<script" not in page.text
    entry = await carol.get(ENTRY)
    assert entry.status_code == 200
    assert "Alpha forecasts" in entry.text and 'value="team-a"' in entry.text
    assert "Dave Publisher" in entry.text or "dave" in entry.text
    found = await carol.get("/admin/registry", params={"q": "beta"})
    listed = found.text.split('id="entries"')[1].split("</section>")[0]
    assert BETA in listed and ALPHA not in listed


async def test_an_administrator_approves_an_entry_and_the_people_of_its_group_see_it(
    registry_console: RegistryConsole,  # noqa: F811
) -> None:
    assert ALPHA not in await registry_console.seen_by("erin")
    alice = await registry_console.signed_in("alice")
    token = csrf_of((await alice.get("/admin/registry")).text)
    answer = await _post(alice, registry_console, "approve", token, back="/admin/registry")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/registry?notice=approved"
    assert (await registry_console.entry(ALPHA)).approved
    assert not (await registry_console.entry(BETA)).approved
    assert ALPHA in await registry_console.seen_by("erin")
    assert ALPHA not in await registry_console.seen_by("frank")  # team-b
    [record] = await registry_console.records()
    assert (record.type, record.actor) == ("admin.registry_entry_approved", "console:alice")
    assert record.target_id == f"{ALPHA}@1.0.0" and record.request_id
    [history] = await registry_console.history()
    assert (history.subject, history.action, history.server_name) == (
        "console:alice",
        "set_status",
        ALPHA,
    )
    assert history.detail == {"approved": {"from": False, "to": True}}
    assert history.request_id == record.request_id
    page = await alice.get("/admin/registry?notice=approved")
    assert "The entry is approved" in page.text
    assert ALPHA not in page.text.split('id="pending"')[1].split("</section>")[0]


async def test_changing_who_sees_an_entry_hides_it_from_a_person_outside_the_groups(
    registry_console: RegistryConsole,  # noqa: F811
) -> None:
    alice = await registry_console.signed_in("alice")
    token = csrf_of((await alice.get(ENTRY)).text)
    await _post(alice, registry_console, "approve", token)
    assert ALPHA in await registry_console.seen_by("erin")
    answer = await _post(alice, registry_console, "visibility", token, groups="team-b, ops")
    assert answer.status_code == 303
    assert answer.headers["location"] == ENTRY.replace("?", "?notice=visibility_changed&")
    assert (await registry_console.entry(ALPHA)).groups == ("ops", "team-b")
    assert ALPHA not in await registry_console.seen_by("erin")
    assert ALPHA in await registry_console.seen_by("frank")
    records = await registry_console.records()
    assert [r.type for r in records] == [
        "admin.registry_entry_approved",
        "admin.registry_entry_groups_changed",
    ]
    assert records[1].detail["groups"] == {"from": ["team-a"], "to": ["ops", "team-b"]}
    assert all(r.actor == "console:alice" and r.request_id for r in records)


async def test_an_administrator_rejects_an_entry_and_it_is_marked_deleted(
    registry_console: RegistryConsole,  # noqa: F811
) -> None:
    alice = await registry_console.signed_in("alice")
    token = csrf_of((await alice.get("/admin/registry")).text)
    answer = await _post(alice, registry_console, "reject", token, back="/admin/registry")
    assert answer.headers["location"] == "/admin/registry?notice=rejected"
    entry = await registry_console.entry(ALPHA)
    assert (entry.status, entry.approved) == ("deleted", False)
    [record] = await registry_console.records()
    assert record.type == "admin.registry_entry_status_changed"
    assert record.detail["status"] == {"from": "active", "to": "deleted"}
    assert ALPHA not in await registry_console.seen_by("dave")  # deleted: not even its owner


async def test_bad_registry_forms_are_explained_and_change_nothing(
    registry_console: RegistryConsole,  # noqa: F811
) -> None:
    alice = await registry_console.signed_in("alice")
    token = csrf_of((await alice.get(ENTRY)).text)
    bad = await _post(alice, registry_console, "visibility", token, groups="équipe")
    assert bad.status_code == 400 and "printable ASCII" in bad.text
    bad = await _post(alice, registry_console, "status", token, status="gone")
    assert bad.status_code == 400 and "must be one of" in bad.text
    same = await _post(alice, registry_console, "status", token, status="active")
    assert same.status_code == 400 and "no changes to apply" in same.text
    missing = await alice.post(
        "/admin/registry/approve",
        data={"csrf": token, "name": "com.acme.team-a/none", "version": "9"},
        headers={"Origin": registry_console.issuer},
    )
    assert missing.status_code == 404 and "No such entry" in missing.text
    unknown = await alice.get("/admin/registry/entry", params={"name": "x", "version": "1"})
    assert unknown.status_code == 404
    await _nothing_changed(registry_console)
