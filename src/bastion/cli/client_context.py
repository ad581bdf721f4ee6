"""What the client commands share: the client's configuration file, the authorizer they use, and
how a :class:`~bastion.client.errors.ClientError` reaches the user.

The client's settings come from a TOML file (``--client-config``, default ``client.toml`` in the
user's config directory) whose keys are those of :class:`~bastion.client.ClientSettings`::

    client_name = "mcp-bastion"
    preferred_issuers = ["https://auth.example.com"]

    [[pre_registered]]
    issuer = "https://auth.example.com"
    client_id = "nightly-agent"
    client_secret = "..."
    grant_type = "client_credentials"

    [static_headers]
    "https://legacy.example.com/mcp" = "Bearer static-token"
"""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any

import platformdirs
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from bastion.client import Authorizer, ClientError, ClientSettings
from bastion.client.browser import OpenUrl, open_in_browser
from bastion.client.storage import APP_NAME
from bastion.config_errors import describe_toml_error, describe_validation_error

err = Console(stderr=True, soft_wrap=True)

ClientConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--client-config",
        help="The client's TOML settings (default: client.toml in the user's config directory).",
    ),
]
NoBrowserOption = Annotated[
    bool,
    typer.Option(
        "--no-browser", help="Print the authorization URL instead of opening the browser."
    ),
]


def default_client_config() -> Path:
    """``client.toml`` in the user's config directory (next to the token file)."""
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "client.toml"


def load_client_settings(path: Path | None, **overrides: Any) -> ClientSettings:
    """The client's settings from ``path`` (or the default file when it exists), with
    ``overrides`` applied; mistakes print a clear message and exit with code 2."""
    chosen = path if path is not None else default_client_config()
    data: dict[str, Any] = {}
    if path is not None or chosen.exists():
        try:
            data = tomllib.loads(chosen.read_text())
        except FileNotFoundError:
            err.print(f"[red]error:[/red] client configuration {chosen} does not exist")
            raise typer.Exit(2) from None
        except tomllib.TOMLDecodeError as exc:
            for n, line in enumerate(describe_toml_error(chosen, exc)):
                err.print(("[red]error:[/red] " if n == 0 else "") + escape(line), highlight=False)
            raise typer.Exit(2) from None
        except OSError as exc:
            err.print(f"[red]error:[/red] cannot read client configuration {chosen}: {exc}")
            raise typer.Exit(2) from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ClientSettings.model_validate(data)
    except ValidationError as exc:
        err.print(f"[red]error:[/red] the client configuration {chosen} is not valid:")
        for line in describe_validation_error(exc, ClientSettings):
            err.print(f"  {escape(line)}", highlight=False)
        raise typer.Exit(2) from None


@asynccontextmanager
async def authorizer(
    settings: ClientSettings, *, no_browser: bool = False
) -> AsyncIterator[Authorizer]:
    """An :class:`Authorizer` with the default token store; the authorization URL is printed to
    stderr and, unless ``no_browser``, opened in the system browser."""
    opener = open_in_browser() if not no_browser else _print_only()
    async with Authorizer(settings, open_url=opener) as auth:
        yield auth


def _print_only() -> OpenUrl:
    async def opener(url: str) -> None:
        err.print(f"Open this URL in a browser to sign in:\n  {url}")

    return opener


@contextmanager
def client_errors() -> Iterator[None]:
    """Turn a :class:`ClientError` into its message (and discovery trace) and exit code 1."""
    try:
        yield
    except ClientError as exc:
        # Messages quote what servers sent: never read them as rich markup.
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        if exc.trace is not None and exc.trace.steps:
            err.print("discovery:")
            for line in exc.trace.lines():
                err.print(f"  {line}", markup=False, highlight=False)
            err.print("Run `bastion doctor URL` for a step-by-step diagnosis.")
        raise typer.Exit(1) from None


__all__ = [
    "ClientConfigOption",
    "NoBrowserOption",
    "authorizer",
    "client_errors",
    "default_client_config",
    "load_client_settings",
]
