"""``bastion``: serve, quickstart, and administration commands."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table

from bastion import __version__
from bastion.cli import admin_commands, audit_commands, client_commands
from bastion.cli.client_context import ClientConfigOption
from bastion.cli.common import (
    ConfigOption,
    JsonOption,
    checked_url,
    console,
    err,
    find_config,
    print_json,
    run,
    settings_or_exit,
)
from bastion.cli.display import print_table, when
from bastion.cli.help_style import StyledGroup
from bastion.config import SigningAlg

if TYPE_CHECKING:
    from bastion.registry.mirror import SyncReport

app = typer.Typer(
    name="bastion",
    help="OAuth 2.1 for the Model Context Protocol: authorization server, gateway, registry, "
    "client.",
    no_args_is_help=True,
    add_completion=False,
    cls=StyledGroup,
)
keys_app = typer.Typer(help="Access-token signing keys.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
admin_commands.register(app)
audit_commands.register(app)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
registry_app = typer.Typer(
    help="The private MCP registry (generic registry API v0.1 behind OAuth).", no_args_is_help=True
)
app.add_typer(registry_app, name="registry")

LogLevelOption = Annotated[
    Literal["debug", "info", "warning", "error"] | None,
    typer.Option(
        help="Log level (default: logging.level, info); above info there is no access log.",
        show_default=False,
    ),
]
LogFormatOption = Annotated[
    Literal["text", "json"] | None,
    typer.Option(
        help="text, or json: one JSON object per line (default: logging.format, text).",
        show_default=False,
    ),
]


@contextmanager
def port_errors(option: str, example: str) -> Iterator[None]:
    """A listener that cannot bind its port: one line saying which and what to do, exit 2."""
    from bastion.serve import METRICS_LISTENER, PortUnavailable

    try:
        yield
    except PortUnavailable as exc:
        if exc.name == METRICS_LISTENER:
            option, example = "metrics.listen", "BASTION_METRICS__LISTEN=127.0.0.1:9465"
        err.print(
            f"[red]error:[/red] {exc}. Stop the other program or choose another {option} "
            f"(e.g. {example}).",
            highlight=False,
        )
        raise typer.Exit(2) from None


def _print_version(value: bool) -> None:
    if value:
        console.print(__version__)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    """OAuth 2.1 for the Model Context Protocol: authorization server, gateway, registry,
    client."""


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
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Run the authorization server (with the registry, when it is on the issuer's origin)."""
    from bastion.serve import run_server

    config = find_config(config)
    settings = settings_or_exit(config, required=False, host=host, port=port)
    if log_format is not None:
        settings.logging.format = log_format
    with port_errors("--port", "bastion serve --port 9000"):
        run_server(settings, config_file=config, workers=workers, log_level=log_level)


