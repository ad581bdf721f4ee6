"""``/admin/access`` over real HTTP, on both databases: who is refused first (a person who is
not an administrator, a form without the session's token, a stale sign-in before a removal),
then what an administrator does: close a resource with a rule (and a person outside it is
refused at the consent step), remove it, read what each tool behind the gateway needs, and ask
"can this person call this tool?"."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from bastion.console.guard import csrf_for
from bastion.store.schema import access_rules, token_families
from tests.console.conftest import Console, csrf_of
from tests.console.gated import (
    Gated,
    assert_by_console,
    console_records,
    gated,  # noqa: F401  (the fixture)
    person_tokens,
    records,
    rows,
)
from tests.support.flow import register

ALLOW = "/admin/access/allow"
REMOVE = "/admin/access/remove"


async def _rules(console: Console) -> list[tuple[str, str, str]]:
    found = await rows(console, sa.select(access_rules))
    return sorted((r.resource, r.who, " ".join(r.scopes)) for r in found)


async def _live_grants(console: Console) -> int:
    found = await rows(
        console, sa.select(token_families).where(token_families.c.revoked_at.is_(None))
    )
    return len(found)


def _notes(console: Console) -> str:
    return console.url("/mcp/notes")


async def test_a_person_who_is_not_an_administrator_is_refused_every_access_route(
    console: Console,
) -> None:
    bob = await console.signed_in("bob")
    token = csrf_for(bob.cookies["bastion-session"])
    for path in ("/admin/access", f"/admin/access/check?user=bob&resource={_notes(console)}"):
        answer = await bob.get(path)
        assert answer.status_code == 403, path
        assert "Administrators only" in answer.text and "Check a person" not in answer.text
    form = {"csrf": token, "resource": _notes(console), "kind": "user", "value": "bob"}
    assert (await bob.post(ALLOW, data=form)).status_code == 403
    assert await _rules(console) == []
    alice = await console.signed_in("alice")
    page = await alice.get("/admin/access")
    added = await alice.post(ALLOW, data={**form, "csrf": csrf_of(page.text), "value": "alice"})
    assert added.status_code == 303
    before = await _rules(console)
    removal = {"csrf": token, "resource": _notes(console), "who": "user:alice"}
    assert (await bob.post(REMOVE, data=removal)).status_code == 403
    assert await _rules(console) == before
    assert len(await console_records(console)) == 1  # alice's rule only


async def test_an_access_form_without_the_sessions_token_is_refused(console: Console) -> None:
    alice = await console.signed_in("alice")
    token = csrf_of((await alice.get("/admin/access")).text)
    form = {"resource": _notes(console), "kind": "group", "value": "finance"}
    for attempt in ({}, {"csrf": ""}, {"csrf": token[:-2] + "xx"}):
        answer = await alice.post(ALLOW, data={**form, **attempt})
        assert answer.status_code == 403 and "Form refused" in answer.text
    foreign = await alice.post(
        ALLOW, data={**form, "csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    assert await _rules(console) == []
    assert await console_records(console) == []


async def test_a_stale_sign_in_removes_no_rule_and_is_asked_to_sign_in_again(
    console: Console,
) -> None:
    alice = await console.signed_in("alice")
    token = csrf_of((await alice.get("/admin/access")).text)
    form = {"csrf": token, "resource": _notes(console), "kind": "group", "value": "finance"}
    assert (await alice.post(ALLOW, data=form)).status_code == 303
    console.clock.offset = console.settings.console.fresh_sign_in + 5
    answer = await alice.post(
        REMOVE, data={"csrf": token, "resource": _notes(console), "who": "group:finance"}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/signin?next=%2Fadmin%2Faccess&fresh=1"
    assert await _rules(console) == [(_notes(console), "group:finance", "*")]
    assert await records(console, "admin.access_removed") == []


async def test_a_rule_closes_a_resource_and_a_person_outside_it_is_refused_at_the_consent_step(
    console: Console,
) -> None:
    await person_tokens(console, "bob", _notes(console))
    assert await _live_grants(console) == 1
    alice = await console.signed_in("alice")
    page = await alice.get("/admin/access")
    assert page.status_code == 200
    assert "Open to every signed-in person" in page.text
    answer = await alice.post(
        ALLOW,
        data={
            "csrf": csrf_of(page.text),
            "resource": _notes(console),
            "kind": "group",
            "value": "finance",
            "scopes": "mcp:tools",
        },
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/access?notice=rule_added&ended=1"
    shown = await alice.get(answer.headers["location"])
    assert "It ended 1 live grant it no longer allows." in shown.text
    assert "group:finance" in shown.text
    assert await _rules(console) == [(_notes(console), "group:finance", "mcp:tools")]
    assert await _live_grants(console) == 0  # bob's grant ended with the rule
    # bob (sales) is refused at the consent step from now on: no code, no token.
    async with httpx.AsyncClient(base_url=console.issuer, trust_env=False) as http:
        client_id = (await register(http))["client_id"]
        start = await http.get(
            "/authorize",
            params={
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": "http://127.0.0.1:53682/callback",
                "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGKSJA3kpM",
                "code_challenge_method": "S256",
                "resource": _notes(console),
                "scope": "mcp:tools",
            },
        )
        login = await http.get(start.headers["location"])
        path = start.headers["location"].split("?")[0]
        signed = await http.post(
            f"{path}/login",
            data={
                "csrf": csrf_of(login.text),
                "username": "bob",
                "password": "correct horse battery staple",
            },
        )
        denied = await http.get(signed.headers["location"])
        assert denied.status_code == 403
        assert "code=" not in denied.headers.get("location", "")
    # ledger stays open to bob.
    await person_tokens(console, "bob", console.url("/mcp/ledger"))
    found = await records(console, "admin.access_allowed")
    assert_by_console(found)
    assert found[0].detail["who"] == "group:finance" and found[0].detail["grants_revoked"] == 1


async def test_an_administrator_removes_a_rule_and_the_resource_is_open_again(
    console: Console,
) -> None:
    carol = await console.signed_in("carol")
    token = csrf_of((await carol.get("/admin/access")).text)
    for who in ("finance", "sales"):
        form = {"csrf": token, "resource": "notes", "kind": "group", "value": who}
        assert (await carol.post(ALLOW, data=form)).status_code == 303
    _, tokens = await person_tokens(console, "bob", _notes(console))
    answer = await carol.post(
        REMOVE, data={"csrf": token, "resource": _notes(console), "who": "group:sales"}
    )
    assert answer.headers["location"] == "/admin/access?notice=rule_removed&ended=1"
    assert await _rules(console) == [(_notes(console), "group:finance", "*")]
    assert tokens["access_token"]
    again = await carol.post(
        REMOVE, data={"csrf": token, "resource": _notes(console), "who": "group:finance"}
    )
    assert again.headers["location"] == "/admin/access?notice=rule_removed&ended=0"
    page = await carol.get(again.headers["location"])
    assert "It ended 0 live grants" in page.text
    assert page.text.count("Open to every signed-in person") == 2  # notes and ledger
    assert_by_console(await records(console, "admin.access_removed"), "carol")
    missing = await carol.post(
        REMOVE, data={"csrf": token, "resource": _notes(console), "who": "group:finance"}
    )
    assert missing.status_code == 404 and "The rule was not removed" in missing.text


async def test_a_rule_the_form_does_not_fully_describe_is_refused_with_a_message(
    console: Console,
) -> None:
    alice = await console.signed_in("alice")
    token = csrf_of((await alice.get("/admin/access")).text)
    base = {"csrf": token, "resource": _notes(console)}
    for form, message in (
        ({"kind": "group", "value": ""}, "give the group"),
        ({"kind": "nobody", "value": "x"}, "choose who"),
        ({"kind": "domain", "value": "a@b.example"}, "bare e-mail domain"),
        ({"kind": "group", "value": "x", "scopes": "files:write"}, "unknown scope"),
        ({"kind": "client", "value": "no-such-client"}, "no client"),
        ({"kind": "group", "value": "x", "resource": "https://elsewhere.example"}, "no resource"),
    ):
        answer = await alice.post(ALLOW, data={**base, **form})
        assert answer.status_code == 400, form
        assert "The rule was not added" in answer.text and message in answer.text, form
        assert "Traceback" not in answer.text
    assert await _rules(console) == []
    assert await console_records(console) == []


async def test_the_access_page_shows_what_each_tool_behind_the_gateway_needs(
    gated: Gated,  # noqa: F811
) -> None:
    alice = await gated.console.signed_in("alice")
    page = await alice.get("/admin/access")
    assert page.status_code == 200
    text = page.text
    assert "Tools behind the gateway" in text and "<code>add_note</code>" in text
    row = text[text.index("<code>add_note</code>") :].split("</tr>")[0]
    assert "notes:write" in row and "mcp:tools" in row and "editors" in row
    other = text[text.index("any other tool") :].split("</tr>")[0]
    assert "mcp:tools" in other and "notes:write" not in other and "editors" not in other


async def test_the_check_answers_yes_and_no_with_every_reason(
    gated: Gated,  # noqa: F811
) -> None:
    console = gated.console
    alice = await console.signed_in("alice")
    notes = gated.notes

    async def ask(user: str, tool: str = "add_note") -> httpx.Response:
        return await alice.get(
            "/admin/access/check", params={"user": user, "resource": notes, "tool": tool}
        )

    yes = await ask("dana")
    assert yes.status_code == 200
    assert "Yes: dana can call add_note" in yes.text
    assert (
        "every signed-in person" in yes.text and "is for members of editors: dana is." in yes.text
    )
    no = await ask("bob")
    assert "No: bob cannot call add_note" in no.text
    assert "bob is in none of them" in no.text
    assert (await ask("bob", "list_notes")).text.count("Yes: bob can call list_notes") == 1
    # A rule narrows the scopes people may obtain: dana may no longer obtain notes:write.
    token = csrf_of((await alice.get("/admin/access")).text)
    form = {"csrf": token, "resource": notes, "kind": "group", "value": "editors"}
    await alice.post(ALLOW, data={**form, "scopes": "mcp:tools"})
    narrowed = await ask("dana")
    assert "No: dana cannot call add_note" in narrowed.text
    assert "Admitted by group:editors (mcp:tools)" in narrowed.text
    assert "missing: notes:write" in narrowed.text
    outside = await ask("bob", "list_notes")
    assert "No: bob cannot call list_notes" in outside.text
    assert "No rule admits bob" in outside.text
    unknown = await ask("nobody")
    assert unknown.status_code == 404 and "No person called" in unknown.text
    nowhere = await alice.get("/admin/access/check", params={"user": "bob", "resource": "nope"})
    assert nowhere.status_code == 400 and "no resource" in nowhere.text
    half = await alice.get("/admin/access/check", params={"user": "bob"})
    assert half.status_code == 400
    ledger = await alice.get(
        "/admin/access/check", params={"user": "bob", "resource": "ledger", "tool": "x"}
    )
    assert "No gateway upstream serves this resource" in ledger.text
