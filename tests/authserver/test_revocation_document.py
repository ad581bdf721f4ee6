"""The revocation document ``GET <issuer>/revocations`` (bastion's own endpoint, for resource
servers that verify JWTs locally): the grants and tokens revoked while tokens they cover live,
an ETag and conditional requests (RFC 9110 §8.8.3, §13.1.2, §15.4.5), the long poll, the bound
on held requests; and introspection (RFC 7662 §2.2) of a token whose grant was withdrawn."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from bastion.authserver import admin
from bastion.config import RevocationSettings, Settings
from bastion.resource import RevocationList
from bastion.store import revocations
from bastion.store.database import Database
from tests.authserver._tokens import RESOURCE, confidential_client, introspect
from tests.support.asgi import running

LIMIT = 5.0


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(settings) as client:
        yield client


def revoked_list(client: httpx.AsyncClient) -> RevocationList:
    found: RevocationList = client.app.state.bastion.revocations  # type: ignore[attr-defined]
    return found


async def record(settings: Settings, kind: revocations.Kind, value: str, ttl: int = 600) -> int:
    """Record a revocation from another connection, as the CLI does; its expiry."""
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    now = int(time.time())
    try:
        async with db.transaction() as conn:
            await revocations.record(conn, kind, value, now=now, expires_at=now + ttl)
    finally:
        await db.dispose()
    return now + ttl


async def until(condition: Callable[[], bool]) -> None:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < LIMIT, "the condition never held"
        await asyncio.sleep(0.02)


async def test_the_document_lists_every_revoked_grant_and_token_with_an_etag(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    grant_exp = await record(settings, "grant", "family-1")
    token_exp = await record(settings, "token", "jti-1")
    await until(lambda: len(revoked_list(client)) == 2)
    response = await client.get("/revocations")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-cache"
    assert response.json() == {"grants": {"family-1": grant_exp}, "tokens": {"jti-1": token_exp}}
    etag = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    again = await client.get("/revocations", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["etag"] == etag
    assert again.content == b""
    weak = await client.get("/revocations", headers={"If-None-Match": f'"x", W/{etag}'})
    assert weak.status_code == 304
    other = await client.get("/revocations", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200


async def test_a_held_request_answers_as_soon_as_something_is_revoked(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """The long poll: If-None-Match with the current tag and wait=N is held until the list
    changes, then answered 200 with the new list and its new tag."""
    first = await client.get("/revocations")
    assert first.json() == {"grants": {}, "tokens": {}}
    held = asyncio.ensure_future(
        client.get("/revocations?wait=20", headers={"If-None-Match": first.headers["etag"]})
    )
    await until(lambda: revoked_list(client).waiters == 1)
    assert not held.done()
    await record(settings, "grant", "family-2")
    response = await asyncio.wait_for(held, LIMIT)
    assert response.status_code == 200
    assert list(response.json()["grants"]) == ["family-2"]
    assert response.headers["etag"] != first.headers["etag"]
    assert revoked_list(client).waiters == 0


async def test_a_held_request_without_a_change_ends_in_304_after_max_wait(
    make_settings: Callable[..., Settings],
) -> None:
    """wait is capped at revocations.max_wait (here 1 s): asking for 60 s gets a 304 then."""
    settings = make_settings(revocations=RevocationSettings(max_wait=1))
    async with running(settings) as client:
        etag = (await client.get("/revocations")).headers["etag"]
        response = await asyncio.wait_for(
            client.get("/revocations?wait=60", headers={"If-None-Match": etag}), LIMIT
        )
    assert response.status_code == 304
    assert response.headers["etag"] == etag


async def test_held_requests_beyond_max_waiters_get_503_with_retry_after(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(revocations=RevocationSettings(max_waiters=1, max_wait=5))
    async with running(settings) as client:
        etag = (await client.get("/revocations")).headers["etag"]
        headers = {"If-None-Match": etag}
        held = asyncio.ensure_future(client.get("/revocations?wait=5", headers=headers))
        await until(lambda: revoked_list(client).waiters == 1)
        refused = await client.get("/revocations?wait=5", headers=headers)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert refused.json()["error"] == "temporarily_unavailable"
        plain = await client.get("/revocations", headers=headers)
        assert plain.status_code == 304
        # Held for its whole wait (5 s) from when it was sent, then answered: allow for both.
        assert (await asyncio.wait_for(held, 5 + LIMIT)).status_code == 304


@pytest.mark.parametrize("wait", ["-1", "soon", "1.5"])
async def test_wait_is_a_whole_number_of_seconds(client: httpx.AsyncClient, wait: str) -> None:
    response = await client.get(f"/revocations?wait={wait}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_the_metadata_does_not_advertise_the_document(client: httpx.AsyncClient) -> None:
    """RFC 8414 §2 registers no field for it; resource servers are configured with its URL."""
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert f"{metadata['issuer']}/revocations" not in metadata.values()


async def test_introspection_reports_a_token_of_a_withdrawn_machine_grant_inactive(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """RFC 7662 §2.2: a machine client's secret is rotated (its grant withdrawn); its token is
    then reported inactive, though it has no refresh family to look up."""
    machine = await confidential_client(settings, scope="mcp:tools")
    rs = await confidential_client(settings, scope="mcp:tools", introspects=["*"])
    response = await client.post(
        "/token",
        data={"grant_type": "client_credentials", "resource": RESOURCE, "scope": "mcp:tools"},
        headers=machine.authorization,
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    active = await introspect(client, rs, token)
    assert active["active"] is True
    assert isinstance(active["grant_id"], str) and active["grant_id"]
    await admin.rotate_client_secret(settings, machine.client_id)
    await until(lambda: len(revoked_list(client)) == 1)
    assert await introspect(client, rs, token) == {"active": False}
