"""Lists show whole values (piped too, where a terminal would have cut them at 80 columns),
``--json`` on every list, and times as dates with how far away they are."""

from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from bastion.cli.display import duration, when
from bastion.cli.main import app

runner = CliRunner()
LONG_ID = (
    "a-client-identifier-far-longer-than-any-terminal-column-0123456789-abcdefghijklmnopqrstuvwxyz"
)


def bastion(config: Path, *args: str) -> str:
    result = runner.invoke(app, [*args, "--config", str(config)])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_piped_list_never_cuts_an_id(config: Path) -> None:
    bastion(
        config, "clients", "add", "--name", "Long", "--client-id", LONG_ID,
        "--redirect-uri", "http://127.0.0.1/callback",
    )  # fmt: skip
    assert LONG_ID in bastion(config, "clients", "list")
    assert "…" not in bastion(config, "clients", "list")


def test_every_list_has_json(config: Path) -> None:
    bastion(config, "keys", "rotate")
    for command in (["clients"], ["users"], ["keys"], ["access"], ["grants"]):
        parsed = json.loads(bastion(config, *command, "list", "--json"))
        assert isinstance(parsed, list), command
    key, *_ = json.loads(bastion(config, "keys", "list", "--json"))
    assert set(key) == {"kid", "alg", "activates_at", "retire_at"}
    assert isinstance(key["activates_at"], int)


def test_keys_list_shows_dates_not_epoch_seconds(config: Path) -> None:
    bastion(config, "keys", "rotate")
    key, *_ = json.loads(bastion(config, "keys", "list", "--json"))
    shown = bastion(config, "keys", "list")
    assert str(key["activates_at"]) not in shown
    assert time.strftime("%Y-%m-%dT", time.localtime(key["activates_at"])) in shown
    assert " ago)" in shown or "(in " in shown


def test_times_read_as_people_say_them() -> None:
    assert duration(552) == "9m 12s"
    assert duration(2 * 86400 + 3 * 3600 + 5) == "2d 3h"
    assert duration(0) == "0s"
    assert when(1_000_600, now=1_000_000).endswith("(in 10m)")
    assert when(1_000_000, now=1_000_600).endswith("(10m ago)")
    assert when(None, never="never") == "never"
