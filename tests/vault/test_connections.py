"""The token vault's administrative side on both databases, with a real upstream
(node-oidc-provider): ``bastion connections list|revoke`` and ``bastion users remove`` refuse
what they cannot do and change nothing; they never print a token; revoking deletes the
connection and revokes its refresh token upstream (RFC 7009 §2.1: the provider then reports
both tokens inactive, RFC 7662); the deletion holds when the upstream cannot be reached, and
the output says the tokens stay valid there. Housekeeping forgets expired URL elicitations and
sign-ins in progress."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from bastion.authserver.app import close_server, housekeeping, open_server
from bastion.authserver.secret_key import cipher_for
from bastion.cli.main import app
from bastion.config import Settings, load_settings
from bastion.store import upstream_connections as connection_rows
from bastion.store.schema import (
    upstream_connect_requests,
    upstream_connect_states,
    users,
)
from bastion.store.upstream_connections import ConnectRequest, ConnectState
from bastion.vault.connections import Outcome, revoke_connection
from tests.support.flow import add_user
from tests.support.oidc_provider import OidcProvider
from tests.vault.connected import (
    UPSTREAM,
    Tokens,
    active,
    audit_records,
    connect,
    connected,
    database,
    upstream_server,
    upstream_toml,
)

runner = CliRunner()


@dataclass
class Vault:
    """A configuration file (both databases) whose upstream ``files`` has its own OAuth at
    ``op``, with alice and bob."""

    config: Path
    settings: Settings
    op: OidcProvider

    async def bastion(self, *args: str) -> tuple[int, str, str]:
        """``bastion ARGS --config CONFIG`` in-process (in a thread: the CLI runs its own event
        loop): exit code, standard output, standard error."""

        def invoke() -> tuple[int, str, str]:
            result = runner.invoke(app, [*args, "--config", str(self.config)])
            return result.exit_code, result.stdout, result.stderr

        return await asyncio.to_thread(invoke)


def _config(tmp_path: Path, backend: dict[str, Any], issuer: str) -> Path:
    path = tmp_path / "bastion.toml"
    database = "".join(f'{key} = "{value}"\n' for key, value in backend.items())
    path.write_text(
        f'issuer = "http://127.0.0.1:8123"\ndata_dir = "{tmp_path / "data"}"\n'
        'secret_key = "vault-test-secret-key-long-enough-0123456789"\n'
        + database
        + upstream_toml(issuer)
        + upstream_toml(issuer, "calendar")
    )
    return path


@pytest.fixture
async def vault(tmp_path: Path, backend: dict[str, Any]) -> AsyncIterator[Vault]:
    async with upstream_server() as op:
        config = _config(tmp_path, backend, op.issuer)
        settings = load_settings(config)
        await add_user(settings, "alice")
        await add_user(settings, "bob")
        yield Vault(config, settings, op)


def _no_token_in(text: str, *tokens: Tokens) -> None:
    for held in tokens:
        for value in held.values:
            assert value not in text


# -- refusals -------------------------------------------------------------------------------------


async def test_revoke_refuses_an_unknown_person_upstream_or_connection_and_changes_nothing(
    vault: Vault,
) -> None:
    alices = await connect(vault.settings, vault.op, "alice")
    code, out, err = await vault.bastion(
        "connections", "revoke", "--user", "nobody", "--upstream", UPSTREAM
    )
    assert code == 1 and "no user 'nobody'; see `bastion users list`" in err, (out, err)
    code, out, err = await vault.bastion(
        "connections", "revoke", "--user", "alice", "--upstream", "payroll"
    )
    assert code == 1 and "no upstream 'payroll' with auth = \"oauth\"" in err, err
    assert "files, calendar" in err  # the names it could have been
    code, out, err = await vault.bastion(
        "connections", "revoke", "--user", "bob", "--upstream", UPSTREAM
    )
    assert code == 1, (out, err)
    assert "bob has no connection to files; see `bastion connections list --user bob`" in err
    code, out, err = await vault.bastion("connections", "list", "--user", "nobody")
    assert code == 1 and "no user 'nobody'" in err
    code, out, err = await vault.bastion("connections", "list", "--upstream", "payroll")
    assert code == 1 and "no upstream 'payroll'" in err
    assert await connected(vault.settings) == [("alice", UPSTREAM)]
    assert await active(vault.op, alices.refresh_token)
    assert await audit_records(vault.settings, "admin.upstream_disconnected") == []


async def test_no_command_prints_a_token(vault: Vault) -> None:
    """The tokens, in the clear or encrypted, appear in no output: list (table and JSON),
    revoke, users remove."""
    alices = await connect(vault.settings, vault.op, "alice")
    bobs = await connect(vault.settings, vault.op, "bob")
    db = database(vault.settings)
    try:
        async with db.connect() as conn:
            stored = await connection_rows.connections(conn)
    finally:
        await db.dispose()
    sealed = [(c.access_token_encrypted, c.refresh_token_encrypted or "") for c in stored]
    outputs = [
        await vault.bastion("connections", "list"),
        await vault.bastion("connections", "list", "--json"),
        await vault.bastion("connections", "revoke", "--user", "alice", "--upstream", UPSTREAM),
        await vault.bastion("users", "remove", "bob"),
    ]
    assert [code for code, _, _ in outputs] == [0, 0, 0, 0], outputs
    for _, out, err in outputs:
        _no_token_in(out + err, alices, bobs, *(Tokens(*pair) for pair in sealed))


# -- what operators do ----------------------------------------------------------------------------


async def test_list_shows_each_persons_connections_and_filters_them(vault: Vault) -> None:
    await connect(vault.settings, vault.op, "alice")
    await connect(vault.settings, vault.op, "alice", "calendar")
    await connect(vault.settings, vault.op, "bob")
    code, out, err = await vault.bastion("connections", "list", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [(r["username"], r["upstream"]) for r in rows] == [
        ("alice", "calendar"),
        ("alice", UPSTREAM),
        ("bob", UPSTREAM),
    ]
    first = rows[0]
    assert first["issuer"] == vault.op.issuer and first["scope"] == "mcp:tools"
    assert first["created_at"] <= time.time() < first["expires_at"]
    assert first["refreshed_at"] is None
    assert set(first) == {
        "user_id", "username", "upstream", "issuer", "scope", "created_at", "expires_at",
        "refreshed_at",
    }  # fmt: skip
    code, out, _ = await vault.bastion("connections", "list", "--user", "bob", "--json")
    assert [(r["username"], r["upstream"]) for r in json.loads(out)] == [("bob", UPSTREAM)]
    code, out, _ = await vault.bastion("connections", "list", "--upstream", "calendar", "--json")
    assert [(r["username"], r["upstream"]) for r in json.loads(out)] == [("alice", "calendar")]
    code, out, _ = await vault.bastion("connections", "list", "--user", "alice")
    assert code == 0 and "calendar" in out and vault.op.issuer in out and "bob" not in out


async def test_revoke_deletes_the_connection_and_revokes_it_upstream_rfc7009(
    vault: Vault,
) -> None:
    """RFC 7009 §2.1: bastion revokes the refresh token; the provider then reports it and the
    access token of the same grant inactive (RFC 7662). Bob's connection is untouched."""
    alices = await connect(vault.settings, vault.op, "alice")
    bobs = await connect(vault.settings, vault.op, "bob")
    assert await active(vault.op, alices.refresh_token)
    assert await active(vault.op, alices.access_token)
    code, out, err = await vault.bastion(
        "connections", "revoke", "--user", "alice", "--upstream", UPSTREAM
    )
    assert code == 0, (out, err)
    assert "deleted the connection of alice to files; its tokens were revoked at files" in out
    assert err == ""
    assert await connected(vault.settings) == [("bob", UPSTREAM)]
    assert not await active(vault.op, alices.refresh_token)
    assert not await active(vault.op, alices.access_token)
    assert await active(vault.op, bobs.refresh_token)
    [record] = await audit_records(vault.settings, "admin.upstream_disconnected")
    assert record.actor.startswith("cli:") and record.target_kind == "user"
    assert record.detail == {"upstream": UPSTREAM, "issuer": vault.op.issuer, "username": "alice"}
    code, out, err = await vault.bastion(
        "connections", "revoke", "--user", "alice", "--upstream", UPSTREAM
    )
    assert code == 1 and "alice has no connection to files" in err


