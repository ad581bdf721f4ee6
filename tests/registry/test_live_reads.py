"""Registry reads over real HTTP (the registry under uvicorn on 127.0.0.1): who is refused, with
exactly which status, headers and body, whether the answer is kept in memory or not, and that
every read, refused or answered, has its audit record committed by the time its answer arrived.

These pin the whole answer, head and body, of the reads clients make most (the first page, a
page by cursor, a search, one server's latest version), so that the path serving them can be
rebuilt without changing what a client sees.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from bastion.authserver.app import create_app
from bastion.config import Settings
from bastion.registry.access import READ
from bastion.registry.app import create_registry_app
from bastion.store import registry as rows
from bastion.store.database import Database
from bastion.store.registry import AuditRecord
from tests.registry.harness import (
    ISSUER,
    PRM_URL,
    MillisClock,
    Registry,
    encoded,
    registry_settings,
    server_json,
)
from tests.support.live import serve

ALPHA = "com.acme.team-a/alpha"
PUBLIC = [f"com.acme.shared.x/s{i:02d}" for i in range(5)]
ORIGIN = "https://vscode.dev"
ALGS = 'algs="ES256 EdDSA RS256 PS256"'
PARAMS = f'realm="mcp-registry", resource_metadata="{PRM_URL}", scope="{READ}"'
# What every refusal of the token check carries (RFC 6750 §3, RFC 9728 §5.1).
REFUSAL_HEADERS = {"cache-control", "content-length", "content-type", "www-authenticate"}
# What every answer carries besides its own headers (uvicorn's and the request id).
ALWAYS = {"date", "server", "x-request-id"}
CORS = {"access-control-allow-origin", "access-control-expose-headers"}


@asynccontextmanager
async def served_registry(settings: Settings) -> AsyncIterator[Registry]:
    """The registry of ``settings`` under uvicorn on 127.0.0.1 (its AS in-process, for its JWKS
    and signing key), and an HTTP client of it."""
    auth = create_app(settings)
    async with auth.router.lifespan_context(auth):
        jwks = httpx.AsyncClient(transport=httpx.ASGITransport(app=auth), base_url=ISSUER)
        clock = MillisClock()
        try:
            app = create_registry_app(settings, http=jwks, clock=clock)
            async with (
                serve(app) as url,
                httpx.AsyncClient(base_url=url, trust_env=False) as client,
            ):
                yield Registry(settings, client, auth, clock)
        finally:
            await jwks.aclose()


@pytest.fixture
async def live(make_settings: Callable[..., Settings]) -> AsyncIterator[Registry]:
    """A served registry holding team-a's alpha and five shared entries, all approved."""
    settings = make_settings(registry=registry_settings())
    async with served_registry(settings) as reg:
        admin = await reg.admin()
        await reg.published(admin, server_json(ALPHA, groups=["team-a"]))
        for name in PUBLIC:
            await reg.published(admin, server_json(name, description=f"{name} postgres"))
        yield reg


def _reads(reg: Registry) -> dict[str, str]:
    """The reads measured by the benchmark: first page, a page by cursor, search, latest."""
    return {
        "first": f"{reg.base}/servers?limit=3&version=latest",
        "deep": f"{reg.base}/servers?limit=2&version=latest&cursor=",  # cursor added below
        "search": f"{reg.base}/servers?limit=3&version=latest&search=postgres",
        "latest": f"{reg.base}/servers/{encoded(PUBLIC[0])}/versions/latest",
    }


async def _paths(reg: Registry, headers: dict[str, str]) -> dict[str, str]:
    paths = _reads(reg)
    first = await reg.client.get(f"{reg.base}/servers?limit=2&version=latest", headers=headers)
    paths["deep"] += first.json()["metadata"]["nextCursor"]
    return paths


async def _records(reg: Registry) -> list[AuditRecord]:
    db = Database(reg.settings.effective_database_url, schema=reg.settings.database_schema)
    try:
        async with db.connect() as conn:
            return await rows.audit_records(conn)
    finally:
        await db.dispose()


def _names(response: httpx.Response) -> set[str]:
    return set(response.headers.keys())


async def _warm(reg: Registry, paths: dict[str, str]) -> None:
    """Read every path with a token of team-a, twice: the answers are kept in memory."""
    headers = reg.bearer(await reg.token("ann", groups=["team-a"]))
    for _ in range(2):
        for path in paths.values():
            assert (await reg.client.get(path, headers=headers)).status_code == 200


