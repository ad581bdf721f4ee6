"""Quotas on unauthenticated work (L9): registrations, pending authorizations, metadata fetches.

Each flood goes to a real server (uvicorn on 127.0.0.1) from real sockets; the client address
the quotas count is the connecting peer's, so other loopback addresses (127.0.0.2, …: Linux
routes all of 127.0.0.0/8 to the loopback interface) stand for other clients. Beyond a limit the
answer is 429 with Retry-After (RFC 6585 §4) in the endpoint's own error form, and nothing more
is stored or fetched. The default limits are used where a flood of that size is quick.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from starlette.types import Receive, Scope, Send

from bastion.authserver.app import create_app
from bastion.authserver.quotas import requester
from bastion.config import QuotaSettings, ResourceSettings, Settings
from bastion.oauth import pkce
from bastion.store.database import Database
from bastion.store.schema import authorization_requests, clients
from tests.support.flow import REDIRECT_URI, register
from tests.support.live import free_port, serve

DEFAULTS = QuotaSettings()
FLOOD = 64  # connections at once
CHALLENGE = pkce.s256(pkce.new_verifier())


@asynccontextmanager
async def live(
    make_settings: Callable[..., Settings], **overrides: Any
) -> AsyncIterator[tuple[str, Settings]]:
    """The authorization server under uvicorn on a loopback port: (issuer, settings)."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings = make_settings(
        issuer=issuer,
        resources=[ResourceSettings(uri=f"{issuer}/mcp", name="demo", scopes=["mcp:tools"])],
        **overrides,
    )
    async with serve(create_app(settings), port=port):
        yield issuer, settings