async def test_removing_a_person_deletes_their_connections_and_revokes_them_upstream(
    vault: Vault,
) -> None:
    """Issue 18: removing a person deletes their upstream tokens and revokes them upstream
    (RFC 7009) where offered."""
    files = await connect(vault.settings, vault.op, "alice")
    calendar = await connect(vault.settings, vault.op, "alice", "calendar")
    bobs = await connect(vault.settings, vault.op, "bob")
    code, out, err = await vault.bastion("users", "remove", "alice")
    assert code == 0, (out, err)
    assert "removed alice" in out
    assert "their connection to files was deleted; its tokens were revoked at files" in out
    assert "their connection to calendar was deleted" in out
    assert await connected(vault.settings) == [("bob", UPSTREAM)]
    for token in (*files.values, *calendar.values):
        assert not await active(vault.op, token)
    assert await active(vault.op, bobs.refresh_token)
    [record] = await audit_records(vault.settings, "admin.user_removed")
    assert record.detail == {"username": "alice", "upstream_connections": ["calendar", UPSTREAM]}


async def test_an_unreachable_upstream_does_not_keep_the_connection(
    tmp_path: Path, backend: dict[str, Any]
) -> None:
    """The upstream's authorization server is down: the connection is deleted all the same,
    and the operator is told that revoking failed and the tokens stay valid there."""
    async with upstream_server() as op:
        config = _config(tmp_path, backend, op.issuer)
        settings = load_settings(config)
        await add_user(settings, "alice")
        await add_user(settings, "bob")
        await connect(settings, op, "alice")
        await connect(settings, op, "bob", "calendar")
    vault = Vault(config, settings, op)  # the provider has stopped
    code, out, err = await vault.bastion(
        "connections", "revoke", "--user", "alice", "--upstream", UPSTREAM
    )
    assert code == 0, (out, err)
    assert "warning: deleted the connection of alice to files, but revoking at files failed" in err
    assert "its tokens stay valid at files until they expire there" in err
    code, out, err = await vault.bastion("users", "remove", "bob")
    assert code == 0 and "removed bob" in out
    assert "their connection to calendar was deleted, but revoking at calendar failed" in err
    assert await connected(settings) == []


