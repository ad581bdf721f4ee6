"""``/admin/keys`` over real HTTP, on both databases: who is refused first (a person who is not
an administrator, a form without the session's token, a stale sign-in: no key is made), then an
administrator rotates the signing key and ``/jwks`` shows the new key right after; "sign with it
now" makes it sign the next token."""

from __future__ import annotations

import base64
import json

import sqlalchemy as sa

from bastion.console.guard import csrf_for
from bastion.store.schema import signing_keys
from tests.console.conftest import Console, csrf_of
from tests.console.gated import assert_by_console, console_records, person_tokens, records, rows

ROTATE = "/admin/keys/rotate"


def _kid(token: str) -> str:
    """The ``kid`` in a JWT's header."""
    head = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


async def _kids(console: Console) -> list[str]:
    found = await rows(console, sa.select(signing_keys).order_by(signing_keys.c.activates_at))
    return [r.kid for r in found]


async def test_a_person_who_is_not_an_administrator_rotates_no_key(console: Console) -> None:
    before = await _kids(console)
    bob = await console.signed_in("bob")
    page = await bob.get("/admin/keys")
    assert page.status_code == 403 and before[0] not in page.text
    token = csrf_for(bob.cookies["bastion-session"])
    assert (await bob.post(ROTATE, data={"csrf": token, "now": "1"})).status_code == 403
    assert await _kids(console) == before
    assert await console_records(console) == []


async def test_a_rotation_without_the_token_or_with_a_stale_sign_in_makes_no_key(
    console: Console,
) -> None:
    before = await _kids(console)
    alice = await console.signed_in("alice")
    token = csrf_of((await alice.get("/admin/keys")).text)
    refused = await alice.post(ROTATE, data={"now": "1"})
    assert refused.status_code == 403 and "Form refused" in refused.text
    console.clock.offset = console.settings.console.fresh_sign_in + 5
    stale = await alice.post(ROTATE, data={"csrf": token, "now": "1"})
    assert stale.status_code == 303
    assert stale.headers["location"] == "/signin?next=%2Fadmin%2Fkeys&fresh=1"
    assert await _kids(console) == before
    assert await console_records(console) == []


async def test_a_rotated_key_is_in_the_jwks_right_after_and_signs_when_asked(
    console: Console,
) -> None:
    alice = await console.signed_in("alice")
    page = await alice.get("/admin/keys")
    assert page.status_code == 200
    (first,) = await _kids(console)
    assert first in page.text and ">active<" in page.text
    token = csrf_of(page.text)
    answer = await alice.post(ROTATE, data={"csrf": token, "alg": "Ed25519", "now": "1"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/keys?notice=rotated_now"
    kids = await _kids(console)
    assert len(kids) == 2 and kids[0] == first
    new = kids[1]
    jwks = (await alice.get("/jwks")).json()
    assert {k["kid"] for k in jwks["keys"]} == {first, new}
    assert next(k for k in jwks["keys"] if k["kid"] == new)["alg"] == "Ed25519"
    # Activation times strictly increase: rotated in the second the first key was made, the
    # new one activates one second later.
    console.clock.offset += 1
    _, tokens = await person_tokens(console, "bob", console.url("/mcp/notes"))
    assert _kid(tokens["access_token"]) == new
    listed = await alice.get(answer.headers["location"])
    assert "signs from now on" in listed.text
    rows_html = listed.text.split("<tbody>")[1]
    assert rows_html.index(new) < rows_html.index(first)
    assert ">retiring<" in listed.text and ">active<" in listed.text
    found = await records(console, "admin.keys_rotated")
    assert_by_console(found)
    assert found[0].target_id == new and found[0].detail == {"alg": "Ed25519", "now": True}


async def test_a_key_rotated_for_later_is_published_before_it_signs(console: Console) -> None:
    alice = await console.signed_in("alice")
    token = csrf_of((await alice.get("/admin/keys")).text)
    answer = await alice.post(ROTATE, data={"csrf": token})
    assert answer.headers["location"] == "/admin/keys?notice=rotated"
    first, new = await _kids(console)
    jwks = (await alice.get("/jwks")).json()
    assert {k["kid"] for k in jwks["keys"]} == {first, new}
    page = await alice.get("/admin/keys")
    assert console.settings.tokens.key_prepublish > 0
    assert (
        ">next<" in page.text
        and "signs after the pre-publication delay"
        in (await alice.get(answer.headers["location"])).text
    )
    _, tokens = await person_tokens(console, "bob", console.url("/mcp/notes"))
    assert _kid(tokens["access_token"]) == first


async def test_an_unknown_algorithm_is_refused_with_a_message(console: Console) -> None:
    before = await _kids(console)
    alice = await console.signed_in("alice")
    token = csrf_of((await alice.get("/admin/keys")).text)
    answer = await alice.post(ROTATE, data={"csrf": token, "alg": "HS256"})
    assert (
        answer.status_code == 400 and "cannot sign with" in answer.text and "HS256" in answer.text
    )
    assert await _kids(console) == before
