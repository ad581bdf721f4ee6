"""``bastion registry publish FILE``: publish a server.json from the shell (docs/registry.md,
"Publishing from the shell").

1. The document is read (FILE, or ``-`` for standard input) and checked with the registry's own
   validation (:mod:`bastion.registry.validation`): an invalid document is never sent; each
   problem is printed with its JSON path (``$.packages[0].transport``) and the exit code is 2.
2. What will be visible to whom is shown: name, version, namespace, the entry's groups and what
   approval means; ``--dry-run`` stops here, without any request.
3. ``POST /v0.1/publish`` with the user's token. A token with the read scope only meets a 403
   ``insufficient_scope`` whose challenge names the write scope; the client then authorizes
   again for the union of the scopes and retries once (MCP "Step-Up Authorization Flow",
   RFC 6750 §3.1; checklist G02). The registry's refusals (RFC 9457 problems) are printed as
   lines an operator can act on, exit code 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from bastion.cli.client_context import (
    ClientConfigOption,
    NoBrowserOption,
    load_client_settings,
    step_up_notice,
)
from bastion.cli.registry_client import run_with_registry
from bastion.client.registry import BASTION_META, RegistryClient, ServerEntry

if TYPE_CHECKING:
    from bastion.registry.validation import ValidServer

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
# Larger documents are refused before parsing (the registry's default limit is 1 MiB).
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
ADMINS_TOO = "you (its publisher) and the registry's admins"


def json_path(location: str) -> str:
    """The registry's field location ``body.packages[0].transport`` as the JSON path
    ``$.packages[0].transport`` of the document."""
    return "$" + location.removeprefix("body") if location.startswith("body") else location


def read_document(file: str) -> bytes:
    """The bytes of FILE (``-``: standard input); unreadable input exits with code 2."""
    try:
        if file == "-":
            raw = sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1)
        else:
            with Path(file).open("rb") as handle:
                raw = handle.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot read {escape(file)}: {escape(str(exc))}")
        raise typer.Exit(2) from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        err.print(
            f"[red]error:[/red] {escape(file)} is larger than {MAX_DOCUMENT_BYTES} bytes; a "
            "server.json is a few kilobytes"
        )
        raise typer.Exit(2)
    return raw


def check_document(raw: bytes, file: str) -> tuple[dict[str, Any], ValidServer]:
    """The document and its validated form, as the registry would see them; each problem
    printed with its JSON path and exit code 2 when it is not valid (nothing is sent)."""
    from bastion.registry.problems import Problem
    from bastion.registry.validation import parse_object, validate_server

    try:
        document = parse_object(raw)
        return document, validate_server(document)
    except Problem as problem:
        err.print(
            f"[red]error:[/red] {escape(file)}: {escape(problem.detail)}; nothing was sent to "
            "the registry"
        )
        for field in problem.errors:
            seen = f" (got {json.dumps(field.value)[:120]})" if field.has_value else ""
            err.print(f"  {json_path(field.location)}: {field.message}{seen}", markup=False)
        raise typer.Exit(2) from None


def audience(groups: Sequence[str] | None) -> str:
    """Who may see an approved entry with these groups (G04), in words."""
    if groups is None:
        return (
            "the registry's default groups (registry.default_groups; every reader when it has "
            f"none), {ADMINS_TOO}"
        )
    if not groups:
        return f"every reader of the registry, {ADMINS_TOO}"
    return f"members of {', '.join(groups)}, {ADMINS_TOO}"


def plan_of(valid: ValidServer, registry: str) -> dict[str, Any]:
    """What ``publish`` is about to do, before any request."""
    return {
        "registry": registry,
        "name": valid.name,
        "version": valid.version,
        "namespace": valid.name.split("/", 1)[0],
        "groups": None if valid.groups is None else list(valid.groups),
        "visible_to": audience(valid.groups),
    }


def print_plan(plan: Mapping[str, Any], *, dry_run: bool) -> None:
    verb = "would publish" if dry_run else "publishing"
    rows = (
        ("namespace", f"{plan['namespace']} (the registry's registry.namespaces say who may "
         "publish there; it answers 403 if you may not)"),
        ("visible to", plan["visible_to"]),
        ("approval", "decided by the registry: an entry it does not approve at once is seen "
         f"only by {ADMINS_TOO} until an admin approves it"),
    )  # fmt: skip
    console.print(f"{verb} {plan['name']} {plan['version']} to {plan['registry']}", markup=False)
    for label, text in rows:
        console.print(f"  {label:<11} {text}", markup=False)


def print_result(entry: ServerEntry) -> None:
    meta = entry.document.get("_meta")
    mine = meta.get(BASTION_META) if isinstance(meta, Mapping) else None
    mine = mine if isinstance(mine, Mapping) else {}
    groups = mine.get("groups")
    shown_groups = [g for g in groups if isinstance(g, str)] if isinstance(groups, list) else None
    approved = mine.get("approved")
    latest = " (latest)" if mine.get("isLatest") is True else ""
    console.print(
        f"published {entry.name} {entry.version}: {entry.status or 'status unknown'}{latest}",
        markup=False,
    )
    then = audience(shown_groups) if shown_groups is not None else "its audience"
    if approved is False:
        console.print(f"  visible to  only {ADMINS_TOO} until approved; then {then}", markup=False)
        console.print("  approval    waiting for a registry admin", markup=False)
        return
    if shown_groups is not None:
        console.print(f"  visible to  {then}", markup=False)
    if approved is True:
        console.print("  approval    approved", markup=False)


def publish(
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="A server.json file, or - for standard input.")
    ],
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            metavar="URL",
            help="The registry URL (its API is at URL/v0.1); default: registry_url of the "
            "client configuration.",
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the registry's answer (or, with --dry-run, the plan) as JSON."
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Validate and show what would be published; send nothing."),
    ] = False,
    client_config: ClientConfigOption = None,
    no_browser: NoBrowserOption = False,
) -> None:
    """Publish a server.json to a registry: validated first (nothing is sent when it is not
    valid, exit 2), then POST /v0.1/publish with your token (stepping up to the write scope)."""
    raw = read_document(file)
    document, valid = check_document(raw, file)
    settings = load_client_settings(client_config)
    url = registry or settings.registry_url
    if url is None:
        err.print(
            "[red]error:[/red] which registry? give --registry URL, or set registry_url in the "
            "client configuration"
        )
        raise typer.Exit(2)
    plan = plan_of(valid, url)
    if dry_run:
        if as_json:
            typer.echo(json.dumps(plan, indent=2, ensure_ascii=False))
        else:
            print_plan(plan, dry_run=True)
            console.print("dry run: nothing was sent")
        return
    if not as_json:
        print_plan(plan, dry_run=False)

    async def work(client: RegistryClient) -> ServerEntry:
        client.http.event_hooks["response"].append(
            step_up_notice(
                client.url,
                doing="to publish",
                again="publish again",
                no_browser=no_browser,
                client_config=client_config,
                registry=True,
            )
        )
        return await client.publish(document)

    entry = run_with_registry(settings, url, no_browser, work)
    if as_json:
        typer.echo(json.dumps(dict(entry.document), indent=2, ensure_ascii=False))
    else:
        print_result(entry)


__all__ = [
    "audience",
    "check_document",
    "json_path",
    "plan_of",
    "publish",
    "read_document",
]