def from_address(base_url: str, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """A client whose connections come from ``address``, as many at once as it sends."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=60,
        trust_env=False,
        transport=httpx.AsyncHTTPTransport(
            local_address=address, limits=httpx.Limits(max_connections=FLOOD)
        ),
    )


async def flood(requests: Iterable[Awaitable[httpx.Response]]) -> list[httpx.Response]:
    """Send every request at once (the server takes them concurrently); all the answers."""
    return list(await asyncio.wait_for(asyncio.gather(*requests), 120))


async def rows(settings: Settings, table: sa.Table) -> int:
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        async with db.connect() as conn:
            query = sa.select(sa.func.count()).select_from(table)
            return int((await conn.execute(query)).scalar_one())
    finally:
        await db.dispose()


def assert_too_many_json(response: httpx.Response, setting: str) -> None:
    """429, Retry-After, the OAuth JSON error form with temporarily_unavailable."""
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == "temporarily_unavailable"
    assert f"quotas.{setting}" in body["error_description"]


def assert_too_many_page(response: httpx.Response, setting: str) -> None:
    """429, Retry-After, an HTML page (the authorization endpoint never redirects it)."""
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["content-type"].startswith("text/html")
    assert "location" not in response.headers
    assert f"quotas.{setting}" in response.text


async def post_register(http: httpx.AsyncClient) -> httpx.Response:
    return await http.post(
        "/register",
        json={
            "client_name": "flood",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "application_type": "native",
        },
    )


# Who counts as one address ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", True),
        ("2001:db8:1:2::1", "2001:db8:1:3::1", False),
        ("::ffff:192.0.2.7", "192.0.2.7", True),
        ("192.0.2.7", "192.0.2.8", False),
    ],
)
def test_l9_an_ipv6_64_is_one_address_and_a_mapped_ipv4_is_its_ipv4(
    a: str, b: str, same: bool
) -> None:
    """One party controls a whole IPv6 /64: counting per address would let it pick a new one
    for every request."""
    assert (requester({"client": (a, 1)}) == requester({"client": (b, 2)})) is same


# Dynamic Client Registration (RFC 7591) --------------------------------------------------------


async def test_l9_registrations_from_one_address_stop_at_the_hourly_limit(
    make_settings: Callable[..., Settings],
) -> None:
    """quotas.registrations_per_address: of a flood sent at once, exactly the limit is
    registered; the others get 429 with Retry-After and no client row. Another address still
    registers."""
    limit = DEFAULTS.registrations_per_address
    async with live(make_settings) as (issuer, settings), from_address(issuer) as http:
        answers = await flood(post_register(http) for _ in range(limit + 5))
        assert Counter(a.status_code for a in answers) == {201: limit, 429: 5}
        refused = next(a for a in answers if a.status_code == 429)
        assert_too_many_json(refused, "registrations_per_address")
        assert 3000 <= int(refused.headers["retry-after"]) <= 3600
        assert await rows(settings, clients) == limit
        async with from_address(issuer, "127.0.0.2") as other:
            assert (await post_register(other)).status_code == 201


async def test_l9_registrations_from_many_addresses_stop_at_the_overall_limit(
    make_settings: Callable[..., Settings],
) -> None:
    """quotas.registrations: all addresses together."""
    async with live(make_settings, quotas={"registrations": 4}) as (issuer, settings):
        statuses = []
        for n in range(2, 8):
            async with from_address(issuer, f"127.0.0.{n}") as http:
                answer = await post_register(http)
            statuses.append(answer.status_code)
        assert statuses == [201] * 4 + [429] * 2
        assert_too_many_json(answer, "registrations")
        assert await rows(settings, clients) == 4


# Pending authorization requests ----------------------------------------------------------------


def authorize_params(client_id: str, resource: str, state: str = "s") -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        "resource": resource,
        "scope": "mcp:tools",
        "state": state,
    }


async def test_l9_pending_authorizations_from_one_address_stop_at_the_limit(
    make_settings: Callable[..., Settings],
) -> None:
    """quotas.pending_authorizations_per_address: every /authorize stores a row until its
    sign-in ends or it expires; of a flood sent at once exactly the limit is stored, the others
    get an HTML 429 page with Retry-After and no redirect. Another address is not affected.
    (A limit below the default: a flood of 200 takes turns for SQLite's write lock slowly.)"""
    limit = 40
    overrides = {"quotas": {"pending_authorizations_per_address": limit}}
    async with live(make_settings, **overrides) as (issuer, settings), from_address(issuer) as http:
        app = await register(http)
        params = authorize_params(app["client_id"], f"{issuer}/mcp")
        answers = await flood(http.get("/authorize", params=params) for _ in range(limit + 5))
        assert Counter(a.status_code for a in answers) == {303: limit, 429: 5}
        refused = next(a for a in answers if a.status_code == 429)
        assert_too_many_page(refused, "pending_authorizations_per_address")
        assert 800 <= int(refused.headers["retry-after"]) <= 900
        assert await rows(settings, authorization_requests) == limit
        async with from_address(issuer, "127.0.0.2") as other:
            assert (await other.get("/authorize", params=params)).status_code == 303


async def test_l9_pending_authorizations_stop_at_the_overall_limit(
    make_settings: Callable[..., Settings],
) -> None:
    """quotas.pending_authorizations: all addresses together."""
    async with live(make_settings, quotas={"pending_authorizations": 3}) as (issuer, settings):
        async with from_address(issuer) as http:
            app = await register(http)
        params = authorize_params(app["client_id"], f"{issuer}/mcp")
        statuses = []
        for n in range(2, 7):
            async with from_address(issuer, f"127.0.0.{n}") as http:
                answer = await http.get("/authorize", params=params)
            statuses.append(answer.status_code)
        assert statuses == [303] * 3 + [429] * 2
        assert_too_many_page(answer, "pending_authorizations")
        assert await rows(settings, authorization_requests) == 3


# Client ID Metadata Document fetches ------------------------------------------------------------


class Documents:
    """Serves a valid metadata document at any path and counts the fetches."""

    def __init__(self) -> None:
        self.base = ""
        self.hits: Counter[str] = Counter()
        self.headers = [(b"content-type", b"application/json")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.hits[scope["path"]] += 1
        document = {
            "client_id": self.base + scope["path"],
            "client_name": "Flooding client",
            "redirect_uris": [REDIRECT_URI],
        }
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": self.headers,
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(document).encode()})


@pytest.fixture
async def documents() -> AsyncIterator[Documents]:
    server = Documents()
    async with serve(server) as base:
        server.base = base
        yield server


async def test_l9_metadata_document_fetches_from_one_address_stop_at_the_limit(
    make_settings: Callable[..., Settings], documents: Documents
) -> None:
    """quotas.cimd_fetches_per_address: each new client_id URL costs an outbound fetch; past
    the limit /authorize answers 429 (HTML) and the token endpoint 429 (JSON) without fetching.
    Documents already cached still work, and another address may still have one fetched."""
    limit = DEFAULTS.cimd_fetches_per_address
    overrides: dict[str, Any] = {"cimd": {"allow_private_addresses": True}}
    async with live(make_settings, **overrides) as (issuer, _), from_address(issuer) as http:
        resource = f"{issuer}/mcp"
        urls = [f"{documents.base}/client/{n}" for n in range(limit + 2)]
        answers = [await http.get("/authorize", params=authorize_params(u, resource)) for u in urls]
        assert Counter(a.status_code for a in answers) == {303: limit, 429: 2}
        assert_too_many_page(answers[-1], "cimd_fetches_per_address")
        assert 50 <= int(answers[-1].headers["retry-after"]) <= 60
        assert sum(documents.hits.values()) == limit
        token = await http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": urls[-1]},
        )
        assert_too_many_json(token, "cimd_fetches_per_address")
        cached = await http.get("/authorize", params=authorize_params(urls[0], resource))
        assert cached.status_code == 303
        assert sum(documents.hits.values()) == limit
        async with from_address(issuer, "127.0.0.2") as other:
            fresh = await other.get("/authorize", params=authorize_params(urls[-1], resource))
            assert fresh.status_code == 303
        assert documents.hits["/client/" + str(limit + 1)] == 1


