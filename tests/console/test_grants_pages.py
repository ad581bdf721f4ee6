"""``/admin/grants`` over real HTTP, on both databases: who is refused first (a person who is
not an administrator, a form without the session's token, a stale sign-in: nothing is revoked
or withdrawn), then what an administrator does: list and filter live grants and remembered
consents, revoke one grant (its refresh token then gets invalid_grant), every grant of a person
or of a client, and withdraw a consent (the person is asked again)."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from bastion.authserver import admin
from bastion.console.guard import csrf_for
from bastion.oauth import pkce
from bastion.store.schema import consents, token_families
from tests.console.conftest import Console, csrf_of
from tests.console.gated import (
    assert_by_console,
    console_records,
    person_tokens,
    records,
    refresh,
    rows,
)
from tests.support.flow import REDIRECT_URI, authorize

REVOKE, REVOKE_ALL, WITHDRAW = (
    "/admin/grants/revoke",
    "/admin/grants/revoke-all",
    "/admin/grants/withdraw-consent",
)


async def _live(console: Console) -> list[sa.Row[tuple[object, ...]]]:
    return await rows(
        console,
        sa.select(token_families)
        .where(token_families.c.revoked_at.is_(None))
        .order_by(token_families.c.created_at),
    )


async def _consents(console: Console) -> int:
    return len(await rows(console, sa.select(consents)))


async def _two_grants(console: Console) -> tuple[tuple[str, str], tuple[str, str]]:
    """bob on notes and carol on ledger, each through a client of their own: (client id,
    refresh token) of each."""
    bob_client, bob = await person_tokens(console, "bob", console.url("/mcp/notes"))
    carol_client, carol = await person_tokens(console, "carol", console.url("/mcp/ledger"))
    return (bob_client, bob["refresh_token"]), (carol_client, carol["refresh_token"])


def _forms(console: Console, token: str, grant_id: str, client_id: str) -> list[tuple[str, dict]]:
    return [
        (REVOKE, {"csrf": token, "grant_id": grant_id}),
        (REVOKE_ALL, {"csrf": token, "username": "bob"}),
        (REVOKE_ALL, {"csrf": token, "client_id": client_id}),
        (
            WITHDRAW,
            {
                "csrf": token,
                "username": "bob",
                "client_id": client_id,
                "resource": console.url("/mcp/notes"),
            },
        ),
    ]


async def test_a_person_who_is_not_an_administrator_revokes_and_withdraws_nothing(
    console: Console,
) -> None:
    (bob_client, _), _ = await _two_grants(console)
    grant_id = (await _live(console))[0].id
    bob = await console.signed_in("bob")
    page = await bob.get("/admin/grants")
    assert page.status_code == 403 and bob_client not in page.text
    token = csrf_for(bob.cookies["bastion-session"])
    for path, form in _forms(console, token, grant_id, bob_client):
        assert (await bob.post(path, data=form)).status_code == 403, path
    assert len(await _live(console)) == 2
    assert await _consents(console) == 2
    assert await console_records(console) == []


async def test_grant_forms_without_the_sessions_token_are_refused(console: Console) -> None:
    (bob_client, _), _ = await _two_grants(console)
    grant_id = (await _live(console))[0].id
    alice = await console.signed_in("alice")
    assert (await alice.get("/admin/grants")).status_code == 200
    for path, form in _forms(console, "forged", grant_id, bob_client):
        answer = await alice.post(path, data=form)
        assert answer.status_code == 403 and "Form refused" in answer.text, path
    assert len(await _live(console)) == 2 and await _consents(console) == 2
    assert await console_records(console) == []


async def test_a_stale_sign_in_revokes_and_withdraws_nothing(console: Console) -> None:
    (bob_client, _), _ = await _two_grants(console)
    grant_id = (await _live(console))[0].id
    alice = await console.signed_in("alice")
    token = csrf_of((await alice.get("/admin/grants?person=bob")).text)
    console.clock.offset = console.settings.console.fresh_sign_in + 5
    for path, form in _forms(console, token, grant_id, bob_client):
        answer = await alice.post(path, data={**form, "back": "/admin/grants?person=bob"})
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/signin?next=%2Fadmin%2Fgrants%3Fperson%3Dbob&fresh=1"
    assert len(await _live(console)) == 2 and await _consents(console) == 2
    assert await console_records(console) == []


async def test_grants_and_consents_are_listed_and_filtered_by_person_and_client(
    console: Console,
) -> None:
    (bob_client, _), (carol_client, _) = await _two_grants(console)
    alice = await console.signed_in("alice")
    everything = await alice.get("/admin/grants")
    assert everything.status_code == 200
    assert bob_client in everything.text and carol_client in everything.text
    assert "Test client" in everything.text and console.url("/mcp/ledger") in everything.text
    only_bob = await alice.get("/admin/grants", params={"person": "bob"})
    assert bob_client in only_bob.text and carol_client not in only_bob.text
    assert "Revoke every grant of bob" in only_bob.text
    only_carols_client = await alice.get("/admin/grants", params={"client": carol_client})
    assert carol_client in only_carols_client.text and bob_client not in only_carols_client.text
    assert "Revoke every grant of Test client" in only_carols_client.text
    nobody = await alice.get("/admin/grants", params={"person": "nobody"})
    assert nobody.status_code == 404 and "No such person" in nobody.text
    no_client = await alice.get("/admin/grants", params={"client": "no-such-client"})
    assert no_client.status_code == 404 and "No such client" in no_client.text


async def test_a_revoked_grants_refresh_token_is_refused_at_the_token_endpoint(
    console: Console,
) -> None:
    (bob_client, bob_refresh), (carol_client, carol_refresh) = await _two_grants(console)
    grant_id = next(g.id for g in await _live(console) if g.client_id == bob_client)
    alice = await console.signed_in("alice")
    token = csrf_of((await alice.get("/admin/grants")).text)
    answer = await alice.post(
        REVOKE, data={"csrf": token, "grant_id": grant_id}, headers={"Origin": console.issuer}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/grants?notice=grant_revoked"
    page = await alice.get(answer.headers["location"])
    live = page.text.split("Remembered consents")[0]
    assert "its tokens no longer work" in live and bob_client not in live
    refused = await refresh(console, bob_client, bob_refresh)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert (await refresh(console, carol_client, carol_refresh)).status_code == 200
    found = await records(console, "admin.grants_revoked")
    assert_by_console(found)
    assert found[0].target_id == grant_id and found[0].detail == {"count": 1}
    again = await alice.post(REVOKE, data={"csrf": token, "grant_id": grant_id})
    assert again.status_code == 404 and "no live grant" in again.text
    empty = await alice.post(REVOKE, data={"csrf": token, "grant_id": ""})
    assert empty.status_code == 400


async def test_every_grant_of_a_person_or_of_a_client_is_revoked_at_once(
    console: Console,
) -> None:
    (bob_client, _), (carol_client, carol_refresh) = await _two_grants(console)
    await person_tokens(console, "bob", console.url("/mcp/ledger"))
    carol = await console.signed_in("carol")
    token = csrf_of((await carol.get("/admin/grants?person=bob")).text)
    answer = await carol.post(REVOKE_ALL, data={"csrf": token, "username": "bob", "person": "bob"})
    assert answer.headers["location"] == "/admin/grants?notice=grants_revoked&person=bob"
    assert [g.client_id for g in await _live(console)] == [carol_client]
    by_client = await carol.post(REVOKE_ALL, data={"csrf": token, "client_id": carol_client})
    assert by_client.status_code == 303
    assert await _live(console) == []
    assert (await refresh(console, carol_client, carol_refresh)).json()["error"] == "invalid_grant"
    found = await records(console, "admin.grants_revoked")
    assert_by_console(found, "carol")
    assert [r.detail["count"] for r in found] == [2, 1]
    unknown = await carol.post(REVOKE_ALL, data={"csrf": token, "username": "nobody"})
    assert unknown.status_code == 404
    neither = await carol.post(REVOKE_ALL, data={"csrf": token})
    assert neither.status_code == 400
    assert bob_client


async def _asks_for_consent(http: httpx.AsyncClient, client_id: str, resource: str) -> bool:
    """Whether an authorization request (bob signed in already) shows the consent page."""
    start = await http.get(
        "/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "code_challenge": pkce.s256(pkce.new_verifier()),
            "code_challenge_method": "S256",
            "resource": resource,
            "scope": "mcp:tools",
        },
    )
    step = await http.get(start.headers["location"])
    if step.status_code in (302, 303):
        assert "code=" in step.headers["location"]
        return False
    assert step.status_code == 200 and 'name="decision"' in step.text
    return True


async def test_a_withdrawn_consent_is_asked_for_again(console: Console) -> None:
    notes = console.url("/mcp/notes")
    made = await admin.add_client(
        console.settings,
        client_id="portal",
        name="Portal",
        redirect_uris=[REDIRECT_URI],
        confidential=True,
        grant_types=["authorization_code", "refresh_token"],
        scope=None,
    )
    assert made.secret
    async with httpx.AsyncClient(base_url=console.issuer, trust_env=False) as http:
        await authorize(http, "portal", username="bob", resource=notes)
        assert not await _asks_for_consent(http, "portal", notes)  # remembered
        alice = await console.signed_in("alice")
        page = await alice.get("/admin/grants", params={"client": "portal"})
        assert "Remembered consents" in page.text and "Portal" in page.text
        form = {
            "csrf": csrf_of(page.text),
            "username": "bob",
            "client_id": "portal",
            "resource": notes,
            "client": "portal",
        }
        answer = await alice.post(WITHDRAW, data=form)
        assert answer.headers["location"] == "/admin/grants?notice=consent_withdrawn&client=portal"
        assert await _consents(console) == 0
        assert await _asks_for_consent(http, "portal", notes)
    found = await records(console, "admin.consent_withdrawn")
    assert_by_console(found)
    assert found[0].client_id == "portal"
    assert found[0].detail == {"username": "bob", "resource": notes, "scope": "mcp:tools"}
    again = await alice.post(WITHDRAW, data=form)
    assert again.status_code == 404 and "no remembered consent" in again.text
