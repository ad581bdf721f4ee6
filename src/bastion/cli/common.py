"""What every ``bastion`` command shares: the consoles, the ``--config`` option, loading the
settings and running a library coroutine with operator-readable failures."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from bastion.config import Settings, load_settings

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML configuration file (see docs/configuration.md)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def settings_or_exit(config: Path | None, **overrides: Any) -> Settings:
    """Load settings, turning configuration mistakes into a clear message and exit code 2."""
    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except FileNotFoundError as exc:
        err.print(f"[red]error:[/red] {exc}")
    except ValidationError as exc:
        err.print("[red]error:[/red] the configuration is not valid:")
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"])
            err.print(f"  {where}: {e['msg']}")
    raise typer.Exit(2)


def run(coro: Any) -> Any:
    """Run a library coroutine; AdminError-style failures print and exit 1."""
    from bastion.authserver.admin import AdminError
    from bastion.identity.local import UserExistsError
    from bastion.oauth.errors import OAuthError

    try:
        return asyncio.run(coro)
    except (AdminError, UserExistsError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except OAuthError as exc:
        err.print(f"[red]error:[/red] {exc.description}")
        raise typer.Exit(1) from None


def print_json(data: object) -> None:
    """Machine-readable output: plain JSON on standard output."""
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


__all__ = ["ConfigOption", "JsonOption", "console", "err", "print_json", "run", "settings_or_exit"]
