"""The client side of registries behind OAuth: ``bastion registry search|show`` and
``bastion proxy registry`` (the local bridge for VS Code and the Copilot CLI).

Each signs in through bastion's client the first time (the browser flow, resource = the
registry URL) and reuses and refreshes the stored token afterwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bastion.cli.client_context import (
    ClientConfigOption,
    NoBrowserOption,
    authorizer,
    client_errors,
    load_client_settings,
)
from bastion.cli.common import checked_url
from bastion.cli.display import print_table
from bastion.client import ClientSettings
from bastion.client.local_ca import LocalCA, default_directory
from bastion.client.local_trust import TrustOutcome, TrustTarget, install, remove
from bastion.client.registry import LATEST, RegistryClient, ServerEntry
from bastion.client.registry_bridge import (
    DEFAULT_ORIGINS,
    DEFAULT_PORT,
    allowed_origin,
    run_bridge,
)
from bastion.oauth.redirect_uri import is_loopback_host

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
proxy_app = typer.Typer(
    help="Local bridges that add your token for clients that send none.", no_args_is_help=True
)

UrlArgument = Annotated[
    str,
    typer.Argument(
        help="The registry URL (its API is at URL/v0.1), e.g. https://h/registry.",
        callback=checked_url,
    ),
]
T = TypeVar("T")


def run_with_registry(
    settings: ClientSettings,
    url: str,
    no_browser: bool,
    work: Callable[[RegistryClient], Awaitable[T]],
) -> T:
    """Run ``work`` with a registry client (the user's tokens); errors print and exit 1."""

    async def go() -> T:
        async with (
            authorizer(settings, no_browser=no_browser) as auth,
            RegistryClient(url, auth) as registry,
        ):
            return await work(registry)

    with client_errors():
        return asyncio.run(go())


def _dump(document: object) -> None:
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


def search(
    url: UrlArgument,
    query: Annotated[
        str | None, typer.Argument(help="Only servers whose name or description contains this.")
    ] = None,
    all_pages: Annotated[
        bool, typer.Option("--all", help="Follow nextCursor through every page.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, max=100, help="Entries per page (registry default 30).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="The registry's JSON instead of a table.")
    ] = False,
    client_config: ClientConfigOption = None,
    no_browser: NoBrowserOption = False,
) -> None:
    """List the servers of a registry (latest versions) that you may see."""
    settings = load_client_settings(client_config)

    async def work(registry: RegistryClient) -> tuple[list[ServerEntry], str | None, object]:
        if all_pages:
            found = [e async for e in registry.iter_servers(search=query, limit=limit)]
            document = {
                "servers": [dict(e.document) for e in found],
                "metadata": {"count": len(found)},
            }
            return found, None, document
        page = await registry.list_servers(search=query, limit=limit)
        return page.servers, page.next_cursor, dict(page.document)

    entries, next_cursor, document = run_with_registry(settings, url, no_browser, work)
    if as_json:
        _dump(document)
        return
    table = Table("name", "version", "description", "status")
    for entry in entries:
        cells = (entry.name, entry.version, entry.description, entry.status or "")
        table.add_row(*(escape(c) for c in cells))  # the registry's text is not markup
    print_table(console, table)
    if next_cursor is not None:
        err.print(f"{len(entries)} shown; more on the next pages: add --all to list them all")


def show(
    url: UrlArgument,
    name: Annotated[str, typer.Argument(help="The server's name, e.g. io.example/weather.")],
    version: Annotated[str, typer.Argument(help="A version, or latest.")] = LATEST,
    as_json: Annotated[
        bool, typer.Option("--json", help="The whole ServerResponse (server and _meta).")
    ] = False,
    client_config: ClientConfigOption = None,
    no_browser: NoBrowserOption = False,
) -> None:
    """Show one server.json of a registry and its status there."""
    settings = load_client_settings(client_config)

    async def work(registry: RegistryClient) -> ServerEntry:
        return await registry.get(name, version)

    entry = run_with_registry(settings, url, no_browser, work)
    if as_json:
        _dump(dict(entry.document))
        return
    _dump(dict(entry.server))
    meta = entry.registry_meta
    if meta:
        table = Table("_meta", "value", title="registry status")
        for key, value in meta.items():
            shown = value if isinstance(value, str) else json.dumps(value)
            table.add_row(escape(key), escape(shown))
        print_table(console, table)


def _print_trust(ca: LocalCA, outcomes: list[TrustOutcome], *, adding: bool) -> None:
    for outcome in outcomes:
        mark = "[green]done[/green]" if outcome.done else "[yellow]not done[/yellow]"
        console.print(f"{mark} {escape(outcome.store)}: {escape(outcome.message)}")
        for step in outcome.steps:
            console.print(f"    {escape(step)}", highlight=False)
    if adding:
        console.print(
            f"Node.js programs (the Copilot CLI) read none of these: start them with "
            f"NODE_EXTRA_CA_CERTS={escape(str(ca.ca_path))}. Restart VS Code to use the new trust."
        )


@proxy_app.command("registry")
def proxy_registry(
    url: Annotated[
        str | None,
        typer.Argument(
            help="The registry URL (its API is at URL/v0.1), e.g. https://h/registry; "
            "not needed with --trust, --untrust or --ca-path alone."
        ),
    ] = None,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Local port (0: any free port).")
    ] = DEFAULT_PORT,
    host: Annotated[
        str, typer.Option(help="Loopback address to listen on: 127.0.0.1 or ::1.")
    ] = "127.0.0.1",
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-origin",
            help="A browser origin that may read the registry through the bridge (repeat; "
            f"never * or null). Default: {', '.join(DEFAULT_ORIGINS)}.",
        ),
    ] = None,
    plain_http: Annotated[
        bool,
        typer.Option(
            "--plain-http",
            help="Serve plain http instead of https. VS Code desktop and the Copilot CLI "
            "refuse it; only for clients that cannot trust the local CA.",
        ),
    ] = False,
    trust: Annotated[
        bool,
        typer.Option(
            "--trust",
            help="Install the local CA in this machine's trust stores (once), or print the "
            "commands that would; then serve if a URL is given.",
        ),
    ] = False,
    untrust: Annotated[
        bool, typer.Option("--untrust", help="Remove the local CA from those trust stores.")
    ] = False,
    ca_path: Annotated[
        bool, typer.Option("--ca-path", help="Print the local CA certificate's path.")
    ] = False,
    client_config: ClientConfigOption = None,
    no_browser: NoBrowserOption = False,
) -> None:
    """Serve a registry behind OAuth on loopback over https, adding your token, for clients
    that send none (VS Code's chat.mcp.gallery.serviceUrl, the Copilot CLI)."""
    if not is_loopback_host(host):
        err.print(
            f"[red]error:[/red] --host {escape(host)}: the bridge listens on loopback only "
            "(127.0.0.1 or ::1); it forwards requests with your token, so no other machine may "
            "use it"
        )
        raise typer.Exit(2)
    settings = load_client_settings(client_config)
    ca = LocalCA(settings.local_ca_dir or default_directory())
    with client_errors():
        origins = tuple(allowed_origin(o) for o in allow_origin) if allow_origin else None
        if ca_path:
            ca.ca_certificate()
            typer.echo(str(ca.ca_path))
        if trust or untrust:
            change = remove if untrust else install
            outcomes = change(ca, TrustTarget(home=Path.home()))
            _print_trust(ca, outcomes, adding=not untrust)
            done = any(o.done for o in outcomes)  # else only steps to follow: exit 1
            if untrust or (url is None and not done):
                raise typer.Exit(0 if done else 1)
    if url is None:
        if trust or ca_path:
            return
        err.print("[red]error:[/red] give the registry URL, e.g. https://h/registry")
        raise typer.Exit(2)

    def ready(bridge: str) -> None:
        console.print(f"Registry bridge for {escape(url)} at [bold]{bridge}[/bold]")
        console.print(f'VS Code settings.json: "chat.mcp.gallery.serviceUrl": "{bridge}"')
        console.print(f"Other clients: use {bridge} as the registry URL. Stop with Ctrl-C.")
        if plain_http:
            err.print("plain http: VS Code desktop and the Copilot CLI refuse this URL")
        else:
            console.print(
                "Its certificate is from your local CA: trust it once with "
                "`bastion proxy registry --trust`."
            )

    show_requests()

    async def work(registry: RegistryClient) -> None:
        await registry.ensure_token()  # sign in now, not during VS Code's first request
        await run_bridge(
            registry,
            host=host,
            port=port,
            allowed_origins=origins or DEFAULT_ORIGINS,
            ca_directory=None if plain_http else ca.directory,
            ready=ready,
        )

    try:
        run_with_registry(settings, url, no_browser, work)
    except KeyboardInterrupt:
        err.print("bridge stopped")


def show_requests() -> None:
    """Print each request the bridge answers (``12:00:01 GET /v0.1/servers?limit=1 -> 200``),
    so that a person sees VS Code or the Copilot CLI arrive."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    bridge_log = logging.getLogger("bastion.client.registry_bridge")
    bridge_log.addHandler(handler)
    bridge_log.setLevel(logging.INFO)
    bridge_log.propagate = False


__all__ = ["proxy_app", "proxy_registry", "run_with_registry", "search", "show", "show_requests"]
