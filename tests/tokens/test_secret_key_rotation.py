"""Changing the secret key that encrypts what bastion stores (docs/operations.md, "Key rotation").

The routine: every process gets the new ``secret_key`` with the old one in
``previous_secret_keys``; ``bastion keys rekey`` re-encrypts every stored secret under the new
key in one transaction; the old key is removed. Shown here, refusals first:

- after the rekey the old key opens nothing: a process given only the old key refuses to start,
  so a leaked old key is worth nothing against the database or its backups;
- a value no configured key opens stops the rekey before anything is written;
- a process whose keys another process re-encrypted under a key it lacks keeps signing with the
  keys it loaded and logs what to do, instead of failing token requests;
- signing keys, upstream refresh tokens, upstream sign-ins in progress and everything of the
  token vault (people's upstream tokens, bastion's registrations upstream, connect sign-ins)
  come out encrypted under the new key, with their plaintext unchanged;
- with real ``bastion serve`` processes and the CLI, the JWKS stays the same through the routine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.authserver.admin import list_keys, rekey_secrets, rotate_keys
from bastion.authserver.app import cipher_for
from bastion.clock import system_clock
from bastion.config import Settings
from bastion.identity.local import LocalUsers
from bastion.store import auth_audit
from bastion.store import federation as federation_rows
from bastion.store import upstream_connections as vault_rows
from bastion.store.database import Database
from bastion.store.federation import LinkedAccount, SignInState
from bastion.store.sealed import SEALED, connection_binding
from bastion.tokens.cipher import Cipher, SecretKeyError
from bastion.tokens.keys import KeyManager
from tests.scaleout.processes import cli_run, running
from tests.support.live import free_port

OLD = "the-old-secret-key-0123456789-abcdefghij"
NEW = "the-new-secret-key-0123456789-klmnopqrst"
STRANGER = "a-key-that-never-encrypted-anything-0123456789"
REFRESH_TOKEN = "upstream-refresh-token-value"
VERIFIER = "pkce-verifier-of-a-sign-in-in-progress"
METADATA = "/.well-known/oauth-authorization-server"


def _keys(make_settings: Callable[..., Settings], secret: str, *previous: str) -> Settings:
    return make_settings(secret_key=secret, previous_secret_keys=list(previous))


async def _store_upstream_secrets(settings: Settings) -> str:
    """A linked account with a kept refresh token and a sign-in in progress, sealed as the
    federation code seals them; the user's id."""
    cipher = cipher_for(settings)
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        user = await LocalUsers(db).add("alice", "correct horse battery staple")
        now = system_clock()
        issuer, subject = "https://idp.example", "alice-upstream"
        sealed = cipher.encrypt(REFRESH_TOKEN.encode(), bound_to=f"federation:{issuer}|{subject}")
        verifier = cipher.encrypt(VERIFIER.encode(), bound_to="federation:state-hash")
        async with db.transaction() as conn:
            await federation_rows.add_link(
                conn, LinkedAccount(issuer, subject, "idp", user.id, now, now, sealed)
            )
            await federation_rows.save_state(
                conn,
                SignInState(
                    "state-hash", "idp", "req", "binding", "nonce", verifier, now, now + 600
                ),
            )
        return user.id
    finally:
        await db.dispose()


VAULT = {
    "token vault: access tokens": "vault-access-token",
    "token vault: refresh tokens": "vault-refresh-token",
    "token vault: client secrets": "vault-client-secret",
    "token vault: registration access tokens": "vault-registration-token",
    "token vault: sign-ins in progress": "vault-pkce-verifier",
}
_ISSUER = "https://as.upstream.example"


def _vault_bindings(user_id: str) -> dict[str, str]:
    """What each vault value is sealed to, as the vault code seals it."""
    return {
        "token vault: access tokens": connection_binding(user_id, "up", "access"),
        "token vault: refresh tokens": connection_binding(user_id, "up", "refresh"),
        "token vault: client secrets": f"upstream-client:up|{_ISSUER}|secret",
        "token vault: registration access tokens": f"upstream-client:up|{_ISSUER}|registration",
        "token vault: sign-ins in progress": "connect:vault-state-hash",
    }