@app.command()
def gateway(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Run the gateway: OAuth in front of the MCP servers in \\[\\[gateway.upstreams]]."""
    from bastion.serve import run_gateway

    config = find_config(config)
    settings = settings_or_exit(config, required=False)
    if log_format is not None:
        settings.logging.format = log_format
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
    with port_errors("--port", "bastion gateway --port 9001"):
        run_gateway(settings, log_level=log_level, config_file=config)


@app.command()
def quickstart(
    data_dir: Annotated[Path, typer.Option(help="Where the quickstart keeps its data.")] = Path(
        "bastion-data"
    ),
    port: Annotated[
        int | None,
        typer.Option(
            help="Port of the authorization server and the registry; the gateway listens on "
            "PORT+1 and the demo MCP server on PORT+2. Default 8000, or the port a data "
            "directory was set up with.",
            min=1,
            max=65533,
        ),
    ] = None,
) -> None:
    """Set up a data directory (config, admin user) on first run and start everything:
    the authorization server and registry on PORT, the gateway on PORT+1, the demo MCP server
    on PORT+2."""
    from bastion.quickstart import PortMismatch, addresses, planned_settings, prepare, write_config
    from bastion.serve import PortUnavailable, bind_listeners, run_quickstart

    try:
        planned = planned_settings(data_dir, port)
    except PortMismatch as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    try:
        for sock in bind_listeners(addresses(planned)):
            sock.close()
    except PortUnavailable as exc:
        first = planned.port
        err.print(f"[red]error:[/red] {exc}.", highlight=False)
        if (data_dir / "bastion.toml").exists():
            err.print(
                f"Is a quickstart of {data_dir} already running? Stop it, or set up another one "
                f"on other ports: bastion quickstart --data-dir {data_dir}-2 --port "
                f"{first + 1000} (make run PORT={first + 1000} DATA={data_dir}-2).",
                highlight=False,
            )
        else:
            err.print(
                f"Stop it, or pick other ports: bastion quickstart --port {first + 1000} (uses "
                f"{first + 1000}, {first + 1001} and {first + 1002}), or make run "
                f"PORT={first + 1000}.",
                highlight=False,
            )
        raise typer.Exit(2) from None
    prepared = run(prepare(write_config(data_dir, planned.port)))
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
    if settings.console.enabled:
        rows.append(("Web console", f"{settings.issuer}/admin"))
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
    with port_errors("--port", f"bastion quickstart --data-dir {data_dir}-2 --port 9000"):
        run_quickstart(settings, config_file=prepared.config_file)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply database migrations (serve does this on start too)."""
    from bastion.authserver.admin import database

    async def go() -> None:
        async with database(settings_or_exit(config)):
            pass

    run(go())
    console.print("database is up to date")


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


@keys_app.command("rekey")
def keys_rekey(config: ConfigOption = None) -> None:
    """Re-encrypt every stored secret under secret_key (after changing it; see
    docs/operations.md): what previous_secret_keys still opened is encrypted anew."""
    from bastion.authserver.admin import rekey_secrets

    counts = run(rekey_secrets(settings_or_exit(config)))
    for kind, count in counts.items():
        console.print(f"{kind}: {count} re-encrypted")
    console.print(
        "every stored secret is encrypted under secret_key now: remove previous_secret_keys "
        "from the configuration and restart the processes"
    )


@keys_app.command("list")
def keys_list(as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """List the published signing keys: when each signs and when it is retired."""
    from bastion.authserver.admin import list_keys

    found = run(list_keys(settings_or_exit(config)))
    if as_json:
        print_json([dataclasses.asdict(k) for k in found])
        return
    table = Table("kid", "alg", "signs from", "retired")
    for k in found:
        table.add_row(k.kid, k.alg, when(k.activates_at), when(k.retire_at, never="-"))
    print_table(console, table)


@app.command()
def doctor(
    url: Annotated[
        str | None,
        typer.Argument(
            help="An MCP server or registry: diagnose its authorization discovery chain. "
            "Without it: check the configured identity providers.",
            callback=checked_url,
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
        from bastion.doctor import Kind, diagnose

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
    from bastion.serve import run_registry

    config = find_config(config)
    settings = settings_or_exit(config, required=False)
    if not settings.registry.enabled:
        err.print("[red]error:[/red] the registry is off; set \\[registry] enabled = true")
        raise typer.Exit(2)
    with port_errors("port (or registry.port)", "in the configuration file"):
        run_registry(settings, with_auth_server=with_auth_server, config_file=config)


@registry_app.command("audit")
def registry_audit(
    since: Annotated[
        str | None, typer.Option(help="Only records from this RFC 3339 time on.")
    ] = None,
    subject: Annotated[
        str | None,
        typer.Option(help="Only records of this person: a user name, or a subject (sub)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines on standard output.")] = False,
    config: ConfigOption = None,
) -> None:
    """Show or export the registry's audit trail (who read or changed which server, when)."""
    from bastion.authserver.admin import database
    from bastion.registry.audit import export
    from bastion.registry.times import parse_rfc3339
    from bastion.store import users as user_rows

    start = None
    if since is not None:
        try:
            start = parse_rfc3339(since)
        except ValueError as exc:
            err.print(f"[red]error:[/red] --since: {exc}")
            raise typer.Exit(2) from None

    async def go() -> list[dict[str, Any]]:
        async with database(settings_or_exit(config)) as db:
            async with db.connect() as conn:
                people = {u.id: u.username for u in await user_rows.list_all(conn)}
            # Subjects are opaque user ids: a user name given for one means that user's id.
            wanted = next((i for i, name in people.items() if name == subject), subject)
            return [
                {**line, "user": people.get(line["sub"] or "")}
                async for line in export(db, since=start, subject=wanted)
            ]

    lines = run(go())
    if as_json:
        for line in lines:
            typer.echo(json.dumps(line, separators=(",", ":")))
        return
    table = Table(
        "time", "who", "client_id", "action", "server", "version", "status", "result", "request_id"
    )
    for line in lines:
        table.add_row(
            line["time"],
            line["user"] or line["sub"] or "",
            line["client_id"] or "",
            line["action"],
            line["server"] or "",
            line["version"] or "",
            str(line["status"]),
            line["result"],
            line["request_id"] or "",
        )
    print_table(console, table)


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


def _print_sync(report: SyncReport) -> None:
    if report.busy:
        console.print(f"{report.mirror}: another process is syncing it now; nothing done")
        return
    counts = ", ".join(f"{kind} {n}" for kind, n in report.counts().items())
    verb = "would change" if report.dry_run else "synced"
    console.print(f"{report.mirror}: {verb} ({report.pages} pages): {counts}")
    if not report.complete and report.error is None:
        console.print("  the listing continues at the next run (max_pages)")
    table = Table("change", "server", "version", "reason")
    for change in report.changes:
        if change.kind != "unchanged" and (report.dry_run or change.kind != "filtered"):
            table.add_row(
                change.kind,
                escape(change.name or ""),
                escape(change.version or ""),
                escape(change.reason),
            )
    if table.row_count:
        print_table(console, table)
    if report.error:
        err.print(f"[red]error:[/red] {report.mirror}: {escape(report.error)}")


@registry_app.command("sync")
def registry_sync(
    mirror: Annotated[
        str | None, typer.Option("--mirror", help="Only this mirror ([[registry.mirrors]] name).")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show what would change; write nothing."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    config: ConfigOption = None,
) -> None:
    """Sync the registry's mirrors from their upstream registries now (or show what would
    change with --dry-run)."""
    from bastion.registry.mirror import sync_now

    settings = settings_or_exit(config)
    if not settings.registry.mirrors:
        err.print("[red]error:[/red] no mirror configured; add a \\[\\[registry.mirrors]] section")
        raise typer.Exit(2)
    try:
        reports = run(sync_now(settings, mirror=mirror, dry_run=dry_run))
    except ValueError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps({"mirrors": [r.as_json() for r in reports]}, indent=2))
    else:
        for report in reports:
            _print_sync(report)
    if any(r.error for r in reports):
        raise typer.Exit(1)


@registry_app.command("sync-gateway")
def registry_sync_gateway(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The changes as JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """List the gateway upstreams with publish = true in the registry now, as it does at each
    start: add, update, mark deleted; entries published or imported otherwise are never
    touched."""
    from bastion.registry.gateway_listing import run_sync

    settings = settings_or_exit(config)
    if not settings.registry.enabled:
        err.print("[red]error:[/red] the registry is off; set \\[registry] enabled = true")
        raise typer.Exit(2)
    report = run(run_sync(settings, dry_run=dry_run))
    if as_json:
        changes = [
            {k: getattr(c, k) for k in ("kind", "name", "version", "upstream", "detail")}
            for c in report.changes
        ]
        typer.echo(json.dumps({"changes": changes, "unchanged": report.unchanged}, indent=2))
        return
    for c in report.changes:
        upstream = f" (upstream {c.upstream})" if c.upstream else ""
        line = f"{c.kind} {c.name} {c.version}{upstream}: {c.detail}"
        (err if c.kind == "conflict" else console).print(line, markup=False)
    changed = sum(c.kind != "conflict" for c in report.changes)
    verb = "would change" if dry_run else "changed"
    console.print(f"{verb} {changed}, up to date {report.unchanged}")


# -- registry client: search, show, and the local bridge (bastion proxy registry) --------------

from bastion.cli import registry_client, registry_publish  # noqa: E402

registry_app.command("search")(registry_client.search)
registry_app.command("show")(registry_client.show)
registry_app.command("publish")(registry_publish.publish)
app.add_typer(registry_client.proxy_app, name="proxy")


client_commands.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