async def test_l9_metadata_document_fetches_stop_at_the_overall_limit(
    make_settings: Callable[..., Settings], documents: Documents
) -> None:
    """quotas.cimd_fetches: all addresses together."""
    overrides: dict[str, Any] = {
        "cimd": {"allow_private_addresses": True},
        "quotas": {"cimd_fetches": 3},
    }
    async with live(make_settings, **overrides) as (issuer, _):
        statuses = []
        for n in range(2, 7):
            async with from_address(issuer, f"127.0.0.{n}") as http:
                url = f"{documents.base}/client/{n}"
                answer = await http.get("/authorize", params=authorize_params(url, f"{issuer}/mcp"))
            statuses.append(answer.status_code)
        assert statuses == [303] * 3 + [429] * 2
        assert_too_many_page(answer, "cimd_fetches")
        assert sum(documents.hits.values()) == 3


async def test_l9_sign_in_pages_count_the_fetches_they_cause(
    make_settings: Callable[..., Settings], documents: Documents
) -> None:
    """A document served with no-store is fetched again whenever the client is looked up,
    by the sign-in page too: those fetches count, and past the limit the page is 429."""
    documents.headers.append((b"cache-control", b"no-store"))
    overrides: dict[str, Any] = {
        "cimd": {"allow_private_addresses": True},
        "quotas": {"cimd_fetches_per_address": 3},
    }
    async with live(make_settings, **overrides) as (issuer, _), from_address(issuer) as http:
        url = f"{documents.base}/client/uncached"
        started = await http.get("/authorize", params=authorize_params(url, f"{issuer}/mcp"))
        assert started.status_code == 303
        pages = [await http.get(started.headers["location"]) for _ in range(3)]
        assert [p.status_code for p in pages] == [200, 200, 429]
        assert_too_many_page(pages[-1], "cimd_fetches_per_address")
        assert documents.hits["/client/uncached"] == 3


async def test_quotas_can_be_turned_off(make_settings: Callable[..., Settings]) -> None:
    """quotas.enabled = false: no limit (for a deployment that limits in front of bastion)."""
    overrides: dict[str, Any] = {"quotas": {"enabled": False, "registrations_per_address": 1}}
    async with live(make_settings, **overrides) as (issuer, _), from_address(issuer) as http:
        assert [(await post_register(http)).status_code for _ in range(3)] == [201] * 3