@pytest.mark.parametrize("kept", [False, True], ids=["not kept", "kept"])
async def test_a_read_without_a_token_gets_401_with_both_challenges(
    live: Registry, kept: bool
) -> None:
    """RFC 6750 §3, RFC 9728 §5.1, RFC 9449 §7.2: no error code, the realm, the metadata URL
    and the read scope, in the Bearer and the DPoP scheme; a JSON body, not stored."""
    paths = await _paths(live, live.bearer(await live.token("ann", groups=["team-a"])))
    if kept:
        await _warm(live, paths)
    for name, path in paths.items():
        response = await live.client.get(path, headers={"X-Request-Id": f"no-token-{name}"})
        assert response.status_code == 401, name
        assert response.headers["www-authenticate"] == f"Bearer {PARAMS}, DPoP {PARAMS}, {ALGS}"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-request-id"] == f"no-token-{name}"
        assert _names(response) == REFUSAL_HEADERS | ALWAYS
        assert response.json() == {
            "error": "unauthorized",
            "error_description": "this resource needs an access token; see resource_metadata",
        }


@pytest.mark.parametrize("kept", [False, True], ids=["not kept", "kept"])
async def test_a_token_the_registry_cannot_use_gets_401_invalid_token_or_400(
    live: Registry, kept: bool
) -> None:
    """Not a JWT, or a JWT for another audience (RFC 8707): 401 ``invalid_token`` in the Bearer
    scheme; a malformed header (RFC 6750 §2.1): 400 ``invalid_request``. Never a 200."""
    paths = await _paths(live, live.bearer(await live.token("ann", groups=["team-a"])))
    if kept:
        await _warm(live, paths)
    other = await live.token("ann", groups=["team-a"], audience="http://localhost:9001/mcp")
    for path in paths.values():
        for token in ("not-a-jwt", other):
            response = await live.client.get(path, headers=live.bearer(token))
            assert response.status_code == 401, path
            value = response.headers["www-authenticate"]
            assert value.startswith(f'Bearer {PARAMS}, error="invalid_token", error_description=')
            assert "DPoP" not in value
            assert _names(response) == REFUSAL_HEADERS | ALWAYS
            assert response.json()["error"] == "invalid_token"
        response = await live.client.get(path, headers={"Authorization": "Bearer a b"})
        assert response.status_code == 400, path
        assert response.json()["error"] == "invalid_request"
        assert 'error="invalid_request"' in response.headers["www-authenticate"]


@pytest.mark.parametrize("kept", [False, True], ids=["not kept", "kept"])
async def test_a_token_without_the_read_scope_gets_403_insufficient_scope(
    live: Registry, kept: bool
) -> None:
    """MCP step-up: 403 ``error="insufficient_scope"`` naming the read scope, even when the
    answer is kept in memory for a token that has it; CORS headers on the refusal."""
    paths = await _paths(live, live.bearer(await live.token("ann", groups=["team-a"])))
    if kept:
        await _warm(live, paths)
    token = await live.token("ann", scope="mcp:tools", groups=["team-a"])
    description = f"this operation needs scope {READ}; the token lacks {READ}"
    for path in paths.values():
        response = await live.client.get(path, headers={"Origin": ORIGIN, **live.bearer(token)})
        assert response.status_code == 403, path
        assert response.headers["www-authenticate"] == (
            f'Bearer {PARAMS}, error="insufficient_scope", error_description="{description}"'
        )
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["access-control-expose-headers"] == "WWW-Authenticate, DPoP-Nonce"
        assert _names(response) == REFUSAL_HEADERS | ALWAYS | CORS
        assert response.json() == {"error": "insufficient_scope", "error_description": description}


@pytest.mark.parametrize("kept", [False, True], ids=["not kept", "kept"])
async def test_another_groups_entry_is_invisible_to_list_and_get(
    live: Registry, kept: bool
) -> None:
    """bob (team-b) never sees alpha (team-a): not in a page, 404 for its latest version, even
    when alice's answers are kept in memory."""
    alice = live.bearer(await live.token("alice", groups=["team-a"]))
    bob = live.bearer(await live.token("bob", groups=["team-b"]))
    alpha = f"{live.base}/servers/{encoded(ALPHA)}/versions/latest"
    listing = f"{live.base}/servers?version=latest"
    if kept:
        for _ in range(2):
            assert (await live.client.get(alpha, headers=alice)).status_code == 200
            found = (await live.client.get(listing, headers=alice)).json()["servers"]
            assert ALPHA in {s["server"]["name"] for s in found}
    response = await live.client.get(listing, headers=bob)
    assert response.status_code == 200
    assert [s["server"]["name"] for s in response.json()["servers"]] == PUBLIC
    response = await live.client.get(alpha, headers=bob)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    # The same problem as for a name never published: nothing tells that alpha exists.
    ghost = await live.client.get(alpha.replace("alpha", "ghost"), headers=bob)
    assert ghost.status_code == 404
    assert response.json() == {
        **ghost.json(),
        "detail": ghost.json()["detail"].replace("ghost", "alpha"),
    }


