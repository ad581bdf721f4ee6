"""``[logging]``: wrong values stop ``bastion serve`` before it starts, with the setting's name;
the command line, the file and the environment reach worker processes the same way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.config import Settings
from bastion.config.loading import export_log_settings, settings_from_environment
from bastion.serve.commands import user_id_policy

runner = CliRunner()


def _config(tmp_path: Path, logging: str) -> Path:
    path = tmp_path / "bastion.toml"
    path.write_text(
        f'issuer = "http://127.0.0.1:8123"\ndata_dir = "{tmp_path / "data"}"\n[logging]\n{logging}'
    )
    return path


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ('format = "xml"', "logging.format"),
        ('user_ids = "sha1"', "logging.user_ids"),
        ('level = "loud"', "logging.level"),
        (
            "acess_log = false",
            "logging.acess_log: unknown setting; did you mean 'logging.access_log'?",
        ),
    ],
)
def test_a_wrong_logging_setting_stops_serve_and_names_it(
    tmp_path: Path, line: str, said: str
) -> None:
    result = runner.invoke(app, ["serve", "--config", str(_config(tmp_path, line))])
    assert result.exit_code == 2, result.output
    assert said in result.output
    assert not (tmp_path / "data").exists()


def test_a_wrong_log_format_option_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path, "")
    result = runner.invoke(app, ["serve", "--config", str(config), "--log-format", "xml"])
    assert result.exit_code == 2
    assert "--log-format" in result.output


def test_the_defaults_are_text_info_hashed_with_an_access_log() -> None:
    config = Settings().logging
    assert (config.format, config.level, config.user_ids, config.access_log) == (
        "text",
        "info",
        "hash",
        True,
    )


def test_workers_get_the_logging_settings_of_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """What --log-format and --log-level changed reaches worker processes through the
    environment they read their settings from."""
    # Set, then removed: monkeypatch restores what was there (nothing) after the test.
    for name in ("FORMAT", "LEVEL", "USER_IDS", "ACCESS_LOG"):
        monkeypatch.setenv(f"BASTION_LOGGING__{name}", "")
        monkeypatch.delenv(f"BASTION_LOGGING__{name}")
    monkeypatch.delenv("BASTION_CONFIG_FILE", raising=False)
    settings = Settings()
    settings.logging.format = "json"
    settings.logging.level = "warning"
    settings.logging.user_ids = "omit"
    settings.logging.access_log = False
    export_log_settings(settings)
    assert settings_from_environment().logging == settings.logging


def test_logging_hash_key_makes_digests_match_without_the_secret_key(tmp_path: Path) -> None:
    """A gateway host given logging.hash_key and no secret_key hashes a person as the
    authorization server does; without the shared key, two secret keys give two digests."""
    key = "log-digest-key-shared-by-every-host-0123"
    server = Settings(
        data_dir=tmp_path / "as",
        secret_key="the-authorization-servers-secret-key-0123",
        logging={"hash_key": key},
    )
    gateway = Settings(data_dir=tmp_path / "gw", logging={"hash_key": key})
    assert user_id_policy(server).render("alice") == user_id_policy(gateway).render("alice")
    assert not (tmp_path / "gw" / "secret.key").exists()  # nothing made on the gateway host
    unkeyed = Settings(data_dir=tmp_path / "other", secret_key="another-secret-key-0123456789abcd")
    assert user_id_policy(unkeyed).render("alice") != user_id_policy(server).render("alice")


def test_a_short_logging_hash_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="hash_key"):
        Settings(logging={"hash_key": "too short"})


def test_the_hash_key_is_not_handed_to_workers_through_the_command_line_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """export_log_settings hands workers what the command line may change; the key would be
    written as its mask ("**********"), so it stays with the settings they read anyway."""
    # Set, then removed: monkeypatch restores what was there (nothing) after the test.
    for name in ("FORMAT", "LEVEL", "USER_IDS", "ACCESS_LOG", "HASH_KEY"):
        monkeypatch.setenv(f"BASTION_LOGGING__{name}", "")
        monkeypatch.delenv(f"BASTION_LOGGING__{name}")
    export_log_settings(Settings(logging={"hash_key": "log-digest-key-shared-by-every-host-0123"}))
    assert "BASTION_LOGGING__HASH_KEY" not in os.environ
    assert os.environ["BASTION_LOGGING__USER_IDS"] == "hash"
