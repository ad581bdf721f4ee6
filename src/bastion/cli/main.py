"""``bastion``: serve, quickstart, and administration commands."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from bastion import __version__
from bastion.cli import client_commands
from bastion.cli.client_context import ClientConfigOption
from bastion.config import Settings, SigningAlg, load_settings

app = typer.Typer(
    name="bastion",
    help="OAuth 2.1 for the Model Context Protocol: authorization server, gateway, registry, "
    "client.",
    no_args_is_help=True,
    add_completion=False,
)
clients_app = typer.Typer(help="Pre-registered OAuth clients.", no_args_is_help=True)
users_app = typer.Typer(
    help="Local users who sign in to the authorization server.", no_args_is_help=True
)
keys_app = typer.Typer(help="Access-token signing keys.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
app.add_typer(clients_app, name="clients")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
registry_app = typer.Typer(
    help="The private MCP registry (generic registry API v0.1 behind OAuth).", no_args_is_help=True
)
app.add_typer(registry_app, name="registry")

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML configuration file (see docs/configuration.md)."),
]

LogLevelOption = Annotated[
    Literal["debug", "info", "warning", "error"],
    typer.Option(help="Log level; above info there is no access log."),
]


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

    try:
        return asyncio.run(coro)
    except (AdminError, UserExistsError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes (share the database).")] = 1,
    log_level: LogLevelOption = "info",
) -> None:
    """Run the authorization server."""
    from bastion.serve import run_server

    settings = settings_or_exit(config, host=host, port=port)
    run_server(settings, config_file=config, workers=workers, log_level=log_level)


@app.command()
def gateway(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    log_level: LogLevelOption = "info",
) -> None:
    """Run the gateway: OAuth in front of the MCP servers in \\[\\[gateway.upstreams]]."""
    from bastion.gateway.app import run_gateway

    settings = settings_or_exit(config)
    if host is not None:
        settings.gateway.host = host
    if port is not None:
        settings.gateway.port = port
    if not settings.gateway.upstreams:
        err.print(
            "[red]error:[/red] no upstreams configured; add \\[\\[gateway.upstreams]] entries "
            "(name, path, and url or command) to the configuration file"
        )
        raise typer.Exit(2)
    run_gateway(settings, log_level=log_level, config_file=config)


@app.command()
def quickstart(
    data_dir: Annotated[Path, typer.Option(help="Where the quickstart keeps its data.")] = Path(
        "bastion-data"
    ),
    port: Annotated[int, typer.Option(help="Port of the authorization server.")] = 8000,
) -> None:
    """Set up a data directory (config, admin user) on first run and start everything."""
    from bastion.logs import configure_logging
    from bastion.private_files import warn_loose_modes
    from bastion.quickstart import listeners, prepare, write_config
    from bastion.serve import serve_together

    prepared = run(prepare(write_config(data_dir, port)))
    settings = settings_or_exit(prepared.config_file)
    rows = [
        ("Authorization server", settings.issuer),
        ("Metadata", f"{settings.issuer}/.well-known/oauth-authorization-server"),
    ]
    for upstream in settings.gateway.upstreams if settings.gateway.enabled else []:
        rows.append((f"MCP server {upstream.name}", str(upstream.resource)))
    if settings.registry.enabled:
        from bastion.registry.app import registry_paths

        rows.append(("MCP registry", registry_paths(settings)[0]))
    rows.append(("Configuration", str(prepared.config_file)))
    if prepared.admin_password:
        rows.append(
            (
                "Admin user",
                f"[bold]admin[/bold] / [bold]{prepared.admin_password}[/bold]  (shown once; "
                "change it with `bastion users passwd admin`)",
            )
        )
    else:
        rows.append(("Admin user", "admin (password set on first run)"))
    width = max(len(label) for label, _ in rows) + 2
    console.rule("[bold]bastion quickstart")
    for label, value in rows:
        console.print(f"{label:<{width}}{value}")
    console.print(
        "Add the MCP server to VS Code or the MCP Inspector: see README.md, 'What you see'. "
        "Stop with Ctrl-C."
    )
    console.rule()
    configure_logging("info")
    warn_loose_modes(settings, prepared.config_file)
    asyncio.run(serve_together(listeners(settings), trusted_proxies=settings.trusted_proxies))


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply database migrations (serve does this on start too)."""
    from bastion.authserver.admin import database

    async def go() -> None:
        async with database(settings_or_exit(config)):
            pass

    run(go())
    console.print("database is up to date")


