"""``/admin/clients`` over real HTTP, on both databases: first who may not list, add, change,
rotate or remove clients (a person who is not an administrator, a form without the session's
token, a stale sign-in), then what an administrator does, proved at ``/token`` and in the
database and the audit trail."""

from __future__ import annotations

import json
from typing import Any

import httpx
import sqlalchemy as sa
from joserfc.jwk import ECKey

from bastion.authserver import admin
from bastion.console.guard import csrf_for, quoted
from bastion.store import clients as client_rows
from bastion.store.schema import access_rules, auth_audit, clients
from tests.console.conftest import Console, csrf_of
from tests.support.clients import MachineClient, machine_client
from tests.support.flow import register


async def _rows(console: Console, query: Any) -> list[Any]:
    db = console.database()
    try:
        async with db.connect() as conn:
            return list(await conn.execute(query))
    finally:
        await db.dispose()


async def _client_row(console: Console, client_id: str) -> Any:
    found = await _rows(console, sa.select(clients).where(clients.c.client_id == client_id))
    return found[0] if found else None


async def _records(console: Console, kind: str) -> list[Any]:
    return await _rows(console, sa.select(auth_audit).where(auth_audit.c.type == kind))


async def _console_records(console: Console) -> list[Any]:
    q = sa.select(auth_audit).where(auth_audit.c.actor.like("console:%"))
    return await _rows(console, q)


def _notes(console: Console) -> str:
    return console.url("/mcp/notes")


async def _token(console: Console, client_id: str, secret: str) -> httpx.Response:
    """A client_credentials token request at the live server's /token (client_secret_basic)."""
    async with httpx.AsyncClient(base_url=console.issuer) as http:
        return await http.post(
            "/token",
            data={"grant_type": "client_credentials", "resource": _notes(console)},
            auth=(client_id, secret),
        )


async def _machine(console: Console, client_id: str = "robot") -> MachineClient:
    return await machine_client(
        console.settings, name="Robot", client_id=client_id, resources=[_notes(console)]
    )


def _secret_on(page: str) -> str:
    start = page.index('class="secret"')
    return page[page.index(">", start) + 1 : page.index("</code>", start)]


async def _post(http: httpx.AsyncClient, path: str, data: dict[str, Any]) -> httpx.Response:
    """Send a console form as the page at ``/admin/clients/new`` would (its CSRF token)."""
    token = csrf_of((await http.get("/admin/clients/new")).text)
    return await http.post(path, data={"csrf": token, **data})


async def _alice_does(
    console: Console, action: str
) -> tuple[MachineClient, httpx.AsyncClient, httpx.Response]:
    """Machine client robot, used once (this server caches it now), then alice's ``action``
    on its page."""
    robot = await _machine(console)
    assert (await _token(console, "robot", robot.secret)).status_code == 200
    alice = await console.signed_in("alice")
    token = csrf_of((await alice.get("/admin/clients/robot")).text)
    answer = await alice.post(f"/admin/clients/robot/{action}", data={"csrf": token})
    return robot, alice, answer


async def _recorded_once(console: Console, kind: str, target: str) -> Any:
    """The one audit record of ``kind``: alice's, from a console request, about ``target``."""
    [record] = await _records(console, kind)
    assert record.actor == "console:alice" and record.request_id and record.target_id == target
    return record


MACHINE_FORM = {"name": "Nightly report", "client_id": "nightly", "kind": "machine"}
APP_FORM = {
    "name": "Notes web",
    "client_id": "notes-web",
    "kind": "app",
    "access": "confidential",
    "auth": "secret",
    "redirect_uris": "https://notes.example/callback\nhttps://notes.example/other",
}


# -- who may not ------------------------------------------------------------------------------


async def test_a_person_who_is_not_an_administrator_is_refused_every_client_page_and_action(
    console: Console,
) -> None:
    robot = await _machine(console)
    bob = await console.signed_in("bob")
    for path in ("/admin/clients", "/admin/clients/new", "/admin/clients/robot"):
        answer = await bob.get(path)
        assert answer.status_code == 403, path
        assert "Robot" not in answer.text
    token = csrf_for(bob.cookies["bastion-session"])  # bob's own valid token: not enough
    posts = {
        "/admin/clients": {**MACHINE_FORM, "resources": _notes(console)},
        "/admin/clients/robot/edit": {"name": "Bob's robot", "scope": ""},
        "/admin/clients/robot/rotate-secret": {"back": "/admin/clients/robot"},
        "/admin/clients/robot/remove": {"back": "/admin/clients/robot"},
    }
    for path, data in posts.items():
        answer = await bob.post(path, data={"csrf": token, **data})
        assert answer.status_code == 403, path
    assert await _client_row(console, "nightly") is None
    row = await _client_row(console, "robot")
    assert row is not None and row.metadata["client_name"] == "Robot"
    assert (await _token(console, robot.client_id, robot.secret)).status_code == 200
    assert await _console_records(console) == []


