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

import shlex
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any, Protocol

import platformdirs
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from bastion.client import Authorizer, ClientError, ClientSettings
from bastion.client.browser import OpenUrl, open_in_browser
from bastion.client.discovery import bearer_challenge
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


class _Answer(Protocol):
    """What :func:`step_up_notice` reads of a response (httpx and the SDK's httpx2 alike)."""

    status_code: int
    headers: Any


def step_up_notice(
    url: str,
    *,
    doing: str,
    again: str,
    no_browser: bool,
    client_config: Path | None,
    registry: bool = False,
) -> Callable[[Any], Awaitable[None]]:
    """A response hook that says, once, why a second authorization follows a 403
    ``insufficient_scope`` (RFC 6750 §3.1; MCP "Step-Up Authorization Flow"): which scope the
    server needs ``doing`` what; with ``--no-browser``, the ``bastion token`` command that gets
    it where a browser is at hand, then ``again``."""
    told: list[bool] = []

    async def notice(response: _Answer) -> None:
        if response.status_code != 403 or told:
            return
        challenge = bearer_challenge(response.headers.get_list("www-authenticate"))
        if challenge is None or challenge.error != "insufficient_scope" or not challenge.scope:
            return
        told.append(True)
        scopes = " ".join(challenge.scope)
        err.print(
            f"the server needs scope {scopes} {doing} (HTTP 403 insufficient_scope); "
            "authorizing again for it (step-up)",
            markup=False,
            highlight=False,
        )
        if no_browser:
            command = ["bastion", "token", url, *(["--registry"] if registry else [])]
            for scope in challenge.scope:
                command += ["--scope", scope]
            if client_config is not None:
                command += ["--client-config", str(client_config)]
            err.print(
                "open the URL below in a browser, or instead run where a browser is at hand:\n"
                f"  {shlex.join(command)}\nand {again}",
                markup=False,
                highlight=False,
            )

    return notice


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
    "step_up_notice",
]