@clients_app.command("add")
def clients_add(
    name: Annotated[str, typer.Option(help="Name shown on the consent page.")],
    redirect_uri: Annotated[
        list[str] | None, typer.Option("--redirect-uri", help="Allowed redirect URI (repeat).")
    ] = None,
    client_id: Annotated[str | None, typer.Option(help="Client id (default: random).")] = None,
    confidential: Annotated[
        bool, typer.Option("--confidential/--public", help="Issue a client secret.")
    ] = False,
    grant: Annotated[
        list[str] | None,
        typer.Option(
            "--grant", help="authorization_code, refresh_token, client_credentials (repeat)."
        ),
    ] = None,
    scope: Annotated[
        str | None, typer.Option(help="Space-separated scopes it may ask for.")
    ] = None,
    auth_method: Annotated[
        str | None, typer.Option(help="Token endpoint auth method (default by kind).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Pre-register a client. A secret is printed once and stored only as a hash."""
    from bastion.authserver.admin import add_client
    from bastion.oauth.errors import OAuthError

    grants = grant or (
        ["client_credentials"]
        if confidential and not redirect_uri
        else ["authorization_code", "refresh_token"]
    )
    try:
        created = run(
            add_client(
                settings_or_exit(config),
                client_id=client_id,
                name=name,
                redirect_uris=redirect_uri or [],
                confidential=confidential,
                grant_types=grants,
                scope=scope,
                auth_method=auth_method,
            )
        )
    except OAuthError as exc:
        err.print(f"[red]error:[/red] {exc.description}")
        raise typer.Exit(1) from None
    console.print(f"client_id      {created.client.client_id}")
    if created.secret:
        console.print(f"client_secret  {created.secret}")
        console.print("[yellow]Store the secret now: it is not shown again.[/yellow]")


@clients_app.command("list")
def clients_list(config: ConfigOption = None) -> None:
    """List registered clients."""
    from bastion.authserver.admin import list_clients

    table = Table("client_id", "name", "origin", "auth", "grants")
    for c in run(list_clients(settings_or_exit(config))):
        table.add_row(
            c.client_id,
            c.metadata.client_name or "",
            c.origin,
            c.metadata.token_endpoint_auth_method,
            " ".join(c.metadata.grant_types),
        )
    console.print(table)


@clients_app.command("show")
def clients_show(client_id: str, config: ConfigOption = None) -> None:
    """Show one client's registration as JSON."""
    from bastion.authserver.admin import get_client

    c = run(get_client(settings_or_exit(config), client_id))
    data = {"client_id": c.client_id, "origin": c.origin, **c.metadata.public_dict()}
    console.print_json(json.dumps(data))


@clients_app.command("remove")
def clients_remove(client_id: str, config: ConfigOption = None) -> None:
    """Delete a client."""
    from bastion.authserver.admin import remove_client

    run(remove_client(settings_or_exit(config), client_id))
    console.print(f"removed {client_id}")


@clients_app.command("rotate-secret")
def clients_rotate_secret(client_id: str, config: ConfigOption = None) -> None:
    """Issue a new secret for a confidential client; the old one stops working."""
    from bastion.authserver.admin import rotate_client_secret

    secret = run(rotate_client_secret(settings_or_exit(config), client_id))
    console.print(f"client_secret  {secret}")
    console.print("[yellow]Store the secret now: it is not shown again.[/yellow]")


def _users(config: Path | None) -> Any:
    from bastion.authserver.admin import database
    from bastion.identity.local import LocalUsers

    return database(settings_or_exit(config)), LocalUsers


@users_app.command("add")
def users_add(
    username: str,
    password: Annotated[
        str | None, typer.Option(help="Password (default: prompt; empty generates one).")
    ] = None,
    email: Annotated[str | None, typer.Option()] = None,
    group: Annotated[list[str] | None, typer.Option("--group", help="Group (repeat).")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an administrator.")] = False,
    config: ConfigOption = None,
) -> None:
    """Create a local user."""
    from bastion.identity.passwords import generate_password

    generated = False
    if password is None:
        password = typer.prompt(
            "Password (empty to generate)", default="", hide_input=True, show_default=False
        )
    if not password:
        password, generated = generate_password(), True
    db_cm, local = _users(config)

    async def go() -> None:
        async with db_cm as db:
            await local(db).add(username, password, email=email, groups=group, is_admin=admin)

    run(go())
    console.print(f"user {username} created")
    if generated:
        console.print(f"password  {password}  [yellow](shown once)[/yellow]")


@users_app.command("list")
def users_list(config: ConfigOption = None) -> None:
    """List local users."""
    db_cm, local = _users(config)

    async def go() -> list[Any]:
        async with db_cm as db:
            found: list[Any] = await local(db).list()
            return found

    table = Table("username", "email", "groups", "admin")
    for u in run(go()):
        table.add_row(u.username, u.email or "", " ".join(u.groups), "yes" if u.is_admin else "")
    console.print(table)


@users_app.command("remove")
def users_remove(username: str, config: ConfigOption = None) -> None:
    """Delete a local user, their sessions and consents."""
    db_cm, local = _users(config)

    async def go() -> bool:
        async with db_cm as db:
            removed: bool = await local(db).remove(username)
            return removed

    if not run(go()):
        err.print(f"[red]error:[/red] no user {username!r}; see `bastion users list`")
        raise typer.Exit(1)
    console.print(f"removed {username}")


@users_app.command("passwd")
def users_passwd(
    username: str,
    password: Annotated[str | None, typer.Option(help="New password (default: prompt).")] = None,
    config: ConfigOption = None,
) -> None:
    """Set a local user's password."""
    if password is None:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    db_cm, local = _users(config)

    async def go() -> bool:
        async with db_cm as db:
            changed: bool = await local(db).set_password(username, password)
            return changed

    if not run(go()):
        err.print(f"[red]error:[/red] no user {username!r}; see `bastion users list`")
        raise typer.Exit(1)
    console.print(f"password of {username} changed")


@keys_app.command("rotate")
def keys_rotate(
    now: Annotated[
        bool, typer.Option("--now", help="Sign with the new key at once (no pre-publication).")
    ] = False,
    alg: Annotated[
        SigningAlg | None,
        typer.Option(help="Algorithm of the new key (default: tokens.signing_alg)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Add a new signing key; old keys stay published until their tokens expire."""
    from bastion.authserver.admin import rotate_keys

    kid = run(rotate_keys(settings_or_exit(config), now=now, alg=alg))
    console.print(f"new key {kid}")


@keys_app.command("list")
def keys_list(config: ConfigOption = None) -> None:
    """List the published signing keys."""
    from bastion.authserver.admin import list_keys

    table = Table("kid", "alg", "activates_at", "retire_at")
    for k in run(list_keys(settings_or_exit(config))):
        table.add_row(k["kid"], k["alg"], str(k["activates_at"]), str(k["retire_at"] or ""))
    console.print(table)


@app.command()
def doctor(
    url: Annotated[
        str | None,
        typer.Argument(
            help="An MCP server or registry: diagnose its authorization discovery chain. "
            "Without it: check the configured identity providers."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document (with URL).")] = False,
    registry: Annotated[
        bool | None,
        typer.Option(
            "--registry/--mcp", help="Diagnose URL as a registry / an MCP server (default: auto)."
        ),
    ] = None,
    no_register: Annotated[
        bool,
        typer.Option(
            "--no-register",
            help="Never register a temporary client by DCR to test the resource parameter.",
        ),
    ] = False,
    client_config: ClientConfigOption = None,
    config: ConfigOption = None,
    upstream: Annotated[
        str | None,
        typer.Option(
            help="Check this identity provider of \\[\\[upstreams]]; default: all of them."
        ),
    ] = None,
) -> None:
    """Diagnose the OAuth discovery of an MCP server or registry, or the identity providers.

    With URL: walk the MCP authorization discovery chain (401, resource metadata,
    authorization server metadata, issuer, PKCE, registration routes, resource parameter,
    token endpoint) with a fix for each failing step. Without: check the configured identity
    providers. Exit code 1 when a check fails.
    """
    from bastion.cli.doctor_output import print_diagnosis, print_upstream_checks

    if url is not None:
        from bastion.cli.client_context import load_client_settings
        from bastion.client.doctor import Kind, diagnose

        if config is not None or upstream is not None:
            err.print("[red]error:[/red] --config and --upstream apply to `bastion doctor` alone")
            raise typer.Exit(2)
        kind: Kind = "auto" if registry is None else "registry" if registry else "mcp"
        settings = load_client_settings(client_config)
        found = asyncio.run(diagnose(url, settings, kind=kind, register_client=not no_register))
        print_diagnosis(console, found, as_json=as_json)
        raise typer.Exit(0 if found.ok else 1)
    from bastion.identity.doctor import check_upstream

    server_settings = settings_or_exit(config)
    names = [upstream] if upstream is not None else [u.name for u in server_settings.upstreams]
    if not names:
        console.print("no identity providers configured ([[upstreams]]); nothing to check")
        return
    failed = False
    for name in names:
        failed |= print_upstream_checks(console, name, run(check_upstream(server_settings, name)))
    if failed:
        raise typer.Exit(1)


# -- registry ---------------------------------------------------------------------------------


@registry_app.command("serve")
def registry_serve(
    config: ConfigOption = None,
    with_auth_server: Annotated[
        bool,
        typer.Option(
            "--with-auth-server",
            help="Also run the authorization server when the registry has its own origin.",
        ),
    ] = False,
) -> None:
    """Run the registry: on the authorization server's listener when registry.public_url is on
    the issuer's origin (the default <issuer>/registry), else on registry.host:registry.port."""
    from bastion.registry.app import run_registry

    settings = settings_or_exit(config)
    if not settings.registry.enabled:
        err.print("[red]error:[/red] the registry is off; set \\[registry] enabled = true")
        raise typer.Exit(2)
    run_registry(settings, with_auth_server=with_auth_server, config_file=config)


@registry_app.command("audit")
def registry_audit(
    since: Annotated[
        str | None, typer.Option(help="Only records from this RFC 3339 time on.")
    ] = None,
    subject: Annotated[str | None, typer.Option(help="Only records of this subject (sub).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines on standard output.")] = False,
    config: ConfigOption = None,
) -> None:
    """Show or export the registry's audit trail (who read or changed which server, when)."""
    from bastion.authserver.admin import database
    from bastion.registry.audit import export
    from bastion.registry.times import parse_rfc3339

    start = None
    if since is not None:
        try:
            start = parse_rfc3339(since)
        except ValueError as exc:
            err.print(f"[red]error:[/red] --since: {exc}")
            raise typer.Exit(2) from None

    async def go() -> list[dict[str, Any]]:
        async with database(settings_or_exit(config)) as db:
            return [line async for line in export(db, since=start, subject=subject)]

    lines = run(go())
    if as_json:
        for line in lines:
            typer.echo(json.dumps(line, separators=(",", ":")))
        return
    table = Table("time", "sub", "client_id", "action", "server", "version", "status", "result")
    for line in lines:
        table.add_row(
            line["time"],
            line["sub"] or "",
            line["client_id"] or "",
            line["action"],
            line["server"] or "",
            line["version"] or "",
            str(line["status"]),
            line["result"],
        )
    console.print(table)


@registry_app.command("import")
def registry_import(
    source: Annotated[
        str, typer.Argument(help="A file of server.json documents, or a registry URL.")
    ],
    search: Annotated[
        str | None, typer.Option(help="From a registry: only servers matching this search.")
    ] = None,
    all_versions: Annotated[
        bool, typer.Option("--all-versions", help="From a registry: every version, not the latest.")
    ] = False,
    group: Annotated[
        list[str] | None, typer.Option("--group", help="Audience of the imported entries (repeat).")
    ] = None,
    owner: Annotated[str, typer.Option(help="Subject the entries belong to.")] = "import",
    approve: Annotated[
        bool, typer.Option("--approve/--no-approve", help="Approve the imported entries.")
    ] = True,
    token_file: Annotated[
        Path | None,
        typer.Option(help="A file holding a Bearer token for the source registry."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Import server.json documents from a file or from another registry (following nextCursor)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from bastion.registry.importer import ImportSourceError, run_import

    settings = settings_or_exit(config)
    token = None
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            err.print(f"[red]error:[/red] --token-file: {exc}")
            raise typer.Exit(2) from None
    with Progress(
        TextColumn("[bold]import"), BarColumn(), MofNCompleteColumn(), console=err
    ) as bar:
        task = bar.add_task("import", total=None)

        def progress(done: int, total: int | None) -> None:
            if total is not None:
                bar.update(task, total=total)
            bar.update(task, completed=done)

        try:
            report = run(
                run_import(
                    settings,
                    source,
                    search=search,
                    latest_only=not all_versions,
                    owner=owner,
                    groups=tuple(group or ()),
                    approved=approve,
                    token=token,
                    progress=progress,
                )
            )
        except ImportSourceError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
    console.print(
        f"imported {report.imported}, already present {report.skipped}, "
        f"invalid {len(report.invalid)}"
    )
    for reason in report.invalid:
        err.print(f"  [yellow]invalid[/yellow] {reason}")
    if report.invalid:
        raise typer.Exit(1)


# -- registry client: search, show, and the local bridge (bastion proxy registry) --------------

from bastion.cli import registry_client  # noqa: E402

registry_app.command("search")(registry_client.search)
registry_app.command("show")(registry_client.show)
app.add_typer(registry_client.proxy_app, name="proxy")


client_commands.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
