"""Concurrent redemptions of single-use grants against a real server (uvicorn, real sockets).

OAuth 2.1 §4.1.3 (a code is used once), RFC 9700 §4.2.4 (a replayed code revokes what it
issued) and §4.14.2 (a refresh token is used once; reuse revokes the family, except by its own
client within tokens.refresh_reuse_window, which gets the same successor). Requests truly
overlap: twenty of them are in flight at once over separate connections.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

import httpx

from bastion.authserver.app import create_app
from bastion.config import ResourceSettings, Settings
from tests.authserver._tokens import (
    assert_error,
    code_grant,
    confidential_client,
    introspect,
    refresh,
)
from tests.support.flow import add_user, authorize, exchange, register
from tests.support.live import free_port, serve

RACERS = 20
TIMEOUT = 60.0


def racing_client(issuer: str) -> httpx.AsyncClient:
    """One client whose pool lets every racer have its own connection."""
    return httpx.AsyncClient(
        base_url=issuer,
        timeout=TIMEOUT,
        limits=httpx.Limits(max_connections=RACERS * 2, max_keepalive_connections=RACERS * 2),
    )


async def race(requests: Iterable[Awaitable[httpx.Response]]) -> list[httpx.Response]:
    """Start every request at once; wait for all of them, within a bound."""
    return list(await asyncio.wait_for(asyncio.gather(*requests), TIMEOUT))


def outcome(responses: list[httpx.Response]) -> Counter[int]:
    for response in responses:
        assert response.status_code < 500, response.text
    return Counter(r.status_code for r in responses)


async def test_a08_concurrent_redemptions_of_one_code_give_exactly_one_token_response(
    live_as: tuple[str, Settings],
) -> None:
    """OAuth 2.1 §4.1.3: of twenty simultaneous redemptions of one code exactly one succeeds,
    the others get invalid_grant; and since the code was replayed, the winner's tokens are
    revoked (RFC 9700 §4.2.4)."""
    issuer, settings = live_as
    async with racing_client(issuer) as client:
        await add_user(settings)
        resource_server = await confidential_client(settings, introspects=["*"])
        reg = await register(client)
        done = await authorize(client, reg["client_id"], resource=f"{issuer}/mcp")
        responses = await race(exchange(client, reg["client_id"], done) for _ in range(RACERS))
        assert outcome(responses) == {200: 1, 400: RACERS - 1}
        for response in responses:
            if response.status_code == 400:
                assert_error(response, 400, "invalid_grant")
        (winner,) = (r.json() for r in responses if r.status_code == 200)

        assert await introspect(client, resource_server, winner["access_token"]) == {
            "active": False
        }
        refused = await refresh(client, reg["client_id"], winner["refresh_token"])
        assert_error(refused, 400, "invalid_grant")


async def test_a06_concurrent_refreshes_by_the_client_share_one_successor(
    live_as: tuple[str, Settings],
) -> None:
    """OAuth 2.1 §4.3.1, RFC 9700 §4.14.2 with tokens.refresh_reuse_window: twenty simultaneous
    refreshes by the client that holds the token (several windows of one MCP client) are
    rotated once: every answer carries the same successor, so the grant keeps one live branch
    and nobody is signed out. That successor then works once, like any refresh token."""
    issuer, settings = live_as
    async with racing_client(issuer) as client:
        await add_user(settings)
        resource_server = await confidential_client(settings, introspects=["*"])
        grant = await code_grant(client, resource=f"{issuer}/mcp")
        token = grant.tokens["refresh_token"]
        responses = await race(refresh(client, grant.client_id, token) for _ in range(RACERS))
        assert outcome(responses) == {200: RACERS}
        [successor] = {r.json()["refresh_token"] for r in responses}
        assert successor != token
        assert len({r.json()["access_token"] for r in responses}) == RACERS
        for response in responses:
            answer = await introspect(client, resource_server, response.json()["access_token"])
            assert answer["active"] is True
        onward = await race(refresh(client, grant.client_id, successor) for _ in range(2))
        assert outcome(onward) == {200: 2}
        assert len({r.json()["refresh_token"] for r in onward}) == 1


async def test_a06_concurrent_refreshes_outside_the_window_give_exactly_one_token_response(
    make_settings: Callable[..., Settings],
) -> None:
    """RFC 9700 §4.14.2 without a reuse window (tokens.refresh_reuse_window = 0): of twenty
    simultaneous uses exactly one gets new tokens, the others get invalid_grant; and since the
    rotated token was reused, the family the winner's tokens belong to is revoked."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings = make_settings(
        issuer=issuer,
        resources=[ResourceSettings(uri=f"{issuer}/mcp", name="demo", scopes=["mcp:tools"])],
        tokens={"refresh_reuse_window": 0},
    )
    async with serve(create_app(settings), port=port), racing_client(issuer) as client:
        await add_user(settings)
        resource_server = await confidential_client(settings, introspects=["*"])
        grant = await code_grant(client, resource=f"{issuer}/mcp")
        token = grant.tokens["refresh_token"]
        responses = await race(refresh(client, grant.client_id, token) for _ in range(RACERS))
        assert outcome(responses) == {200: 1, 400: RACERS - 1}
        for response in responses:
            if response.status_code == 400:
                assert_error(response, 400, "invalid_grant")
        (winner,) = (r.json() for r in responses if r.status_code == 200)

        # The losers presented a token already rotated: the family, winner included, is revoked.
        assert await introspect(client, resource_server, winner["access_token"]) == {
            "active": False
        }
        refused = await refresh(client, grant.client_id, winner["refresh_token"])
        assert_error(refused, 400, "invalid_grant")
