"""Concurrent redemptions of single-use grants against a real server (uvicorn, real sockets).

OAuth 2.1 §4.1.3 (a code is used once), RFC 9700 §4.2.4 (a replayed code revokes what it
issued) and §4.14.2 (a refresh token is used once; reuse revokes the family). Requests truly
overlap: twenty of them are in flight at once over separate connections.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Iterable

import httpx

from bastion.config import Settings
from tests.authserver._tokens import (
    assert_error,
    code_grant,
    confidential_client,
    introspect,
    refresh,
)
from tests.support.flow import add_user, authorize, exchange, register

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
        resource_server = await confidential_client(settings)
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


async def test_a06_concurrent_redemptions_of_one_refresh_token_give_exactly_one_token_response(
    live_as: tuple[str, Settings],
) -> None:
    """OAuth 2.1 §4.3.1, RFC 9700 §4.14.2: a refresh token is rotated once; of twenty
    simultaneous uses exactly one gets new tokens, the others get invalid_grant; and since the
    rotated token was reused, the family the winner's tokens belong to is revoked."""
    issuer, settings = live_as
    async with racing_client(issuer) as client:
        await add_user(settings)
        resource_server = await confidential_client(settings)
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
