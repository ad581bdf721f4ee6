"""What every ``bastion`` command shares: the consoles, the ``--config`` option, loading the
settings and running a library coroutine with operator-readable failures."""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from bastion.config import (
    CONFIG_VARIABLE,
    Settings,
    config_file_from_environment,
    environment_names_data,
    load_settings,
)
from bastion.config_errors import describe_toml_error, describe_validation_error

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML configuration file (see docs/configuration.md)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


QUICKSTART_CONFIG = Path("bastion-data") / "bastion.toml"


def find_config(explicit: Path | None) -> Path | None:
    """The configuration file: ``--config``, else ``$BASTION_CONFIG``, else
    ``./bastion-data/bastion.toml`` when it exists (where ``bastion quickstart`` writes it)."""
    if explicit is not None:
        return explicit
    named = config_file_from_environment()
    if named is not None:
        return named
    return QUICKSTART_CONFIG if QUICKSTART_CONFIG.is_file() else None


def settings_or_exit(config: Path | None, *, required: bool = True, **overrides: Any) -> Settings:
    """Load settings from the file :func:`find_config` finds, turning configuration mistakes into
    a clear message and exit code 2.

    ``required`` (administration commands): with no file found and no data location in the
    environment, say where bastion looked instead of working on an empty ``./bastion-data``."""
    path = find_config(config)
    if path is None and required and not environment_names_data():
        err.print(
            "[red]error:[/red] no configuration found. Looked for --config, "
            f"${CONFIG_VARIABLE} (not set) and {QUICKSTART_CONFIG} (not in {Path.cwd()}). "
            "Pass --config PATH/bastion.toml (quickstart writes bastion-data/bastion.toml in the "
            f"directory where it ran) or set {CONFIG_VARIABLE}.",
            markup=True,
            highlight=False,
        )
        raise typer.Exit(2)
    try:
        return load_settings(path, **{k: v for k, v in overrides.items() if v is not None})
    except FileNotFoundError as exc:
        source = f" (named by ${CONFIG_VARIABLE})" if config is None and path is not None else ""
        err.print(f"[red]error:[/red] {escape(str(exc))}{source}")
    except tomllib.TOMLDecodeError as exc:
        assert path is not None  # only a file can hold TOML
        for n, line in enumerate(describe_toml_error(path, exc)):
            prefix = "[red]error:[/red] " if n == 0 else ""
            err.print(prefix + escape(line), highlight=False)
    except ValidationError as exc:
        where = f" {path}" if path is not None else ""
        err.print(f"[red]error:[/red] the configuration{escape(where)} is not valid:")
        for line in describe_validation_error(exc, Settings):
            err.print(f"  {escape(line)}", highlight=False)
    raise typer.Exit(2)


def run(coro: Any) -> Any:
    """Run a library coroutine; AdminError-style failures print and exit 1."""
    from bastion.authserver.admin import AdminError
    from bastion.identity.local import UserExistsError
    from bastion.oauth.errors import OAuthError
    from bastion.tokens.cipher import SecretKeyError

    try:
        return asyncio.run(coro)
    except (AdminError, UserExistsError, SecretKeyError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except OAuthError as exc:
        err.print(f"[red]error:[/red] {exc.description}")
        raise typer.Exit(1) from None


def checked_url(value: str | None) -> str | None:
    """A typer callback for URL arguments: an http(s) URL with a host, or a usage error (exit 2)
    that says what the value looks like instead (``localhost:8001/mcp`` has no scheme)."""
    if value is None:
        return None
    parts = urlsplit(value)
    if "://" not in value:
        host = value.split("/", 1)[0].split(":", 1)[0].lower()
        local = host in ("localhost", "127.0.0.1", "[::1]") or host.startswith("127.")
        raise typer.BadParameter(
            f"{value!r} has no scheme; did you mean {'http' if local else 'https'}://{value} ?"
        )
    if parts.scheme.lower() not in ("http", "https"):
        raise typer.BadParameter(f"{value!r} is not an http or https URL")
    if not parts.hostname:
        raise typer.BadParameter(f"{value!r} names no host")
    return value


def print_json(data: object) -> None:
    """Machine-readable output: plain JSON on standard output."""
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


__all__ = [
    "CONFIG_VARIABLE",
    "ConfigOption",
    "JsonOption",
    "checked_url",
    "console",
    "err",
    "find_config",
    "print_json",
    "run",
    "settings_or_exit",
]