async def test_client_forms_without_the_sessions_token_are_refused(console: Console) -> None:
    robot = await _machine(console)
    alice = await console.signed_in("alice")
    for path, data in {
        "/admin/clients": {**MACHINE_FORM, "resources": _notes(console)},
        "/admin/clients/robot/edit": {"name": "Changed"},
        "/admin/clients/robot/rotate-secret": {"back": "/admin/clients/robot"},
        "/admin/clients/robot/remove": {"back": "/admin/clients/robot"},
    }.items():
        for token in ({}, {"csrf": "forged"}):
            answer = await alice.post(path, data={**token, **data})
            assert answer.status_code == 403, path
            assert "Form refused" in answer.text
    assert await _client_row(console, "nightly") is None
    assert (await _client_row(console, "robot")).metadata["client_name"] == "Robot"
    assert (await _token(console, robot.client_id, robot.secret)).status_code == 200
    assert await _console_records(console) == []


async def test_a_stale_sign_in_rotates_and_removes_nothing_and_is_asked_to_sign_in_again(
    console: Console,
) -> None:
    robot = await _machine(console)
    alice = await console.signed_in("alice")
    page = await alice.get("/admin/clients/robot")
    token = csrf_of(page.text)
    console.clock.offset = console.settings.console.fresh_sign_in + 5
    for action in ("rotate-secret", "remove"):
        answer = await alice.post(
            f"/admin/clients/robot/{action}", data={"csrf": token, "back": "/admin/clients/robot"}
        )
        assert answer.status_code == 303, action
        assert answer.headers["location"] == "/signin?next=%2Fadmin%2Fclients%2Frobot&fresh=1"
    assert await _client_row(console, "robot") is not None
    assert (await _token(console, robot.client_id, robot.secret)).status_code == 200
    assert await _console_records(console) == []


# -- what an administrator does ---------------------------------------------------------------


