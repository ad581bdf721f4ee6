"""POST /token under fuzzing (OAuth 2.1 §3.2, RFC 6749 §5, RFC 7523 §2.2, RFC 8707 §2).

Form bodies near a valid request of each grant type (authorization_code, refresh_token,
client_credentials with a secret or a private_key_jwt assertion) and far from any; unknown grant
types; repeated, missing, misspelled, oversized and badly encoded parameters; client
authentication by Basic header, by form, by assertion, several at once, or garbage. Every answer
is tokens or an RFC 6749 §5.2 error (see tests.fuzz.properties); a refused request stores no
grant, token or client (row counts, "nothing half-written").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from hypothesis import strategies as st

from tests.fuzz import properties as must
from tests.fuzz import strategies as fuzz
from tests.fuzz.profile import Tally, cases, run_cases
from tests.fuzz.world import DOCUMENT_ID, DROP, GRANTS_AND_CLIENTS, RESOURCE, AuthWorld
from tests.support.flow import REDIRECT_URI

GROUP = "token endpoint"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PARAMS = [
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "refresh_token",
    "scope",
    "resource",
    "access_token",
    "state",
]
GRANT_TYPES = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "password",
    "implicit",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "urn:ietf:params:oauth:grant-type:device_code",
    "AUTHORIZATION_CODE",
    "authorization_code ",
]
# A refused token request may spend a code or revoke a replayed grant (RFC 9700 §4.2.4), and a
# failed log-in attempt is counted, but it stores no new grant, token, client or consent.
UNTOUCHED_ON_REFUSAL = GRANTS_AND_CLIENTS


def values(world: AuthWorld) -> list[str]:
    """The real values a token request can carry, for the strategies to mix in."""
    return [
        *GRANT_TYPES[:3],
        *(code for code, _ in world.codes),
        *(verifier for _, verifier in world.codes),
        *world.refresh_tokens,
        *world.access_tokens,
        world.public_id,
        world.machine.client_id,
        world.machine.secret,
        world.web.client_id,
        world.web.secret,
        world.signer_id,
        DOCUMENT_ID,
        ASSERTION_TYPE,
        REDIRECT_URI,
        RESOURCE,
        "mcp:tools",
        "mcp:tools mcp-registry:admin",
    ]


Template = tuple[fuzz.Pairs, bytes | None]  # a form and its Authorization header


def templates(world: AuthWorld) -> list[Template]:
    """One valid request per grant and client kind."""
    out: list[Template] = []
    for code, verifier in world.codes:
        form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
            ("client_id", world.public_id),
        ]
        out.append((form, None))
    for token in world.refresh_tokens:
        form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", world.public_id),
        ]
        out.append((form, None))
    machine = [("grant_type", "client_credentials"), ("resource", RESOURCE)]
    out.append((machine, world.machine.basic))
    out.append(([*machine, ("scope", "mcp:tools")], world.machine.basic))
    web = [
        ("grant_type", "refresh_token"),
        ("refresh_token", world.refresh_tokens[0]),
        ("client_id", world.web.client_id),
        ("client_secret", world.web.secret),
    ]
    out.append((web, None))
    return out


def claims() -> st.SearchStrategy[dict[str, Any]]:
    """Assertion claims to override: wrong values, wrong types, or left out."""
    wrong = st.one_of(
        st.just(DROP), fuzz.json_values(4), st.sampled_from(["signer", "machine", RESOURCE])
    )
    names = st.sampled_from(["iss", "sub", "aud", "exp", "jti", "iat", "nbf"])
    return st.dictionaries(names, wrong, max_size=3)


def assertion(world: AuthWorld) -> st.SearchStrategy[str]:
    """A client assertion: signed with fuzzed claims, or text that only looks like a JWT."""
    segment = st.binary(max_size=40).map(lambda b: fuzz.b64url(b))
    shaped = st.tuples(segment, segment, segment).map(".".join)
    json_parts = st.tuples(fuzz.json_values(4), fuzz.json_values(4)).map(
        lambda hb: ".".join(fuzz.b64url(fuzz.dumps(part)) for part in hb) + ".c2ln"
    )
    signed = claims().map(lambda c: world.assertion(**c))
    return st.one_of(signed, signed, shaped, json_parts, fuzz.text())


def authorization(world: AuthWorld) -> st.SearchStrategy[bytes | None]:
    ids = [world.machine.client_id, world.web.client_id, world.public_id, world.signer_id]
    secrets = [world.machine.secret, world.web.secret]
    return fuzz.authorization([world.machine.basic], ids, secrets)


def request(
    world: AuthWorld, forms: st.SearchStrategy[Template], *, near: bool
) -> st.SearchStrategy[fuzz.Spec]:
    """A POST /token with a body and Authorization header from ``forms`` and a content type;
    ``near`` keeps most encodings, content types and headers valid."""
    form = b"application/x-www-form-urlencoded"
    content_type = st.one_of(st.just(form), fuzz.content_type())

    @st.composite
    def build(draw: st.DrawFn) -> fuzz.Spec:
        pairs, auth = draw(forms)
        if near:
            body = draw(
                fuzz.mostly(st.just(urlencode(pairs).encode()), fuzz.form_body(st.just(pairs)))
            )
            ctype = draw(fuzz.mostly(st.just(form), content_type))
            auth = draw(fuzz.mostly(st.just(auth), authorization(world)))
        else:
            body = draw(fuzz.form_body(st.just(pairs)))
            ctype = draw(fuzz.mostly(st.just(form), content_type))
            auth = draw(authorization(world))
        spec = fuzz.Spec("POST", "/token", content=body)
        return spec.header("Content-Type", ctype).header("Authorization", auth)

    return build()


def checker(world: AuthWorld) -> Callable[[fuzz.Spec], None]:
    world.changed()
    return lambda spec: check(world, spec)


def check(world: AuthWorld, spec: fuzz.Spec) -> None:
    """Send ``spec``; tokens or an RFC 6749 §5.2 error; nothing stored when refused."""
    world.changed()
    response = world.send(spec)
    if response.status_code == 200:
        must.no_server_error(response)
        body = json.loads(response.content)
        assert body["token_type"] == "Bearer" and body["access_token"], must.describe(response)
        assert response.headers["cache-control"] == "no-store", must.describe(response)
        world.changed()
        return
    must.json_error(response, must.TOKEN_ERRORS, basic_tried=must.basic_tried(spec.headers))
    written = world.changed() & UNTOUCHED_ON_REFUSAL
    assert not written, f"refused, yet rows were added to {written}: {must.describe(response)}"


def test_token_requests_near_a_valid_grant_get_tokens_or_an_rfc6749_error(
    world: AuthWorld, backend_name: str, tally: Tally
) -> None:
    """Valid requests of every grant, a few parameters dropped, replaced, repeated, renamed."""
    names, known = PARAMS, values(world)
    forms = st.sampled_from(templates(world)).flatmap(
        lambda t: st.tuples(fuzz.mutated(t[0], names, known), st.just(t[1]))
    )
    tally(
        GROUP,
        run_cases(
            cases(0.5, backend_name),
            request(world, forms, near=True),
            checker(world),
        ),
        world.outcomes,
    )


def test_arbitrary_token_bodies_get_an_rfc6749_error_and_store_nothing(
    world: AuthWorld, backend_name: str, tally: Tally
) -> None:
    """Any parameters, any values, any grant type, any encoding, content type and header."""
    forms = st.tuples(fuzz.form_pairs(PARAMS, [*GRANT_TYPES, *values(world)]), st.none())
    tally(
        GROUP,
        run_cases(
            cases(0.3, backend_name),
            request(world, forms, near=False),
            checker(world),
        ),
        world.outcomes,
    )


def test_garbage_client_assertions_are_refused_with_invalid_client(
    world: AuthWorld, backend_name: str, tally: Tally
) -> None:
    """private_key_jwt (RFC 7523 §3): signed assertions with wrong, missing or mistyped claims,
    JWT-shaped garbage, text; with and without client_id, next to other credentials."""
    base = st.builds(
        lambda a, extra: (
            [
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", a),
                ("resource", RESOURCE),
                *extra,
            ],
            None,
        ),
        assertion(world),
        st.lists(
            st.tuples(
                st.sampled_from(["client_id", "client_assertion_type", "client_secret", "scope"]),
                fuzz.pick_or_text([world.signer_id, ASSERTION_TYPE, "mcp:tools", "machine"]),
            ),
            max_size=2,
        ),
    )
    tally(
        GROUP,
        run_cases(
            cases(0.2, backend_name),
            request(world, base, near=True),
            checker(world),
        ),
        world.outcomes,
    )
