"""``bastion audit``: the authorization server's audit trail, as a table or as JSON lines (the
export). Thin: parse, call :func:`bastion.authserver.audit_query.trail`, print."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from bastion.cli.common import ConfigOption, console, err, run, settings_or_exit
from bastion.cli.display import print_table

DEFAULT_LIMIT = 100


def register(app: typer.Typer) -> None:
    """Add ``bastion audit`` to ``app``."""
    app.command("audit")(audit)


def audit(
    user: Annotated[
        str | None, typer.Option("--user", help="Only records about this user (by user name).")
    ] = None,
    client: Annotated[
        str | None, typer.Option("--client", help="Only records about this client id.")
    ] = None,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type", help="Only these event types (repeatable; a prefix ends in *: admin.*)."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only records from then on: a duration back (24h, 7d) or RFC 3339."),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            min=1, help=f"Only the newest N (default {DEFAULT_LIMIT} in a table, all in --json)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON lines on standard output (the export).")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Show or export the authorization server's audit trail: sign-ins, consents, grants,
    registrations and operators' changes (docs/audit.md)."""
    from bastion.authserver.admin import AdminError
    from bastion.authserver.audit_query import check_types, since_millis, trail

    settings = settings_or_exit(config)
    try:
        start = since_millis(since, time.time_ns() // 1_000_000) if since else None
        wanted = check_types(types or [])
    except (ValueError, AdminError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    newest = limit if limit is not None or as_json else DEFAULT_LIMIT
    found = trail(
        settings, username=user, client_id=client, types=wanted, since=start, limit=newest
    )

    async def go() -> list[dict[str, Any]]:
        kept = []
        async for line in found:
            if as_json:  # streamed: an export never holds the trail in memory
                typer.echo(json.dumps(line, separators=(",", ":")))
            else:
                kept.append(line)
        return kept

    lines: list[dict[str, Any]] = run(go())  # AdminError (an unknown user): message, exit 1
    if not as_json:
        _table(lines)


def _who(line: dict[str, Any]) -> str:
    if not line["sub"]:
        return ""
    return f"{line['user']} ({line['sub']})" if line["user"] else line["sub"]


def _table(lines: list[dict[str, Any]]) -> None:
    table = Table("time", "type", "outcome", "user", "client", "how", "address", "by", "target")
    for line in lines:
        target = line["target"] or {}
        shown = target.get("name") or target.get("id") or ""
        how = "/".join(filter(None, [line["method"], line["provider"]]))
        table.add_row(
            line["time"],
            line["type"],
            line["outcome"],
            _who(line),
            line["client_id"] or "",
            how,
            line["address"] or "",
            line["actor"] or "",
            f"{target.get('kind')}:{shown}" if target else (line["grant_id"] or ""),
        )
    print_table(console, table)
    if not lines:
        console.print("no audit records match")


__all__ = ["DEFAULT_LIMIT", "audit", "register"]
