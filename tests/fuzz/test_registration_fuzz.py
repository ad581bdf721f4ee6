"""POST /register (RFC 7591) and GET/PUT/DELETE /register/{id} (RFC 7592) under fuzzing.

Metadata near a valid one (public native, confidential web, private_key_jwt) with fields
replaced by any JSON value (wrong types, nesting, huge strings, unicode, nulls, NaN), dropped or
added; arbitrary JSON documents; bodies that are not JSON or not declared as JSON; initial and
registration access tokens right, wrong and malformed. Every answer is a registration or an RFC
7591 §3.2.2 / RFC 6750 §3.1 error; a refused registration adds no client and no access rule, a
refused update leaves the client's metadata as it was, a refused delete removes nothing.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import sqlalchemy as sa
from hypothesis import strategies as st

from bastion.registry.access import ADMIN
from bastion.store import schema
from tests.fuzz import properties as must
from tests.fuzz import strategies as fuzz
from tests.fuzz.profile import Tally, cases, run_cases
from tests.fuzz.world import AuthWorld
from tests.support.flow import REDIRECT_URI

GROUP = "register + RFC 7592"
FIELDS = [
    "redirect_uris",
    "token_endpoint_auth_method",
    "grant_types",
    "response_types",
    "client_name",
    "client_uri",
    "logo_uri",
    "scope",
    "contacts",
    "tos_uri",
    "policy_uri",
    "jwks_uri",
    "jwks",
    "software_id",
    "software_version",
    "software_statement",
    "application_type",
    "client_id",
    "client_secret",
]
JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}
TEMPLATES: list[dict[str, Any]] = [
    {
        "client_name": "Fuzz native",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    },
    {
        "client_name": "Fuzz web",
        "redirect_uris": ["https://app.example/cb"],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": "mcp:tools",
        "contacts": ["ops@app.example"],
    },
    {
        "client_name": "Fuzz signer",
        "redirect_uris": ["https://app.example/cb"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [JWK]},
    },
]
SAMPLES = [
    "none",
    "client_secret_post",
    "private_key_jwt",
    "client_credentials",
    "authorization_code",
    "password",
    "implicit",
    "native",
    "web",
    "http://localhost/cb",
    "https://app.example/cb#frag",
    "javascript:alert(1)",
    "com.example.app:/cb",
    "mcp:tools",
    ADMIN,
]


def value() -> st.SearchStrategy[Any]:
    """A metadata value: any JSON, or a list of tricky strings."""
    return st.one_of(
        fuzz.json_values(8),
        st.lists(fuzz.pick_or_text(SAMPLES), max_size=3),
        st.sampled_from(SAMPLES),
    )


@st.composite
def near_metadata(draw: st.DrawFn) -> Any:
    """A valid registration with up to three fields replaced, dropped or added."""
    document = dict(draw(st.sampled_from(TEMPLATES)))
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.one_of(st.sampled_from(FIELDS), fuzz.text(12)))
        if draw(st.booleans()) and name in document:
            del document[name]
        else:
            document[name] = draw(value())
    return document


def body(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[bytes, bytes | None]]:
    """(body, content type): JSON mostly, sometimes raw bytes or another content type."""
    json_type = b"application/json"
    encoded = documents.map(fuzz.dumps)
    raw = st.one_of(st.binary(max_size=60), fuzz.text(60).map(lambda t: t.encode("utf-8")))
    oversized = st.just(b'{"client_name": "' + b"a" * 70_000 + b'"}')
    return st.tuples(
        fuzz.mostly(encoded, st.one_of(raw, oversized)),
        fuzz.mostly(st.just(json_type), fuzz.content_type()),
    )


def bearer(tokens: list[str]) -> st.SearchStrategy[bytes | None]:
    real = [f"Bearer {t}".encode() for t in tokens]
    others = fuzz.authorization([], ["x"], ["y"])
    return st.one_of(st.sampled_from(real), others) if real else others


def register_spec(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[fuzz.Spec]:
    return st.builds(
        lambda b, auth: (
            fuzz.Spec("POST", "/register", content=b[0])
            .header("Content-Type", b[1])
            .header("Authorization", auth)
        ),
        body(documents),
        fuzz.mostly(st.none(), bearer([])),
    )


def check_register(world: AuthWorld, spec: fuzz.Spec) -> None:
    world.changed()
    response = world.send(spec)
    written = world.changed()
    if response.status_code == 201:
        must.no_server_error(response)
        made = json.loads(response.content)
        assert made["client_id"] and made["registration_access_token"], must.describe(response)
        assert response.headers["cache-control"] == "no-store"
        assert written <= {"clients"}, must.describe(response)
        return
    must.json_error(response, must.REGISTRATION_ERRORS)
    assert not written, f"refused, yet {written} changed: {must.describe(response)}"


def test_registrations_near_a_valid_one_make_a_client_or_an_rfc7591_error(
    world: AuthWorld, backend_name: str, tally: Tally
) -> None:
    count = run_cases(
        cases(0.35, backend_name),
        register_spec(near_metadata()),
        lambda case: check_register(world, case),
    )
    tally(GROUP, count, world.outcomes)


def test_arbitrary_registration_bodies_get_an_rfc7591_error_and_add_no_client(
    world: AuthWorld, backend_name: str, tally: Tally
) -> None:
    documents = st.one_of(
        fuzz.json_values(16),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), fuzz.text(12)), value(), max_size=6),
    )
    count = run_cases(
        cases(0.25, backend_name),
        register_spec(documents),
        lambda case: check_register(world, case),
    )
    tally(GROUP, count, world.outcomes)


# -- RFC 7592 ----------------------------------------------------------------------------------


def metadata_of(world: AuthWorld, client_id: str) -> Any:
    async def read() -> Any:
        async with world.bastion.db.connect() as conn:
            query = sa.select(schema.clients.c.metadata).where(
                schema.clients.c.client_id == client_id
            )
            return (await conn.execute(query)).scalar_one_or_none()

    return world.run(read())


@st.composite
def management(draw: st.DrawFn) -> tuple[str, int | str, int | bytes | None, bytes, bytes | None]:
    """(method, which client or a path segment, whose token or a header, body, content type)."""
    method = draw(st.sampled_from(["GET", "PUT", "PUT", "PUT", "DELETE", "POST"]))
    target = draw(fuzz.mostly(st.integers(0, 2), fuzz.path_segment()))
    others = st.one_of(st.integers(0, 2), st.none(), fuzz.authorization([], [], []))
    token = draw(fuzz.mostly(st.just(target if isinstance(target, int) else 0), others))
    content, ctype = draw(body(st.one_of(near_metadata(), fuzz.json_values(8))))
    return method, target, token, content, ctype


def check_management(world: AuthWorld, case: tuple[Any, ...]) -> None:
    method, target, token, content, ctype = case
    clients = world.registrations[-3:]
    if isinstance(target, int):
        client_id = clients[target]["client_id"]
        segment = client_id
    else:
        client_id, segment = None, target
    if isinstance(token, int):
        auth: bytes | None = f"Bearer {clients[token]['registration_access_token']}".encode()
    else:
        auth = token
    if method == "PUT" and client_id is not None and content.startswith(b"{"):
        # Mostly the right client_id, so that the update reaches the metadata checks.
        document = json.loads(content)
        if isinstance(document, dict) and len(content) % 4:
            document["client_id"] = client_id
            content = fuzz.dumps(document)
    spec = fuzz.Spec(method, f"/register/{segment}").header("Authorization", auth)
    if method in ("PUT", "POST"):
        spec.content = content
        spec.header("Content-Type", ctype)
    before = metadata_of(world, client_id) if client_id else None
    world.changed()
    response = world.send(spec)
    written = world.changed()
    if response.status_code == 200:
        must.no_server_error(response)
        assert json.loads(response.content)["client_id"] == client_id, must.describe(response)
        assert response.headers["cache-control"] == "no-store"
        assert not written, must.describe(response)
        return
    if response.status_code == 204:
        assert method == "DELETE" and response.content == b"", must.describe(response)
        assert metadata_of(world, client_id) is None, must.describe(response)
        world.registrations.append(register_again(world))  # keep three clients to manage
        world.changed()
        return
    if response.status_code == 307:
        # An id that is empty or ends with a slash: the router's redirect without the trailing
        # slash, on this server.
        assert unquote(segment).endswith("/") or not segment, must.describe(response)
        assert response.headers["location"].startswith(f"{world.issuer}/register")
    elif response.status_code == 404:
        # A segment with a slash names no route: the app's JSON 404.
        assert client_id is None and response.json()["error"] == "not_found"
    elif response.status_code == 405:
        must.json_error(response, frozenset({"invalid_request"}))
    else:
        must.json_error(response, must.REGISTRATION_ERRORS)
    assert not written, f"refused, yet {written} changed: {must.describe(response)}"
    if client_id is not None:
        assert metadata_of(world, client_id) == before, must.describe(response)


def register_again(world: AuthWorld) -> dict[str, Any]:
    spec = fuzz.Spec("POST", "/register", content=fuzz.dumps(TEMPLATES[1]))
    response = world.send(spec.header("Content-Type", b"application/json"))
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def test_registration_management_reads_updates_deletes_or_answers_an_rfc_error(
    world: AuthWorld, backend_name: str, tally: Tally
) -> None:
    """RFC 7592 §2: the right registration access token for the right client, or another's,
    or garbage; PUT bodies near the current metadata and arbitrary."""
    world.registrations.append(register_again(world))
    world.registrations.append(register_again(world))
    count = run_cases(
        cases(0.4, backend_name), management(), lambda case: check_management(world, case)
    )
    tally(GROUP, count, world.outcomes)
