"""POST /introspect (RFC 7662) and POST /revoke (RFC 7009) under fuzzing.

Tokens of every kind (access tokens of the AS, refresh tokens, codes, JWT-shaped garbage, any
text) with and without ``token_type_hint``, presented by every kind of caller (a resource server
allowed to introspect, a confidential client by form, a public client, a ``private_key_jwt``
client, garbage credentials). Introspection answers ``{"active": ...}`` or an RFC 6749 §5.2
error and never writes a grant, token or client; revocation answers an empty 200 or an RFC 7009
§2.2.1 error and revokes nothing when it refuses.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from hypothesis import strategies as st

from tests.fuzz import properties as must
from tests.fuzz import strategies as fuzz
from tests.fuzz.profile import Tally, cases, run_cases
from tests.fuzz.world import GRANTS_AND_CLIENTS, AuthWorld

INTROSPECT = "introspect"
REVOKE = "revoke"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
HINTS = ["access_token", "refresh_token", "id_token", "code", "ACCESS_TOKEN"]
# Neither endpoint may add a grant, a token, a client or a rule. (Revocation records revoked
# tokens and grants when it succeeds; a private_key_jwt caller spends its assertion.)
UNTOUCHED = GRANTS_AND_CLIENTS | {"authorization_requests"}


def tokens(world: AuthWorld) -> list[str]:
    return [
        *world.access_tokens,
        *world.refresh_tokens,
        *(code for code, _ in world.codes),
        world.access_tokens[0][:-4] + "AAAA",  # a signature that does not verify
        world.access_tokens[0].split(".", 1)[1],
    ]


@st.composite
def request(draw: st.DrawFn, world: AuthWorld, path: str) -> fuzz.Spec:
    """A form with a token, maybe a hint, maybe extra parameters, and a caller."""
    pairs = [("token", draw(fuzz.mostly(st.sampled_from(tokens(world)), fuzz.text())))]
    if draw(st.booleans()):
        pairs.append(("token_type_hint", draw(fuzz.pick_or_text(HINTS))))
    caller = draw(st.sampled_from(["machine", "web", "public", "signer", "garbage", "none"]))
    auth: bytes | None = None
    if caller == "machine":
        auth = world.machine.basic
    elif caller == "web":
        pairs += [("client_id", world.web.client_id), ("client_secret", world.web.secret)]
    elif caller == "public":
        pairs.append(("client_id", world.public_id))
    elif caller == "signer":
        pairs += [
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", world.assertion(aud=world.issuer + "/token")),
        ]
    elif caller == "garbage":
        ids = [world.machine.client_id, world.public_id]
        auth = draw(fuzz.authorization([], ids, [world.web.secret]))
    names = ["token", "token_type_hint", "client_id", "client_secret", "resource", "scope"]
    pairs = draw(fuzz.mostly(st.just(pairs), fuzz.mutated(pairs, names, tokens(world))))
    form = b"application/x-www-form-urlencoded"
    body = draw(fuzz.mostly(st.just(urlencode(pairs).encode()), fuzz.form_body(st.just(pairs))))
    spec = fuzz.Spec("POST", f"/{path}", content=body)
    spec.header("Content-Type", draw(fuzz.mostly(st.just(form), fuzz.content_type())))
    return spec.header("Authorization", auth)


def check_introspection(world: AuthWorld, spec: fuzz.Spec) -> None:
    world.changed()
    response = world.send(spec)
    written = world.changed()
    assert not written & UNTOUCHED, f"{written} changed: {must.describe(response)}"
    if response.status_code != 200:
        must.json_error(
            response, must.INTROSPECTION_ERRORS, basic_tried=must.basic_tried(spec.headers)
        )
        return
    must.no_server_error(response)
    answer = json.loads(response.content)
    assert isinstance(answer.get("active"), bool), must.describe(response)
    if not answer["active"]:
        assert answer == {"active": False}, must.describe(response)  # RFC 7662 §2.2
    assert response.headers["cache-control"] == "no-store", must.describe(response)


def check_revocation(world: AuthWorld, spec: fuzz.Spec) -> None:
    world.changed()
    response = world.send(spec)
    written = world.changed()
    assert not written & UNTOUCHED, f"{written} changed: {must.describe(response)}"
    if response.status_code != 200:
        must.json_error(
            response, must.REVOCATION_ERRORS, basic_tried=must.basic_tried(spec.headers)
        )
        assert not written - {"used_assertions"}, must.describe(response)
        return
    must.no_server_error(response)
    assert response.content == b"", must.describe(response)  # RFC 7009 §2.2


def test_introspection_answers_active_or_inactive_or_an_rfc6749_error_and_writes_nothing(
    world: AuthWorld, backend_name: str, tally: Tally
) -> None:
    count = run_cases(
        cases(1.0, backend_name),
        request(world, INTROSPECT),
        lambda spec: check_introspection(world, spec),
    )
    tally("introspect", count, world.outcomes)


def test_revocation_answers_200_or_an_rfc7009_error_and_revokes_nothing_when_refused(
    world: AuthWorld, backend_name: str, tally: Tally
) -> None:
    count = run_cases(
        cases(1.0, backend_name),
        request(world, REVOKE),
        lambda spec: check_revocation(world, spec),
    )
    tally("revoke", count, world.outcomes)
