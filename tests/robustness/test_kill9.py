"""kill -9 of ``bastion serve`` while 32 clients rotate refresh tokens, on SQLite and PostgreSQL.

OAuth 2.1 §4.3.1 and RFC 9700 §4.14.2: refresh tokens rotate on every use and a reused one
revokes its family, except that the client that rotated it may present it again within
``tokens.refresh_reuse_window`` and gets the same successor. A crash must not turn into a
revocation: an answer the server committed and never delivered is what that window is for.

One real ``bastion serve`` process; 32 public clients, each with a grant, rotate their refresh
tokens in a loop, each over a connection of its own; then the process gets SIGKILL (no
shutdown, nothing flushed by the application) and is started again on the same port and
database. Then every chain must go on:

- a client whose last request was answered uses the token it received;
- a client whose request was cut off retries with the token it sent: that succeeds whether the
  server had committed the rotation (the reuse window answers with the successor stored then,
  the very token the lost answer carried) or not (an ordinary rotation);
- no family is revoked, and the only unspent refresh token of each family is the one its client
  holds: no token the server never delivered is left usable beside it.

The first round kills at a random moment. The later rounds aim: they freeze the process
(SIGSTOP) at random moments until it holds an answer whose rotation the database shows
committed, and kill it then, so the reuse window is exercised in every run, not only when a
random kill happens to land between a commit and its answer (rare on SQLite, where commits take
turns); should a frozen answer still reach its client, up to three more aimed rounds follow.
Every loop is bounded in count and time; nothing is timed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.config import Settings
from bastion.store.database import Database
from bastion.store.schema import refresh_tokens, token_families
from bastion.tokens import secrets as opaque
from tests.scaleout.processes import Server, serving
from tests.support.flow import add_user, authorize, exchange, register
from tests.support.live import free_port

CHAINS = 32
ROUNDS = 3  # the first kills at a random moment, the others aim
MAX_ROUNDS = 6  # more aimed rounds, only while no kill has cut off a committed answer yet
ROTATIONS_AFTER = 3  # rotations each chain makes after a restart
MAX_ROTATIONS = 100_000  # per chain and round: the kill ends the loop long before
MAX_AIMS = 100  # freezes per aimed round before killing anyway
SETTLE = 0.05  # seconds for the answers a frozen process had handed to the kernel to arrive
SECRET_KEY = "kill-9-test-secret-key-0123456789abcdef"
TIMEOUT = 30.0
# Generous for a slow restart on a busy machine: a retry after the window would be reuse.
REUSE_WINDOW = 60


@dataclass
class Chain:
    """One client's grant as the client sees it."""

    client_id: str
    token: str  # the last refresh token it received
    family_id: str = ""
    in_flight: str | None = None  # the token of a request whose answer has not come
    rotations: int = 0


@dataclass
class Tally:
    """What the kills did, over every round."""

    rounds: int = 0
    cut_off: int = 0  # requests without an answer
    committed: int = 0  # of those, rotations the server had committed (the window's case)
    rotations: int = 0


def _client(url: str) -> httpx.AsyncClient:
    """A client with a single connection of its own."""
    return httpx.AsyncClient(
        base_url=url,
        timeout=TIMEOUT,
        trust_env=False,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
    )


async def _refresh(http: httpx.AsyncClient, chain: Chain, token: str) -> httpx.Response:
    return await http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": chain.client_id},
    )


async def _grants(url: str, settings: Settings) -> list[Chain]:
    """CHAINS public clients registered dynamically, each authorized once by alice."""
    await add_user(settings)
    chains: list[Chain] = []
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT, trust_env=False) as browser:
        for _ in range(CHAINS):
            app = await register(browser)
            done = await authorize(browser, app["client_id"], resource=f"{url}/mcp")
            issued = await exchange(browser, app["client_id"], done)
            assert issued.status_code == 200, issued.text
            chains.append(Chain(app["client_id"], issued.json()["refresh_token"]))
    return chains


async def _rotate_until_cut_off(server: Server, chain: Chain, started: asyncio.Event) -> None:
    """Rotate over one connection until a request gets no answer (the kill); every answer
    that does arrive must be a rotation."""
    async with _client(server.url) as http:
        for _ in range(MAX_ROTATIONS):
            chain.in_flight = chain.token
            try:
                response = await _refresh(http, chain, chain.token)
            except httpx.TransportError:
                return
            assert response.status_code == 200, response.text
            chain.token = response.json()["refresh_token"]
            chain.in_flight = None
            chain.rotations += 1
            started.set()


async def _spent(conn: AsyncConnection, tokens: list[str]) -> set[str]:
    """Which of ``tokens`` the database shows rotated (committed)."""
    hashes = {opaque.digest(t): t for t in tokens}
    rows = await conn.execute(
        sa.select(refresh_tokens.c.token_hash).where(
            refresh_tokens.c.token_hash.in_(hashes), refresh_tokens.c.used_at.is_not(None)
        )
    )
    return {hashes[row.token_hash] for row in rows}


async def _unspent(conn: AsyncConnection, family_id: str) -> list[str]:
    rows = await conn.execute(
        sa.select(refresh_tokens.c.token_hash).where(
            refresh_tokens.c.family_id == family_id, refresh_tokens.c.used_at.is_(None)
        )
    )
    return [row.token_hash for row in rows]


async def _aim(server: Server, db: Database, chains: list[Chain], rng: random.Random) -> None:
    """Freeze the server at random moments until it holds the answer to a committed rotation:
    once what it had handed to the kernel has arrived, a request still unanswered whose token
    the database shows spent. Returns with the server frozen (the kill follows)."""
    for _ in range(MAX_AIMS):
        server.freeze()
        await asyncio.sleep(SETTLE)
        waiting = [c.in_flight for c in chains if c.in_flight is not None]
        async with db.connect() as conn:
            if waiting and await _spent(conn, waiting):
                return
        server.thaw()
        await asyncio.sleep(rng.uniform(0.001, 0.03))