async def test_an_administrator_adds_a_machine_client_whose_secret_is_shown_once_and_works(
    console: Console,
) -> None:
    alice = await console.signed_in("alice")
    answer = await _post(
        alice,
        "/admin/clients",
        {**MACHINE_FORM, "resources": _notes(console), "scope": "mcp:tools"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert "stored only as a hash" in answer.text
    secret = _secret_on(answer.text)
    row = await _client_row(console, "nightly")
    assert row.origin == "preregistered" and row.metadata["grant_types"] == ["client_credentials"]
    assert secret not in json.dumps(row._asdict(), default=str)
    rules = await _rows(
        console, sa.select(access_rules).where(access_rules.c.who == "client:nightly")
    )
    assert [(r.resource, list(r.scopes)) for r in rules] == [(_notes(console), ["mcp:tools"])]
    issued = await _token(console, "nightly", secret)
    assert issued.status_code == 200, issued.text
    assert issued.json()["access_token"]
    detail = await alice.get("/admin/clients/nightly")
    assert detail.status_code == 200 and secret not in detail.text
    assert "machine" in detail.text and _notes(console) in detail.text
    record = await _recorded_once(console, "admin.client_added", "nightly")
    assert record.detail["resources"] == [_notes(console)]


async def test_an_administrator_rotates_a_secret_and_only_the_new_one_works(
    console: Console,
) -> None:
    robot, alice, answer = await _alice_does(console, "rotate-secret")
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    fresh = _secret_on(answer.text)
    assert fresh != robot.secret
    old = await _token(console, "robot", robot.secret)
    assert old.status_code == 401 and old.json()["error"] == "invalid_client"
    assert (await _token(console, "robot", fresh)).status_code == 200
    assert fresh not in (await alice.get("/admin/clients/robot")).text
    await _recorded_once(console, "admin.client_secret_rotated", "robot")


async def test_an_administrator_removes_a_client_and_its_secret_stops_working(
    console: Console,
) -> None:
    robot, alice, answer = await _alice_does(console, "remove")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/clients?notice=removed"
    assert "its tokens no longer work" in (await alice.get(answer.headers["location"])).text
    assert await _client_row(console, "robot") is None
    assert (
        await _rows(console, sa.select(access_rules).where(access_rules.c.who == "client:robot"))
        == []
    )
    refused = await _token(console, "robot", robot.secret)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert (await alice.get("/admin/clients/robot")).status_code == 404
    await _recorded_once(console, "admin.client_removed", "robot")


async def test_an_administrator_adds_and_edits_a_web_application(console: Console) -> None:
    alice = await console.signed_in("alice")
    answer = await _post(alice, "/admin/clients", APP_FORM)
    assert answer.status_code == 200, answer.text
    row = await _client_row(console, "notes-web")
    assert row.metadata["redirect_uris"] == APP_FORM["redirect_uris"].split("\n")
    assert row.metadata["grant_types"] == ["authorization_code", "refresh_token"]
    page = await alice.get("/admin/clients/notes-web")
    assert "web" in page.text and "Save changes" in page.text
    edited = await alice.post(
        "/admin/clients/notes-web/edit",
        data={
            "csrf": csrf_of(page.text),
            "name": "Notes",
            "redirect_uris": "https://notes.example/cb",
            "scope": "",
        },
    )
    assert edited.status_code == 303
    assert edited.headers["location"] == "/admin/clients/notes-web?notice=updated"
    row = await _client_row(console, "notes-web")
    assert row.metadata["client_name"] == "Notes"
    assert row.metadata["redirect_uris"] == ["https://notes.example/cb"]
    record = await _recorded_once(console, "admin.client_updated", "notes-web")
    assert record.detail["name"] == "Notes" and "scope" not in record.detail
    again = await alice.post(
        "/admin/clients/notes-web/edit",
        data={
            "csrf": csrf_of(page.text),
            "name": "Notes",
            "redirect_uris": "https://notes.example/cb",
        },
    )
    assert again.headers["location"].endswith("notice=unchanged")
    assert len(await _records(console, "admin.client_updated")) == 1


async def test_an_administrator_changes_a_machine_clients_resources(console: Console) -> None:
    robot = await _machine(console)
    assert (await _token(console, "robot", robot.secret)).status_code == 200  # cached now
    alice = await console.signed_in("alice")
    page = await alice.get("/admin/clients/robot")
    ledger = console.url("/mcp/ledger")
    answer = await alice.post(
        "/admin/clients/robot/edit",
        data={
            "csrf": csrf_of(page.text),
            "name": "Robot",
            "scope": "mcp:tools",
            "resources": ledger,
        },
    )
    assert answer.headers["location"].endswith("notice=updated_revoked")
    rules = await _rows(
        console, sa.select(access_rules).where(access_rules.c.who == "client:robot")
    )
    assert [r.resource for r in rules] == [ledger]
    refused = await _token(console, "robot", robot.secret)  # asks for notes: no longer allowed
    assert refused.status_code == 400, refused.text
    record = await _recorded_once(console, "admin.client_updated", "robot")
    assert record.detail["resources"] == [ledger]


async def test_an_administrator_replaces_the_keys_of_a_private_key_jwt_client(
    console: Console,
) -> None:
    first = ECKey.generate_key("P-256", parameters={"kid": "k-one", "alg": "ES256"}, private=True)
    second = ECKey.generate_key("P-256", parameters={"kid": "k-two", "alg": "ES256"}, private=True)
    alice = await console.signed_in("alice")
    answer = await _post(
        alice,
        "/admin/clients",
        {
            **MACHINE_FORM,
            "auth": "private_key_jwt",
            "jwks": json.dumps({"keys": [first.as_dict(private=False)]}),
        },
    )
    assert answer.status_code == 200, answer.text
    assert 'class="secret"' not in answer.text
    page = await alice.get("/admin/clients/nightly")
    assert "k-one" in page.text and "ES256" in page.text and "Rotate the secret" not in page.text
    edited = await alice.post(
        "/admin/clients/nightly/edit",
        data={
            "csrf": csrf_of(page.text),
            "name": "Nightly report",
            "jwks": json.dumps({"keys": [second.as_dict(private=False)]}),
        },
    )
    assert edited.status_code == 303, edited.text
    row = await _client_row(console, "nightly")
    assert [k["kid"] for k in row.metadata["jwks"]["keys"]] == ["k-two"]
    record = await _recorded_once(console, "admin.client_updated", "nightly")
    assert record.detail["jwks"] == ["k-two"]
    bad = await alice.post(
        "/admin/clients/nightly/edit",
        data={"csrf": csrf_of(page.text), "name": "Nightly report", "jwks": "{not json"},
    )
    assert bad.status_code == 400 and "The JWK Set is not JSON" in bad.text


async def test_bad_input_shows_the_form_again_with_a_message_and_stores_nothing(
    console: Console,
) -> None:
    await _machine(console)
    alice = await console.signed_in("alice")
    cases = [
        ({**APP_FORM, "redirect_uris": ""}, 400, "needs at least one redirect URI"),
        ({**APP_FORM, "redirect_uris": "not a uri"}, 400, "redirect"),
        ({**APP_FORM, "scope": "mcp:everything"}, 400, "unknown scope mcp:everything"),
        ({**APP_FORM, "client_id": "robot"}, 409, "already exists"),
        ({**MACHINE_FORM, "auth": "private_key_jwt", "jwks": "{nope"}, 400, "not JSON"),
        ({**MACHINE_FORM, "auth": "private_key_jwt"}, 400, "needs the client"),
        ({**APP_FORM, "name": ""}, 400, "Give the client a name"),
        ({**APP_FORM, "client_id": "é" * 3}, 400, "visible ASCII"),
        ({**APP_FORM, "client_id": "new"}, 400, "choose another"),
    ]
    for form, status, message in cases:
        answer = await _post(alice, "/admin/clients", form)
        assert answer.status_code == status, (form, answer.text)
        assert message in answer.text, (message, answer.text)
        assert 'role="alert"' in answer.text and "Add the client" in answer.text
        if form["name"]:
            assert f'value="{form["name"]}"' in answer.text
    stored = await _rows(console, sa.select(clients.c.client_id))
    assert [r.client_id for r in stored] == ["robot"]
    assert await _records(console, "admin.client_added") != []  # robot's, by the CLI
    assert await _console_records(console) == []


async def test_the_list_shows_every_kind_of_client_and_searches_them(console: Console) -> None:
    await _machine(console)
    async with httpx.AsyncClient(base_url=console.issuer) as anyone:
        dynamic = await register(anyone, client_name="Self Registered")
    cimd = "https://app.example/client.json"
    db = console.database()
    try:
        async with db.transaction() as conn:
            document = {
                "client_id": cimd,
                "client_name": "Metadata App",
                "redirect_uris": ["https://app.example/cb"],
            }
            await client_rows.put_document(
                conn, client_rows.CachedDocument(cimd, document, 1_700_000_000, 0, None, None)
            )
    finally:
        await db.dispose()
    alice = await console.signed_in("alice")
    listed = await alice.get("/admin/clients")
    assert listed.status_code == 200
    for text in ("Robot", "Self Registered", "Metadata App", "registered itself (RFC 7591)"):
        assert text in listed.text
    assert f'href="/admin/clients/{quoted(cimd)}"' in listed.text
    found = await alice.get("/admin/clients", params={"q": "ROBOT"})
    assert "Robot" in found.text and "Self Registered" not in found.text
    by_id = await alice.get("/admin/clients", params={"q": dynamic["client_id"][:8].upper()})
    assert "Self Registered" in by_id.text and "Robot" not in by_id.text
    none = await alice.get("/admin/clients", params={"q": "nothing-like-this"})
    assert "No client matches" in none.text
    page = await alice.get(f"/admin/clients/{quoted(cimd)}")
    assert page.status_code == 200 and "Managed by its document" in page.text
    assert "Remove the client" not in page.text
    self_made = f"/admin/clients/{quoted(dynamic['client_id'])}"
    page = await alice.get(self_made)
    assert "manages its registration itself (RFC 7592)" in page.text
    assert "Save changes" not in page.text
    refused = await alice.post(
        f"{self_made}/edit", data={"csrf": csrf_of(page.text), "name": "Mine now"}
    )
    assert refused.status_code == 409
    assert (await _client_row(console, dynamic["client_id"])).metadata["client_name"] == (
        "Self Registered"
    )
    removed = await alice.post(f"{self_made}/remove", data={"csrf": csrf_of(page.text)})
    assert removed.status_code == 303
    assert await _client_row(console, dynamic["client_id"]) is None
    assert (await alice.get("/admin/clients/no-such-client")).status_code == 404


async def test_the_cli_replaces_a_clients_keys_too(console: Console) -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "cli-key"}, private=True)
    await admin.add_client(
        console.settings,
        client_id="keyed",
        name="Keyed",
        redirect_uris=[],
        confidential=True,
        grant_types=["client_credentials"],
        scope=None,
        jwks_uri="https://keys.example/jwks.json",
    )
    client, _ = await admin.update_client(
        console.settings, "keyed", jwks={"keys": [key.as_dict(private=False)]}
    )
    assert client.metadata.jwks_uri is None and client.metadata.jwks is not None
    [record] = await _records(console, "admin.client_updated")
    assert record.detail["jwks"] == ["cli-key"] and record.actor.startswith("cli:")