async def test_unknown_names_and_bad_queries_are_problems(live: Registry) -> None:
    """RFC 9457 problems in the registry's form: 404 for an unknown or malformed name, 400 for
    a cursor this registry did not issue and a limit out of range, with the field at fault."""
    headers = live.bearer(await live.token("ann", groups=["team-a"]))
    for name in ("com.acme.shared.x/none", "no-slash", "a/b%00"):
        path = f"{live.base}/servers/{encoded(name)}/versions/latest"
        for _ in range(2):
            response = await live.client.get(path, headers=headers)
            assert response.status_code == 404, name
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["cache-control"] == "no-store"
            body = response.json()
            assert (body["type"], body["title"], body["status"]) == (
                "about:blank",
                "Not Found",
                404,
            )
    for query, location in (("cursor=nope", "query.cursor"), ("limit=0", "query.limit")):
        for _ in range(2):
            response = await live.client.get(f"{live.base}/servers?{query}", headers=headers)
            assert response.status_code == 400, query
            assert response.headers["content-type"] == "application/problem+json"
            body = response.json()
            assert (body["type"], body["title"], body["status"]) == (
                "about:blank",
                "Bad Request",
                400,
            )
            assert [e["location"] for e in body["errors"]] == [location]


async def test_an_answer_has_the_same_head_kept_or_not(live: Registry) -> None:
    """A 200 carries the JSON type, ``no-store``, its length, the request id and, for an
    allowed Origin, the CORS headers: the same whether it was built or kept."""
    headers = {"Origin": ORIGIN, **live.bearer(await live.token("ann", groups=["team-a"]))}
    paths = await _paths(live, headers)
    for path in paths.values():
        built = await live.client.get(path, headers=headers)
        kept = await live.client.get(path, headers=headers)
        for response in (built, kept):
            assert response.status_code == 200, path
            assert response.headers["content-type"] == "application/json"
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["access-control-allow-origin"] == "*"
            assert int(response.headers["content-length"]) == len(response.content)
            assert _names(response) == {"cache-control", "content-length", "content-type"} | (
                ALWAYS | CORS
            )
        assert built.content == kept.content
        json.loads(kept.content)


async def test_every_read_has_its_audit_record_committed_when_its_answer_arrives(
    live: Registry,
) -> None:
    """After each answer (kept or not, refused or not) its record is already in the database,
    with the status, the result, the subject and the request id of that request."""
    ann = live.bearer(await live.token("ann", groups=["team-a"]))
    paths = await _paths(live, ann)
    cases: list[tuple[dict[str, str], int, str, str | None]] = [
        ({}, 401, "unauthorized", None),
        (live.bearer("not-a-jwt"), 401, "invalid_token", None),
        (live.bearer(await live.token("ann", scope="mcp:tools")), 403, "insufficient_scope", "ann"),
        (ann, 200, "ok", "ann"),
        (ann, 200, "ok", "ann"),
    ]
    n = 0
    for name, path in paths.items():
        for headers, status, result, subject in cases:
            n += 1
            request_id = f"audit-{name}-{n}"
            response = await live.client.get(path, headers={**headers, "X-Request-Id": request_id})
            assert response.status_code == status
            found = [r for r in await _records(live) if r.request_id == request_id]
            assert [(r.status, r.result, r.subject) for r in found] == [(status, result, subject)]
            assert found[0].action == ("get" if name == "latest" else "list")
            if status == 200 and name == "latest":
                assert (found[0].server_name, found[0].version) == (PUBLIC[0], "1.0.0")
            if status == 200 and name != "latest":
                assert found[0].detail is not None
                assert found[0].detail["count"] == len(response.json()["servers"])


async def test_a_read_that_fails_is_a_500_problem_with_its_request_id_and_audit_record(
    live: Registry,
) -> None:
    """The database losing the entries' table mid-service: a plain read (token accepted, nothing
    kept in memory) answers 500 with an RFC 9457 problem and no trace, carries its request id,
    and its record (status 500) is committed; the registry keeps serving."""
    headers = live.bearer(await live.token("ann", groups=["team-a"]))
    path = f"{live.base}/servers/{encoded(PUBLIC[1])}/versions/latest"
    db = Database(live.settings.effective_database_url, schema=live.settings.database_schema)
    try:
        async with db.transaction() as conn:
            await conn.exec_driver_sql("ALTER TABLE registry_entries RENAME TO registry_gone")
        response = await live.client.get(path, headers={**headers, "X-Request-Id": "broken-1"})
        async with db.transaction() as conn:
            await conn.exec_driver_sql("ALTER TABLE registry_gone RENAME TO registry_entries")
    finally:
        await db.dispose()
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "broken-1"
    assert response.json() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "internal error; see the server log",
    }
    found = [r for r in await _records(live) if r.request_id == "broken-1"]
    assert [(r.status, r.result, r.subject, r.action) for r in found] == [
        (500, "error", "ann", "get")
    ]
    assert (await live.client.get(path, headers=headers)).status_code == 200
