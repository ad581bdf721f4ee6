"""`bastion audit`: filters, JSON lines, refusals of unknown names, types and times, and the
operator named on every change made from the command line."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

from tests.cli.conftest import bastion

PASSWORD = "pw-123456-long-enough"


def _lines(config: Path, *args: str) -> list[dict[str, object]]:
    code, out = bastion(config, "audit", "--json", *args)
    assert code == 0, out
    return [json.loads(line) for line in out.splitlines()]


def test_an_unknown_user_name_is_refused_clearly(config: Path) -> None:
    code, out = bastion(config, "audit", "--user", "nobody")
    assert code == 1
    assert "no user named 'nobody' (see `bastion users list`)" in out


def test_unknown_types_and_times_are_refused(config: Path) -> None:
    code, out = bastion(config, "audit", "--type", "sign_out")
    assert code == 2 and "no audit event type 'sign_out'; the types are: admin." in out
    code, out = bastion(config, "audit", "--since", "yesterday")
    assert code == 2 and "--since 'yesterday' is neither a duration" in out


def test_a_password_given_on_the_command_line_is_not_recorded(config: Path) -> None:
    assert bastion(config, "users", "add", "alice", "--password", PASSWORD)[0] == 0
    assert bastion(config, "users", "passwd", "alice", "--password", PASSWORD + "2")[0] == 0
    code, out = bastion(config, "audit", "--json")
    assert code == 0 and PASSWORD not in out


def test_operators_changes_name_the_operator_and_the_target(config: Path) -> None:
    assert bastion(config, "users", "add", "alice", "--password", PASSWORD)[0] == 0
    assert bastion(config, "users", "add", "bob", "--password", PASSWORD)[0] == 0
    assert bastion(config, "users", "groups", "alice", "--add", "ops")[0] == 0
    assert bastion(config, "users", "disable", "bob")[0] == 0
    code, out = bastion(
        config,
        "clients",
        "add",
        "--name",
        "robot",
        "--confidential",
        "--grant",
        "client_credentials",
        "--client-id",
        "robot",
    )
    assert code == 0, out
    assert bastion(config, "clients", "rotate-secret", "robot")[0] == 0
    assert bastion(config, "clients", "remove", "robot")[0] == 0
    lines = _lines(config)
    assert [line["type"] for line in lines] == [
        "admin.user_added",
        "admin.user_added",
        "admin.user_groups_changed",
        "admin.user_disabled",
        "admin.client_added",
        "admin.client_secret_rotated",
        "admin.client_removed",
    ]
    assert {line["actor"] for line in lines} == {f"cli:{getpass.getuser()}"}
    assert lines[2]["target"]["name"] == "alice"  # type: ignore[index]
    assert lines[2]["detail"] == {"username": "alice", "added": ["ops"], "removed": []}
    assert lines[4]["client_id"] == "robot"


def test_filters_by_user_client_type_and_time(config: Path) -> None:
    assert bastion(config, "users", "add", "alice", "--password", PASSWORD)[0] == 0
    assert bastion(config, "users", "add", "bob", "--password", PASSWORD)[0] == 0
    code, out = bastion(
        config,
        "clients",
        "add",
        "--name",
        "app",
        "--client-id",
        "app",
        "--redirect-uri",
        "http://127.0.0.1:9/cb",
    )
    assert code == 0, out
    alice = _lines(config, "--user", "alice")
    assert [(line["type"], line["target"]["name"]) for line in alice] == [  # type: ignore[index]
        ("admin.user_added", "alice")
    ]
    assert [line["type"] for line in _lines(config, "--client", "app")] == ["admin.client_added"]
    assert len(_lines(config, "--type", "admin.user_*")) == 2
    assert len(_lines(config, "--type", "admin.client_added", "--type", "admin.user_added")) == 3
    assert len(_lines(config, "--since", "1h")) == 3
    assert _lines(config, "--since", "2999-01-01T00:00:00Z") == []
    newest = _lines(config, "--limit", "1")
    assert [line["type"] for line in newest] == ["admin.client_added"]
    code, out = bastion(config, "audit", "--user", "alice")
    assert code == 0 and "admin.user_added" in out and "alice" in out
