"""Which configuration an administration command uses, and how a broken one is reported.

A command must never work on a database nobody chose: without ``--config``, ``$BASTION_CONFIG``
or ``./bastion-data/bastion.toml`` it says where it looked and exits 2, creating nothing.
Syntax errors name the file, line and column; unknown keys name the closest known one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app

runner = CliRunner()


def write_config(path: Path, data_dir: Path, extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'issuer = "http://127.0.0.1:8123"\ndata_dir = "{data_dir}"\n'
        'secret_key = "cli-test-secret-key-long-enough-0123456789"\n' + extra
    )
    return path


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and no BASTION_* variables that name a configuration."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for name in ("BASTION_CONFIG", "BASTION_DATA_DIR", "BASTION_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return cwd


def test_without_a_configuration_an_admin_command_creates_nothing_and_says_where_it_looked(
    elsewhere: Path,
) -> None:
    for command in (["users", "list"], ["clients", "list"], ["keys", "list"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert "no configuration found" in result.output
        assert "--config" in result.output and "BASTION_CONFIG" in result.output
        assert "bastion-data/bastion.toml" in result.output
    assert list(elsewhere.iterdir()) == []


def test_the_quickstart_configuration_in_the_working_directory_is_found(elsewhere: Path) -> None:
    config = write_config(elsewhere / "bastion-data" / "bastion.toml", elsewhere / "bastion-data")
    added = runner.invoke(
        app, ["users", "add", "carol", "--config", str(config)], input="pw-0123456789-long\n" * 2
    )
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["users", "list"])
    assert listed.exit_code == 0, listed.output
    assert "carol" in listed.output


def test_bastion_config_names_the_file(elsewhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(elsewhere.parent / "conf" / "bastion.toml", elsewhere.parent / "data")
    runner.invoke(
        app, ["users", "add", "dave", "--config", str(config)], input="pw-0123456789-long\n" * 2
    )
    monkeypatch.setenv("BASTION_CONFIG", str(config))
    listed = runner.invoke(app, ["users", "list"])
    assert listed.exit_code == 0 and "dave" in listed.output, listed.output
    monkeypatch.setenv("BASTION_CONFIG", str(elsewhere / "missing.toml"))
    missing = runner.invoke(app, ["users", "list"])
    assert missing.exit_code == 2
    assert "missing.toml does not exist" in missing.output
    assert "$BASTION_CONFIG" in missing.output
    assert list(elsewhere.iterdir()) == []


def test_a_toml_syntax_error_names_file_line_and_column_without_a_traceback(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path / "bastion.toml", tmp_path / "data", "[login\nlocal_users = 1\n")
    result = runner.invoke(app, ["users", "list", "--config", str(config)])
    assert result.exit_code == 2
    assert f"{config}:4:7: not valid TOML" in result.output
    assert "   4 | [login" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_an_unknown_key_names_the_closest_known_one_at_every_level(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "bastion.toml",
        tmp_path / "data",
        'issur = "x"\n[login]\nmax_failure = 3\n[tokens]\nrefresh_ttl_typo = 1\n',
    )
    result = runner.invoke(app, ["users", "list", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert f"configuration {config} is not valid" in result.output
    assert "issur: unknown setting; did you mean 'issuer'?" in result.output
    assert "login.max_failure: unknown setting; did you mean 'login.max_failures'?" in (
        result.output
    )
    assert "tokens.refresh_ttl_typo: unknown setting" in result.output


def test_a_wrong_value_shows_what_was_given(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "bastion.toml", tmp_path / "data", "[login]\nmax_failures = 'many'\n"
    )
    result = runner.invoke(app, ["users", "list", "--config", str(config)])
    assert result.exit_code == 2
    assert "login.max_failures:" in result.output and "(got 'many')" in result.output


def test_client_toml_mistakes_are_told_the_same_way(tmp_path: Path) -> None:
    broken = tmp_path / "client.toml"
    broken.write_text("use_keyring = false\nstorage_path = \n")
    result = runner.invoke(
        app, ["whoami", "http://127.0.0.1:1/mcp", "--client-config", str(broken)]
    )
    assert result.exit_code == 2
    assert f"{broken}:2:16: not valid TOML" in result.output
    misspelt = tmp_path / "misspelt.toml"
    misspelt.write_text("use_keyrng = false\n")
    result = runner.invoke(
        app, ["whoami", "http://127.0.0.1:1/mcp", "--client-config", str(misspelt)]
    )
    assert result.exit_code == 2
    assert "use_keyrng: unknown setting; did you mean 'use_keyring'?" in result.output