async def _store_vault_secrets(settings: Settings, user_id: str) -> None:
    """A person's upstream connection, bastion's DCR registration there and a connect
    sign-in in progress, each value sealed as the vault seals it."""
    cipher = cipher_for(settings)
    bindings = _vault_bindings(user_id)
    sealed = {
        name: cipher.encrypt(value.encode(), bound_to=bindings[name])
        for name, value in VAULT.items()
    }
    now = system_clock()
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        async with db.transaction() as conn:
            await vault_rows.save_connection(
                conn,
                vault_rows.Connection(
                    user_id,
                    "up",
                    _ISSUER,
                    "bastion",
                    sealed["token vault: access tokens"],
                    sealed["token vault: refresh tokens"],
                    None,
                    now + 3600,
                    now,
                ),
            )
            await vault_rows.save_client(
                conn,
                vault_rows.UpstreamClient(
                    "up",
                    _ISSUER,
                    "dcr-client",
                    sealed["token vault: client secrets"],
                    "client_secret_basic",
                    "https://bastion.example/connect/callback",
                    "https://as.upstream.example/register/dcr-client",
                    sealed["token vault: registration access tokens"],
                    now,
                ),
            )
            await vault_rows.save_state(
                conn,
                vault_rows.ConnectState(
                    "vault-state-hash",
                    "up",
                    user_id,
                    "binding",
                    None,
                    _ISSUER,
                    "bastion",
                    sealed["token vault: sign-ins in progress"],
                    now,
                    now + 600,
                ),
            )
    finally:
        await db.dispose()


async def _vault_secrets(settings: Settings, user_id: str) -> dict[str, str]:
    """Every vault value, opened with ``settings``' keys."""
    cipher = cipher_for(settings)
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        async with db.connect() as conn:
            connection = await vault_rows.find_connection(conn, user_id, "up")
            client = await vault_rows.find_client(conn, "up", _ISSUER)
            state = await vault_rows.consume_state(conn, "vault-state-hash", system_clock())
    finally:
        await db.dispose()
    assert connection is not None and client is not None and state is not None
    values = {
        "token vault: access tokens": connection.access_token_encrypted,
        "token vault: refresh tokens": connection.refresh_token_encrypted,
        "token vault: client secrets": client.client_secret_encrypted,
        "token vault: registration access tokens": client.registration_access_token_encrypted,
        "token vault: sign-ins in progress": state.verifier_encrypted,
    }
    bindings = _vault_bindings(user_id)
    opened = {}
    for name, value in values.items():
        assert value is not None
        opened[name] = cipher.decrypt(value, bound_to=bindings[name]).decode()
    return opened


async def _upstream_secrets(settings: Settings) -> tuple[str, str]:
    """The refresh token and the verifier, opened with ``settings``' keys."""
    cipher = cipher_for(settings)
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        async with db.connect() as conn:
            link = await federation_rows.find_link(conn, "https://idp.example", "alice-upstream")
            state = await federation_rows.consume_state(conn, "state-hash", "idp", system_clock())
        assert link is not None and link.refresh_token_encrypted is not None
        assert state is not None
        return (
            cipher.decrypt(
                link.refresh_token_encrypted,
                bound_to="federation:https://idp.example|alice-upstream",
            ).decode(),
            cipher.decrypt(state.verifier_encrypted, bound_to="federation:state-hash").decode(),
        )
    finally:
        await db.dispose()


def test_a_previous_secret_decrypts_and_reseal_moves_a_value_to_the_current_one() -> None:
    old = Cipher(OLD)
    sealed = old.encrypt(b"private jwk", bound_to="kid-1")
    rotating = Cipher(NEW, [OLD])
    assert rotating.decrypt(sealed, bound_to="kid-1") == b"private jwk"
    fresh = rotating.reseal(sealed, bound_to="kid-1")
    assert fresh is not None and rotating.reseal(fresh, bound_to="kid-1") is None
    assert Cipher(NEW).decrypt(fresh, bound_to="kid-1") == b"private jwk"
    with pytest.raises(SecretKeyError, match="previous_secret_keys"):
        old.decrypt(fresh, bound_to="kid-1")
    # The value stays bound to what it was sealed for, under every key.
    with pytest.raises(SecretKeyError):
        rotating.decrypt(sealed, bound_to="kid-2")


async def test_after_a_rekey_the_old_secret_key_opens_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    await rotate_keys(_keys(make_settings, OLD))
    await _store_upstream_secrets(_keys(make_settings, OLD))
    await rekey_secrets(_keys(make_settings, NEW, OLD))

    with pytest.raises(SecretKeyError, match="not the one they were encrypted with"):
        await list_keys(_keys(make_settings, OLD))
    with pytest.raises(SecretKeyError):
        await _upstream_secrets(_keys(make_settings, OLD))


