"""``/admin/audit`` and its export over real HTTP, on both databases: a person who is not an
administrator sees nothing of the trail, filters that cannot be read are explained (400), and
each filter returns exactly the records it names, on the page and in the download, whose lines
are those of ``bastion audit --json``."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import httpx

from bastion.authserver.audit_query import trail
from tests.console.conftest import Console, csrf_of
from tests.support.flow import register

EXPORT = "/admin/audit/export"


async def _trail(console: Console, **filters: Any) -> list[dict[str, Any]]:
    """What ``bastion audit --json`` prints for ``filters`` (the function it calls)."""
    return [line async for line in trail(console.settings, **filters)]


def _exported(answer: httpx.Response) -> list[dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-disposition"].startswith("attachment; filename=")
    assert answer.headers["cache-control"] == "no-store"
    return [json.loads(line) for line in answer.text.splitlines()]


def _shown_types(page: str) -> list[str]:
    """The type column of the page's records, top to bottom."""
    body = page.split('id="records"')[1]
    return re.findall(r"<tr>\s*<td>[^<]+</td>\s*<td>([^<]+)</td>", body)


async def _activity(console: Console) -> str:
    """Sign-ins, a failed one, a registration and an administrator's change; bob's id."""
    bob = await console.signed_in("bob")
    async with httpx.AsyncClient(base_url=console.issuer) as http:
        form = await http.get("/signin")
        await http.post(
            "/signin",
            data={"csrf": csrf_of(form.text), "username": "bob", "password": "wrong", "next": ""},
        )
        client_id = (await register(http))["client_id"]
    alice = await console.signed_in("alice")
    page = await alice.get("/admin/people/bob")
    ended = await alice.post(
        "/admin/people/bob/end-sessions",
        data={"csrf": csrf_of(page.text)},
        headers={"Origin": console.issuer},
    )
    assert ended.status_code == 303
    await bob.aclose()
    return client_id


async def test_a_person_who_is_not_an_administrator_sees_nothing_of_the_trail(
    console: Console,
) -> None:
    bob = await console.signed_in("bob")
    for path in ("/admin/audit", EXPORT, f"{EXPORT}?type=sign_in", "/admin/audit?user=alice"):
        answer = await bob.get(path)
        assert answer.status_code == 403, path
        assert "sign_in" not in answer.text and "attachment" not in str(answer.headers)


async def test_filters_that_cannot_be_read_are_explained_on_the_page(console: Console) -> None:
    alice = await console.signed_in("alice")
    cases = {
        "type=nope": "No event type 'nope'",
        "since=yesterday": "Since 'yesterday' is neither a duration",
        "until=soon": "Until 'soon' is neither a duration",
        "since=1h&until=2h": "Until must be later than since",
        "limit=0": "Show must be a number from 1 to 1000",
        "limit=x": "Show must be a number",
        "user=nobody": "No person called 'nobody'",
    }
    for query, message in cases.items():
        for path in ("/admin/audit", EXPORT):
            answer = await alice.get(f"{path}?{query}")
            assert answer.status_code == 400, (path, query)
            assert message in html.unescape(answer.text), (path, query)
            assert "Traceback" not in answer.text and 'id="records"' not in answer.text
            assert "content-disposition" not in answer.headers


async def test_each_filter_returns_exactly_its_records_newest_first(console: Console) -> None:
    client_id = await _activity(console)
    alice = await console.signed_in("alice")
    everything = await _trail(console)
    newest_first = [line["type"] for line in reversed(everything)]
    page = await alice.get("/admin/audit")
    assert page.status_code == 200
    assert _shown_types(page.text) == newest_first

    bobs = await _trail(console, username="bob")
    assert [line["type"] for line in bobs] == [
        "admin.user_added",
        "sign_in",
        "sign_in_failed",
        "admin.user_sessions_ended",
    ]
    page = await alice.get("/admin/audit", params={"user": "bob"})
    assert _shown_types(page.text) == [line["type"] for line in reversed(bobs)]

    page = await alice.get("/admin/audit", params={"type": "sign_in_failed"})
    assert _shown_types(page.text) == ["sign_in_failed"]
    assert "wrong_password" in page.text
    page = await alice.get("/admin/audit", params={"client": client_id})
    assert _shown_types(page.text) == ["client_registered"]
    page = await alice.get("/admin/audit", params={"type": "admin.*"})
    admins = [line["type"] for line in everything if line["type"].startswith("admin.")]
    assert _shown_types(page.text) == list(reversed(admins))
    assert admins[-1] == "admin.user_sessions_ended" and "console:alice" in page.text

    # since and until: from the failed sign-in (included) to the change (excluded).
    failed = next(line for line in everything if line["type"] == "sign_in_failed")
    change = next(line for line in everything if line["type"] == "admin.user_sessions_ended")
    window = {"since": failed["time"], "until": change["time"]}
    page = await alice.get("/admin/audit", params=window)
    expected = [line["type"] for line in everything if failed["id"] <= line["id"] < change["id"]]
    assert _shown_types(page.text) == list(reversed(expected))
    assert len(expected) >= 2


async def test_the_trail_is_shown_a_page_at_a_time(console: Console) -> None:
    await _activity(console)
    alice = await console.signed_in("alice")
    everything = list(reversed(await _trail(console)))
    first = await alice.get("/admin/audit", params={"limit": "2"})
    assert _shown_types(first.text) == [line["type"] for line in everything[:2]]
    older = re.search(r'href="(/admin/audit\?[^"]*before=\d+)"', first.text)
    assert older, first.text
    second = await alice.get(older.group(1).replace("&amp;", "&"))
    assert _shown_types(second.text) == [line["type"] for line in everything[2:4]]


async def test_the_export_is_the_same_lines_as_bastion_audit_json(console: Console) -> None:
    client_id = await _activity(console)
    alice = await console.signed_in("alice")
    everything = _exported(await alice.get(EXPORT))
    assert everything == await _trail(console)
    bobs = _exported(await alice.get(EXPORT, params={"user": "bob"}))
    assert bobs == await _trail(console, username="bob")
    assert _exported(await alice.get(EXPORT, params={"client": client_id})) == await _trail(
        console, client_id=client_id
    )
    newest = _exported(await alice.get(EXPORT, params={"limit": "2", "type": "sign_in"}))
    assert newest == await _trail(console, types=["sign_in"], limit=2)
    assert [line["type"] for line in newest] == ["sign_in", "sign_in"]
    page = await alice.get("/admin/audit", params={"user": "bob", "type": "sign_in"})
    assert f'href="{EXPORT}?user=bob&amp;type=sign_in"' in page.text
