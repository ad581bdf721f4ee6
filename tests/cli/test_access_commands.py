"""`bastion users disable|enable|groups`, `access`, `grants`, `registration-tokens`,
`clients update|list --json`, `clients add --resource|--jwks-file` against a real SQLite data
directory (a configuration with two resources)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.cli.conftest import bastion, write_config

runner = CliRunner()
LEDGER = "http://127.0.0.1:8123/mcp/ledger"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path,
        '[[resources]]\nuri = "http://127.0.0.1:8123/mcp/ledger"\nname = "ledger"\n'
        'scopes = ["mcp:tools", "ledger:write"]\n'
        '[[resources]]\nuri = "http://127.0.0.1:8123/mcp/notes"\nname = "notes"\n'
        'scopes = ["mcp:tools"]\n',
    )


def test_users_disable_enable_and_groups(config: Path) -> None:
    assert (
        bastion(
            config, "users", "add", "alice", "--password", "pw-123456-long-enough", "--group", "a"
        )[0]
        == 0
    )
    code, out = bastion(config, "users", "groups", "alice", "--add", "finance", "--remove", "a")
    assert code == 0 and "alice: finance" in out, out
    code, out = bastion(config, "users", "disable", "alice")
    assert code == 0 and "disabled" in out
    code, out = bastion(config, "users", "list", "--json")
    [alice] = json.loads(out)
    assert alice["disabled"] is True and alice["groups"] == ["finance"]
    assert "password_hash" not in alice and alice["has_password"] is True
    assert bastion(config, "users", "enable", "alice")[0] == 0
    code, out = bastion(config, "users", "disable", "nobody")
    assert code == 1 and "no user 'nobody'" in out


def test_access_allow_list_remove(config: Path) -> None:
    code, out = bastion(
        config, "access", "allow", "ledger", "group:finance", "--scope", "mcp:tools"
    )
    assert code == 0 and f"group:finance may obtain mcp:tools for {LEDGER}" in out, out
    code, out = bastion(config, "access", "list")
    assert code == 0 and "group:finance" in out
    assert "notes: no rule about people, open to every signed-in person" in out
    code, out = bastion(config, "access", "list", "ledger", "--json")
    assert json.loads(out) == [
        {"resource": LEDGER, "who": "group:finance", "scopes": ["mcp:tools"]}
    ]
    code, out = bastion(config, "access", "allow", "ledger", "team:x")
    assert code == 1 and "does not say who" in out
    code, out = bastion(config, "access", "allow", "ledger", "*", "--scope", "ledger:delete")
    assert code == 1 and "unknown scope ledger:delete" in out and "ledger:write" in out
    code, out = bastion(config, "access", "allow", "payroll", "*")
    assert code == 1 and "no resource 'payroll'" in out and "ledger" in out
    assert bastion(config, "access", "remove", "ledger", "group:finance")[0] == 0
    code, out = bastion(config, "access", "remove", "ledger", "group:finance")
    assert code == 1 and "no rule" in out


def test_machine_client_with_resources_and_update(config: Path) -> None:
    code, out = bastion(
        config,
        "clients",
        "add",
        "--name",
        "robot",
        "--confidential",
        "--client-id",
        "robot",
        "--resource",
        "ledger",
        "--scope",
        "mcp:tools",
    )
    assert code == 0, out
    code, out = bastion(config, "access", "list", "--json")
    assert {"resource": LEDGER, "who": "client:robot", "scopes": ["mcp:tools"]} in json.loads(out)
    code, out = bastion(config, "clients", "update", "robot", "--resource", "notes")
    assert code == 0 and "updated robot" in out
    rules = json.loads(bastion(config, "access", "list", "--json")[1])
    assert [r["resource"] for r in rules if r["who"] == "client:robot"] == [
        "http://127.0.0.1:8123/mcp/notes"
    ]
    [listed] = json.loads(bastion(config, "clients", "list", "--json")[1])
    assert listed["client_id"] == "robot" and listed["operator_approved"] is True


def test_a_machine_client_without_resources_is_told_it_has_none(config: Path) -> None:
    code, out = bastion(config, "clients", "add", "--name", "robot", "--confidential")
    assert code == 0 and "may not obtain tokens for any resource yet" in out


def test_clients_add_with_a_jwks_file(config: Path, tmp_path: Path) -> None:
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
    jwks = tmp_path / "robot.jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    code, out = bastion(
        config,
        "clients",
        "add",
        "--name",
        "signer",
        "--jwks-file",
        str(jwks),
        "--resource",
        "*",
    )
    assert code == 0 and "client_secret" not in out, out
    [client] = json.loads(bastion(config, "clients", "list", "--json")[1])
    assert client["token_endpoint_auth_method"] == "private_key_jwt"
    assert client["grant_types"] == ["client_credentials"]
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    code, out = bastion(config, "clients", "add", "--name", "x", "--jwks-file", str(bad))
    assert code == 1 and "cannot read a JWK Set" in out


def test_registration_tokens_add_list_remove(config: Path) -> None:
    code, out = bastion(
        config,
        "registration-tokens",
        "add",
        "--label",
        "ci",
        "--machine",
        "ledger=mcp:tools",
        "--uses",
        "2",
    )
    assert code == 0 and re.search(r"token\s+\S{20,}", out), out
    [token] = json.loads(bastion(config, "registration-tokens", "list", "--json")[1])
    assert token == {
        "label": "ci",
        "machine": [{"resource": LEDGER, "scopes": ["mcp:tools"]}],
        "expires_at": None,
        "uses_left": 2,
    }
    assert bastion(config, "registration-tokens", "remove", "ci")[0] == 0
    assert json.loads(bastion(config, "registration-tokens", "list", "--json")[1]) == []


def test_grants_list_and_revoke_need_a_target(config: Path) -> None:
    code, out = bastion(config, "grants", "list", "--json")
    assert code == 0 and json.loads(out) == []
    code, out = bastion(config, "grants", "revoke")
    assert code == 1 and "name a grant id, --user or --client" in out
    code, out = bastion(config, "grants", "revoke", "--user", "ghost")
    assert code == 1 and "no user 'ghost'" in out
