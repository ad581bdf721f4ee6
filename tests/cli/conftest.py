"""Shared by the administration-command tests: a configuration over a SQLite data directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app

runner = CliRunner()


def write_config(tmp_path: Path, extra: str = "") -> Path:
    """``tmp_path/bastion.toml`` with its data directory ``tmp_path/data`` and ``extra`` TOML."""
    path = tmp_path / "bastion.toml"
    path.write_text(
        f'issuer = "http://127.0.0.1:8123"\ndata_dir = "{tmp_path / "data"}"\n'
        'secret_key = "cli-test-secret-key-long-enough-0123456789"\n' + extra
    )
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A configuration with no resources (tests that need some write their own)."""
    return write_config(tmp_path)


def bastion(config: Path, *args: str, input: str | None = None) -> tuple[int, str]:
    """Run ``bastion ARGS --config CONFIG`` in-process: exit code and output."""
    result = runner.invoke(app, [*args, "--config", str(config)], input=input)
    return result.exit_code, result.output
