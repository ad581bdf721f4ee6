"""One refresh at a time across processes (issue 18: "refreshed before expiry with one refresh
at a time across processes").

Two gateway processes stand in as two :class:`~bastion.vault.tokens.VaultTokens`, each with its
own database engine (its own connections, as two processes have) on the same SQLite file or
PostgreSQL schema, each with its own client to the upstream's authorization server. The
provider rotates refresh tokens (OAuth 2.1 §4.3.1: public clients): a second refresh with the
same refresh token would be a replay, answered invalid_grant with the whole grant revoked; so
that the connection still works afterwards shows exactly one refresh reached the provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from bastion.authserver.secret_key import cipher_for
from bastion.clock import system_clock
from bastion.config import Settings
from bastion.vault.errors import ConnectionNeeded
from bastion.vault.tokens import VaultTokens
from tests.vault.gateway_stack import UPSTREAM, VaultStack, vault_stack


@pytest.fixture
async def stack(make_settings: Callable[..., Settings]) -> AsyncIterator[VaultStack]:
    async with vault_stack(make_settings) as running:
        yield running


def process(stack: VaultStack) -> VaultTokens:
    """The vault of one more gateway process on the stack's database."""
    settings = stack.settings
    return VaultTokens(
        settings.gateway.upstreams,
        issuer=settings.issuer,
        db=stack.db(),
        cipher=cipher_for(settings),
    )


async def test_two_processes_refresh_a_due_token_once(stack: VaultStack) -> None:
    """Eight calls in two processes at once, all with the token due: one refresh reaches the
    provider (the lease), the others wait for its outcome; every call gets the same new token,
    and the grant is intact (a second use of the rotated refresh token would have revoked it)."""
    alice_id, _ = await stack.person("alice")
    tokens = await stack.upstream_tokens("alice-upstream")
    await stack.seed_connection(alice_id, tokens, expires_at=system_clock() - 1)
    first, second = process(stack), process(stack)
    try:
        got = await asyncio.gather(
            *(vault.access_token(alice_id, UPSTREAM) for vault in [first, second] * 4)
        )
    finally:
        for vault in (first, second):
            await vault.aclose()
            await vault.db.dispose()
    assert len(set(got)) == 1
    [token] = set(got)
    assert token != tokens["access_token"]
    connection = await stack.connection(alice_id)
    assert connection is not None and connection.refresh_lease_until is None
    assert stack.open_token(connection) == token
    assert "grant.error" not in stack.op.log()
    # The stored refresh token is the rotated one and still good: one more refresh works.
    third = process(stack)
    try:
        await stack.expire(alice_id)
        assert await third.access_token(alice_id, UPSTREAM) != token
    finally:
        await third.aclose()
        await third.db.dispose()
    assert "grant.error" not in stack.op.log()


async def test_a_replayed_refresh_token_ends_the_grant(stack: VaultStack) -> None:
    """The check above can fail: a refresh with an already rotated refresh token is refused
    (invalid_grant), and the vault then deletes the connection (ConnectionNeeded)."""
    alice_id, _ = await stack.person("alice")
    tokens = await stack.upstream_tokens("alice-upstream")
    await stack.seed_connection(alice_id, tokens, expires_at=system_clock() - 1)
    first, second = process(stack), process(stack)
    try:
        await first.access_token(alice_id, UPSTREAM)  # rotates the refresh token
        await stack.seed_connection(alice_id, tokens, expires_at=system_clock() - 1)
        with pytest.raises(ConnectionNeeded):
            await second.access_token(alice_id, UPSTREAM)
    finally:
        for vault in (first, second):
            await vault.aclose()
            await vault.db.dispose()
    assert await stack.connection(alice_id) is None
