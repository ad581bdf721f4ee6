"""`bastion clients|users|keys|db` commands against a real SQLite data directory."""

from __future__ import annotations

import re
import sqlite3
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.client import ClientSettings
from bastion.tokens import secrets as opaque
from tests.cli.conftest import bastion

runner = CliRunner()


def db_rows(config: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(config.parent / "data" / "bastion.db") as conn:
        return conn.execute(sql).fetchall()


def test_confidential_client_secret_is_shown_once_and_stored_as_a_hash(config: Path) -> None:
    code, out = bastion(
        config,
        "clients",
        "add",
        "--name",
        "agent",
        "--confidential",
        "--client-id",
        "agent-1",
        "--scope",
        "mcp:tools",
    )
    assert code == 0, out
    secret = re.search(r"client_secret\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    assert "not shown again" in out
    [(stored,)] = db_rows(config, "select secret_hash from clients where client_id='agent-1'")
    assert stored == opaque.digest(secret) and secret not in str(
        db_rows(config, "select * from clients")
    )
    code, out = bastion(config, "clients", "show", "agent-1")
    assert code == 0 and '"client_credentials"' in out and secret not in out


def test_write_client_config_is_refused_for_clients_without_a_secret_and_over_a_file(
    config: Path, tmp_path: Path
) -> None:
    """Checked before anything is registered: exit 2, no client made, no file replaced."""
    taken = tmp_path / "taken.toml"
    taken.write_text("kept\n")
    cases = [
        (["--name", "cli", "--redirect-uri", "http://127.0.0.1/cb"], "for a machine client"),
        (["--name", "cli", "--confidential", "--redirect-uri", "http://127.0.0.1/cb"], "machine"),
        (["--name", "agent", "--confidential"], f"{taken} exists"),
    ]
    for args, said in cases:
        path = taken if "exists" in said else tmp_path / "new.toml"
        code, out = bastion(config, "clients", "add", *args, "--write-client-config", str(path))
        assert code == 2 and said in out, out
    assert not (tmp_path / "new.toml").exists() and taken.read_text() == "kept\n"
    assert bastion(config, "clients", "list", "--json") == (0, "[]\n")


def test_write_client_config_makes_a_private_client_toml_with_its_own_token_file(
    config: Path, tmp_path: Path
) -> None:
    """The file bastion's client reads (ClientSettings): this machine client pre-registered for
    exactly the issuer, a token file of its own beside it (a person's stored tokens for the
    same server stay theirs), mode 0600 since it holds the secret."""
    path = tmp_path / "agent.toml"
    code, out = bastion(
        config, "clients", "add", "--name", 'nightly "agent"', "--confidential",
        "--client-id", "agent-1", "--write-client-config", str(path),
    )  # fmt: skip
    assert code == 0, out
    secret = re.search(r"client_secret\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    assert f"wrote {path}: bastion's client is this machine client with --client-config" in out
    assert path.stat().st_mode & 0o777 == 0o600
    settings = ClientSettings.model_validate(tomllib.loads(path.read_text()))
    assert settings.use_keyring is False
    assert settings.storage_path == tmp_path / "agent-tokens.json"
    [client] = settings.pre_registered
    assert client.issuer == "http://127.0.0.1:8123" and client.client_id == "agent-1"
    assert client.client_secret is not None and client.client_secret.get_secret_value() == secret
    assert client.grant_type == "client_credentials"


def test_public_client_with_redirect_uri(config: Path) -> None:
    code, out = bastion(
        config,
        "clients",
        "add",
        "--name",
        "Desktop",
        "--client-id",
        "desk",
        "--redirect-uri",
        "http://127.0.0.1/callback",
    )
    assert code == 0, out
    assert "client_secret" not in out
    code, out = bastion(config, "clients", "list")
    assert "desk" in out and "none" in out and "authorization_code" in out


def test_bad_redirect_uri_is_refused_with_the_reason(config: Path) -> None:
    code, out = bastion(
        config, "clients", "add", "--name", "x", "--redirect-uri", "http://evil.example.com/cb"
    )
    assert code == 1
    assert "non-loopback" in out


def test_rotate_secret_replaces_the_hash(config: Path) -> None:
    bastion(config, "clients", "add", "--name", "a", "--confidential", "--client-id", "c1")
    [(before,)] = db_rows(config, "select secret_hash from clients")
    code, out = bastion(config, "clients", "rotate-secret", "c1")
    assert code == 0, out
    secret = re.search(r"client_secret\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    [(after,)] = db_rows(config, "select secret_hash from clients")
    assert after != before and after == opaque.digest(secret)


def test_remove_client_and_unknown_client_message(config: Path) -> None:
    bastion(config, "clients", "add", "--name", "a", "--confidential", "--client-id", "c1")
    assert bastion(config, "clients", "remove", "c1")[0] == 0
    code, out = bastion(config, "clients", "remove", "c1")
    assert code == 1 and "no client with id 'c1'" in out and "bastion clients list" in out


def test_users_lifecycle(config: Path) -> None:
    code, out = bastion(
        config,
        "users",
        "add",
        "alice",
        "--password",
        "first password 01",
        "--group",
        "eng",
        "--email",
        "a@example.com",
    )
    assert code == 0, out
    [(hashed,)] = db_rows(config, "select password_hash from users")
    assert hashed.startswith("$argon2id$") and "first password 01" not in hashed
    code, out = bastion(config, "users", "add", "alice", "--password", "another password 02")
    assert code == 1 and "already exists" in out
    assert "eng" in bastion(config, "users", "list")[1]
    assert bastion(config, "users", "passwd", "alice", "--password", "second password 03")[0] == 0
    [(changed,)] = db_rows(config, "select password_hash from users")
    assert changed != hashed
    assert bastion(config, "users", "remove", "alice")[0] == 0
    assert bastion(config, "users", "remove", "alice")[0] == 1


def test_users_add_generates_a_password_when_left_empty(config: Path) -> None:
    code, out = bastion(config, "users", "add", "bob", input="\n")
    assert code == 0, out
    assert re.search(r"password\s+\S{16,}\s+\(shown once\)", out)


def test_a_short_password_is_refused_before_anything_changes(config: Path) -> None:
    """login.min_password_length (default 15, NIST SP 800-63B-4 §3.1.1.2), typed or given."""
    code, out = bastion(config, "users", "add", "eve", "--password", "x")
    assert code == 2 and "has 1 characters; at least 15" in out
    code, out = bastion(config, "users", "add", "eve", input="short-pw\n")
    assert code == 2 and "at least 15" in out
    assert not (config.parent / "data" / "bastion.db").exists()
    assert bastion(config, "users", "add", "eve", "--password", "a long enough pass")[0] == 0
    [(before,)] = db_rows(config, "select password_hash from users")
    code, out = bastion(config, "users", "passwd", "eve", "--password", "0123456789abcd")
    assert code == 2 and "has 14 characters" in out
    assert db_rows(config, "select password_hash from users") == [(before,)]


def test_a_generated_password_is_not_held_to_the_length_rule(tmp_path: Path) -> None:
    """Generated passwords are random, not chosen: a longer login.min_password_length than
    their 22 characters must not refuse them."""
    config = tmp_path / "long.toml"
    config.write_text(
        f'issuer = "http://127.0.0.1:8123"\ndata_dir = "{tmp_path / "data"}"\n'
        'secret_key = "cli-test-secret-key-long-enough-0123456789"\n'
        "[login]\nmin_password_length = 40\n"
    )
    code, out = bastion(config, "users", "add", "gen", input="\n")
    assert code == 0 and "shown once" in out, out
    code, out = bastion(config, "users", "add", "typed", "--password", "x" * 39)
    assert code == 2 and "at least 40" in out


def test_a_typed_password_is_asked_twice(config: Path) -> None:
    code, out = bastion(
        config, "users", "add", "fay", input="a long enough pass\nnot the same one\n"
    )
    assert code == 2 and "the two passwords differ" in out
    assert not (config.parent / "data" / "bastion.db").exists()
    code, out = bastion(config, "users", "add", "fay", input="a long enough pass\n" * 2)
    assert code == 0, out
    assert "shown once" not in out
    [(before,)] = db_rows(config, "select password_hash from users")
    code, out = bastion(
        config, "users", "passwd", "fay", input="new long password\nnew long passw0rd\n"
    )
    assert code == 2 and "differ" in out
    assert db_rows(config, "select password_hash from users") == [(before,)]
    assert bastion(config, "users", "passwd", "fay", input="new long password\n" * 2)[0] == 0


def test_keys_rotate_and_list(config: Path) -> None:
    code, out = bastion(config, "keys", "rotate", "--now")
    assert code == 0, out
    kid = out.split()[-1]
    code, out = bastion(config, "keys", "list")
    assert code == 0 and kid in out


def test_invalid_configuration_names_the_setting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('issuer = "http://auth.example.com"\n')
    result = runner.invoke(app, ["clients", "list", "--config", str(bad)])
    assert result.exit_code == 2
    assert "issuer" in result.output and "https" in result.output


def test_missing_configuration_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["clients", "list", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_keys_rotate_refuses_an_unsupported_alg_naming_the_supported_ones(config: Path) -> None:
    """`--alg HS256` printed a traceback; it is a usage error (exit 2) listing the algorithms,
    and nothing is created."""
    result = runner.invoke(app, ["keys", "rotate", "--alg", "HS256", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "HS256" in result.output
    for alg in ("ES256", "Ed25519", "EdDSA", "RS256"):
        assert alg in result.output
    assert "Traceback" not in result.output
    assert not (config.parent / "data").exists()
    code, out = bastion(config, "keys", "rotate", "--alg", "Ed25519", "--now")
    assert code == 0, out


async def test_rotate_keys_refuses_an_unsupported_alg_before_opening_anything(
    config: Path,
) -> None:
    """The library call says what to use instead (the CLI prints it as an error)."""
    from bastion.authserver.admin import AdminError, rotate_keys
    from bastion.config import load_settings

    with pytest.raises(AdminError) as refused:
        await rotate_keys(load_settings(config), alg="HS256")
    assert str(refused.value).startswith(
        "cannot sign with 'HS256': use one of ES256, Ed25519, EdDSA, RS256"
    )
    assert not (config.parent / "data").exists()