async def _lost_answers(db: Database, chains: list[Chain]) -> dict[str, str]:
    """For each chain cut off after its rotation was committed, the successor the lost answer
    carried (by hash: the family's only unspent token). Read while the server is down."""
    lost: dict[str, str] = {}
    async with db.connect() as conn:
        waiting = [c.in_flight for c in chains if c.in_flight is not None]
        spent = await _spent(conn, waiting) if waiting else set()
        for chain in chains:
            if chain.in_flight in spent:
                unspent = await _unspent(conn, chain.family_id)
                assert len(unspent) == 1, (chain.client_id, unspent)
                lost[chain.client_id] = unspent[0]
    return lost


async def _go_on(server: Server, chains: list[Chain], lost: dict[str, str]) -> int:
    """After the restart: each client retries what was cut off, then rotates a few more times.
    How many retries the reuse window answered."""
    answered_again = 0
    for chain in chains:
        async with _client(server.url) as http:
            if chain.in_flight is not None:
                response = await _refresh(http, chain, chain.in_flight)
                assert response.status_code == 200, (chain.client_id, response.text)
                successor = response.json()["refresh_token"]
                if chain.client_id in lost:
                    # The same successor the lost answer carried: one live branch.
                    assert opaque.digest(successor) == lost[chain.client_id]
                    answered_again += 1
                chain.token, chain.in_flight = successor, None
            for _ in range(ROTATIONS_AFTER):
                response = await _refresh(http, chain, chain.token)
                assert response.status_code == 200, (chain.client_id, response.text)
                chain.token = response.json()["refresh_token"]
                chain.rotations += 1
    return answered_again


async def _family_ids(db: Database, chains: list[Chain]) -> None:
    async with db.connect() as conn:
        for chain in chains:
            found = await conn.execute(
                sa.select(refresh_tokens.c.family_id).where(
                    refresh_tokens.c.token_hash == opaque.digest(chain.token)
                )
            )
            chain.family_id = found.scalar_one()


async def _assert_every_chain_intact(db: Database, chains: list[Chain]) -> None:
    """No family revoked; each family's only unspent refresh token is its client's."""
    async with db.connect() as conn:
        revoked = await conn.execute(
            sa.select(token_families.c.id, token_families.c.revoked_reason).where(
                token_families.c.revoked_at.is_not(None)
            )
        )
        assert list(revoked) == []
        for chain in chains:
            assert await _unspent(conn, chain.family_id) == [opaque.digest(chain.token)]


async def _kill_round(
    server: Server, db: Database, chains: list[Chain], rng: random.Random, tally: Tally
) -> None:
    started = asyncio.Event()
    loops = [asyncio.create_task(_rotate_until_cut_off(server, c, started)) for c in chains]
    try:
        await asyncio.wait_for(started.wait(), TIMEOUT)
        await asyncio.sleep(rng.uniform(0.05, 0.5))
        assert all(not loop.done() for loop in loops), "a loop ended before the kill"
        if tally.rounds > 0:
            await _aim(server, db, chains, rng)
        server.kill()
        await asyncio.wait_for(asyncio.gather(*loops), TIMEOUT)
    finally:
        for loop in loops:
            loop.cancel()
    lost = await _lost_answers(db, chains)
    tally.rounds += 1
    tally.cut_off += sum(c.in_flight is not None for c in chains)
    tally.committed += len(lost)
    await asyncio.to_thread(server.restart)
    assert await asyncio.wait_for(_go_on(server, chains, lost), TIMEOUT) == len(lost)
    await _assert_every_chain_intact(db, chains)


@pytest.fixture
def environment(backend: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """A bastion serve configuration on the test's database, port chosen now."""
    issuer = f"http://127.0.0.1:{free_port()}"
    return {
        "issuer": issuer,
        "data_dir": str(tmp_path / "data"),
        "secret_key": SECRET_KEY,
        "resources": [{"uri": f"{issuer}/mcp", "name": "demo", "scopes": ["mcp:tools"]}],
        "tokens": {"refresh_reuse_window": REUSE_WINDOW},
        "quotas": {"registrations_per_address": CHAINS},
        **backend,
    }


@pytest.fixture
def server(environment: dict[str, Any]) -> Iterator[Server]:
    port = int(environment["issuer"].rsplit(":", 1)[1])
    with serving(environment, [port]) as (running,):
        yield running


async def test_kill_9_while_32_clients_rotate_refresh_tokens_every_chain_goes_on(
    server: Server, environment: dict[str, Any]
) -> None:
    """SIGKILL during concurrent rotations, restart on the same port and database: every
    client's chain continues (the last token received, or a retry of the one sent, answered
    from the reuse window when the lost answer had been committed); no family is revoked by
    the crash and no undelivered token stays usable."""
    settings = Settings(**environment)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    tally = Tally()
    chains = await _grants(server.url, settings)
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        await _family_ids(db, chains)
        while tally.rounds < ROUNDS or (tally.committed == 0 and tally.rounds < MAX_ROUNDS):
            await _kill_round(server, db, chains, rng, tally)
    finally:
        await db.dispose()
    tally.rotations = sum(c.rotations for c in chains)
    print(f"kill -9, seed {seed}: {tally}")
    assert tally.cut_off > 0, f"seed {seed}: no kill cut off a request: {tally}"
    assert tally.committed > 0, (
        f"seed {seed}: no kill cut off a committed answer, so the reuse window was not "
        f"exercised: {tally}"
    )