async def test_a_connection_to_an_upstream_no_longer_configured_is_deleted_and_said_so(
    vault: Vault,
) -> None:
    await connect(vault.settings, vault.op, "alice")
    settings = vault.settings.model_copy(
        update={"gateway": vault.settings.gateway.model_copy(update={"upstreams": []})}
    )
    db = database(settings)
    try:
        async with db.connect() as conn:
            [alice] = await connection_rows.connections(conn)
        done = await revoke_connection(
            settings, db, cipher_for(settings), alice.user_id, UPSTREAM, by_operator=True
        )
        again = await revoke_connection(
            settings, db, cipher_for(settings), alice.user_id, UPSTREAM, by_operator=True
        )
    finally:
        await db.dispose()
    assert done is not None and done.outcome is Outcome.NOT_CONFIGURED
    assert 'files is no longer an upstream with auth = "oauth"' in done.message
    assert again is None
    assert await connected(vault.settings) == []


# -- housekeeping ---------------------------------------------------------------------------------


async def test_housekeeping_forgets_expired_url_elicitations_and_sign_ins(
    settings: Settings,
) -> None:
    await add_user(settings, "alice")
    server = await open_server(settings)
    try:
        now = server.clock()
        async with server.db.transaction() as conn:
            user_id = await conn.scalar(sa.select(users.c.id).where(users.c.username == "alice"))
            for name, expires in (("old", now - 1), ("live", now + 600)):
                await connection_rows.save_request(
                    conn, ConnectRequest(name, user_id, UPSTREAM, None, now - 700, expires)
                )
                await connection_rows.save_state(
                    conn,
                    ConnectState(
                        name, UPSTREAM, user_id, "binding", None, "http://as", "client",
                        "sealed", now - 700, expires,
                    ),
                )  # fmt: skip
        await housekeeping(server)
        async with server.db.connect() as conn:
            requests = list(await conn.scalars(sa.select(upstream_connect_requests.c.id)))
            states = list(await conn.scalars(sa.select(upstream_connect_states.c.state_hash)))
        assert (requests, states) == (["live"], ["live"])
    finally:
        await close_server(server)