async def test_a_value_no_configured_key_opens_stops_the_rekey_before_anything_is_written(
    make_settings: Callable[..., Settings],
) -> None:
    await rotate_keys(_keys(make_settings, OLD))
    await _store_upstream_secrets(_keys(make_settings, OLD))

    with pytest.raises(SecretKeyError):
        await rekey_secrets(_keys(make_settings, NEW, STRANGER))
    # Nothing moved: the old key still opens everything, the new one alone nothing.
    assert await _upstream_secrets(_keys(make_settings, OLD)) == (REFRESH_TOKEN, VERIFIER)
    with pytest.raises(SecretKeyError):
        await list_keys(_keys(make_settings, NEW))


async def test_rekey_moves_every_stored_secret_to_the_new_key_unchanged(
    make_settings: Callable[..., Settings],
) -> None:
    await rotate_keys(_keys(make_settings, OLD))
    before = {k.kid for k in await list_keys(_keys(make_settings, OLD))}
    user_id = await _store_upstream_secrets(_keys(make_settings, OLD))
    await _store_vault_secrets(_keys(make_settings, OLD), user_id)

    counts = await rekey_secrets(_keys(make_settings, NEW, OLD))
    assert counts == {
        "signing keys": len(before),
        "upstream refresh tokens": 1,
        "upstream sign-ins in progress": 1,
        **dict.fromkeys(VAULT, 1),
    }
    assert set(counts) == {sealed.name for sealed in SEALED}
    # A second run finds everything under the new key already.
    again = await rekey_secrets(_keys(make_settings, NEW, OLD))
    assert set(again.values()) == {0}
    # Each run is in the authorization server's audit trail, with what it re-encrypted.
    settings = _keys(make_settings, NEW)
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        async with db.connect() as conn:
            records = await auth_audit.page(
                conn, auth_audit.Filters(types=["admin.secrets_rekeyed"]), limit=10
            )
    finally:
        await db.dispose()
    assert [r.detail for r in records] == [counts, again]
    assert all(r.actor is not None and r.actor.startswith("cli:") for r in records)
    assert {k.kid for k in await list_keys(_keys(make_settings, NEW))} == before
    assert await _upstream_secrets(_keys(make_settings, NEW)) == (REFRESH_TOKEN, VERIFIER)
    assert await _vault_secrets(_keys(make_settings, NEW), user_id) == VAULT


async def test_a_process_left_with_the_old_key_keeps_signing_and_says_what_to_do(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = _keys(make_settings, OLD)
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    now = [system_clock()]
    try:
        await db.upgrade()
        keys = KeyManager(
            db, Cipher(OLD), alg="ES256", token_ttl=300, refresh=30, clock=lambda: now[0]
        )
        await keys.load()
        loaded = (await keys.signing_key()).kid
        await rekey_secrets(_keys(make_settings, NEW, OLD))
        now[0] += 31  # the next request reloads
        with caplog.at_level(logging.ERROR, logger="bastion.tokens.keys"):
            assert (await keys.signing_key()).kid == loaded
        assert "cannot reload the signing keys, keeping the 1 loaded" in caplog.text
        assert "same secret_key" in caplog.text
    finally:
        await db.dispose()


async def test_the_documented_routine_with_real_processes_keeps_the_jwks(tmp_path: Path) -> None:
    """docs/operations.md step by step, SQLite, ``bastion serve`` and ``bastion keys rekey``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    base = {"issuer": url, "data_dir": str(tmp_path / "data")}
    serve = ["serve", "--port", str(port)]

    async def jwks() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=url, timeout=10, trust_env=False) as http:
            return (await http.get("/jwks")).json()  # type: ignore[no-any-return]

    old = {**base, "secret_key": OLD}
    with running(old, serve, url=url, ready_path=METADATA):
        published = await jwks()
    rotating = {**base, "secret_key": NEW, "previous_secret_keys": [OLD]}
    with running(rotating, serve, url=url, ready_path=METADATA):
        assert await jwks() == published
        done = cli_run(rotating, "keys", "rekey")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "signing keys: 1 re-encrypted" in done.stdout
    new = {**base, "secret_key": NEW}
    with running(new, serve, url=url, ready_path=METADATA):
        assert await jwks() == published

    with (
        pytest.raises(RuntimeError, match="not the one they were encrypted with"),
        running(old, serve, url=url, ready_path=METADATA),
    ):
        pass
    refused = cli_run(old, "keys", "list")
    assert refused.returncode == 1
    assert "previous_secret_keys" in refused.stderr
    assert "Traceback" not in refused.stderr
