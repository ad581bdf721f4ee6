"""``bastion quickstart``: a data directory with a configuration and an admin user, then the
authorization server, the private registry, the gateway and the demo MCP server in one process.

Ports: the authorization server on ``port`` (the registry at ``<issuer>/registry`` on the same
listener), the gateway on ``port + 1``, the demo server (over streamable HTTP, reachable only
through the gateway by clients) on ``port + 2``. The gateway also runs the same demo server over
stdio, one process per session. On first run the registry gets an entry for each demo upstream.
"""

from __future__ import annotations

import json
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.access.rules import AccessRule
from bastion.authserver.admin import database
from bastion.clock import system_clock
from bastion.config import Settings, load_settings
from bastion.identity.local import LocalUsers
from bastion.identity.passwords import generate_password
from bastion.private_files import private_dir, write_private
from bastion.registry.access import READ, WRITE
from bastion.registry.validation import SCHEMA_ID
from bastion.store import access as access_rows
from bastion.store.database import Database

CONFIG_TEMPLATE = """\
# bastion configuration written by `bastion quickstart`. See docs/configuration.md.
issuer = "http://127.0.0.1:{port}"
port = {port}
data_dir = {data_dir}

[unknown_clients]
# refuse | loopback_public (admit unregistered client ids, e.g. VS Code's, on loopback only)
policy = "refuse"

[gateway]
enabled = true
public_url = "http://127.0.0.1:{gateway_port}"
port = {gateway_port}
audit_log = {audit_log}

# The demo server over streamable HTTP. Its tools need mcp:tools; add_note also needs
# notes:write, which the gateway asks for with a 403 (step-up authorization), and membership in
# the group editors (a 403 that no scope can fix). Who may obtain which scope is an access rule
# in the database: `bastion access list --config <this file>` shows them (docs/access.md).
[[gateway.upstreams]]
name = "demo"
path = "/mcp/demo"
url = "http://127.0.0.1:{demo_port}/mcp"
scopes = ["mcp:tools"]
[gateway.upstreams.policy]
default = ["mcp:tools"]
tools = {{ add_note = ["notes:write"] }}
tool_groups = {{ add_note = ["editors"] }}

# The same server over stdio: the gateway starts one process per session.
[[gateway.upstreams]]
name = "demo-stdio"
path = "/mcp/demo-stdio"
command = {command}
scopes = ["mcp:tools"]
[gateway.upstreams.policy]
default = ["mcp:tools"]
tools = {{ add_note = ["notes:write"] }}
tool_groups = {{ add_note = ["editors"] }}

# The private MCP registry at http://127.0.0.1:{port}/registry ({read} to list, {write} to
# publish, as the registry authorization document names them). Try
# `bastion registry search http://127.0.0.1:{port}/registry` or `bastion proxy registry ...`.
[registry]
enabled = true
# On your own machine what you publish is listed at once; an organisation sets this to false,
# and admins approve what others publish (docs/registry.md).
approve_on_publish = true

# Who may publish under which namespace (the part of a server name before '/'): editors, under
# any namespace that starts with local. (local.example/notes, local.acme/…).
[registry.namespaces]
"local.*" = ["group:editors"]
"""


@dataclass(frozen=True)
class Prepared:
    """What quickstart set up."""

    config_file: Path
    admin_password: str | None


DEFAULT_PORT = 8000


class PortMismatch(Exception):
    """``--port`` names other ports than those a data directory was set up with."""


def render_config(data_dir: Path, port: int) -> str:
    """The configuration quickstart writes for ``data_dir`` (absolute) and ``port``."""
    return CONFIG_TEMPLATE.format(
        port=port,
        gateway_port=port + 1,
        demo_port=port + 2,
        data_dir=json.dumps(str(data_dir)),
        audit_log=json.dumps(str(data_dir / "audit.jsonl")),
        command=json.dumps([sys.executable, "-m", "bastion.demo"]),
        read=READ,
        write=WRITE,
    )


def planned_settings(data_dir: Path, port: int | None) -> Settings:
    """The settings quickstart will run with, before anything is written: those of the
    existing configuration, or of the one a first run would write for ``port``.

    An existing data directory keeps its ports, since its issuer, the demo's URLs, its registry
    entries and access rules name them: a different ``port`` is a :class:`PortMismatch` that
    says what to do instead."""
    data_dir = data_dir.resolve()
    config_file = data_dir / "bastion.toml"
    if not config_file.exists():
        return Settings(**tomllib.loads(render_config(data_dir, port or DEFAULT_PORT)))
    settings = load_settings(config_file)
    if port is not None and port != settings.port:
        raise PortMismatch(
            f"{config_file} was set up for port {settings.port} (its issuer, the gateway and "
            f"demo URLs, registry entries and access rules name it), so --port {port} cannot "
            f"move it. Run bastion quickstart --data-dir {data_dir} without --port, or set up "
            f"another one beside it: bastion quickstart --data-dir {data_dir}-{port} --port "
            f"{port} (make run PORT={port} DATA={data_dir}-{port})."
        )
    return settings


def write_config(data_dir: Path, port: int) -> Path:
    """Create the data directory (0700) and, on first run, its configuration file (0600)."""
    data_dir = data_dir.resolve()
    private_dir(data_dir)
    config_file = data_dir / "bastion.toml"
    if not config_file.exists():
        write_private(config_file, render_config(data_dir, port))
    return config_file


async def prepare(config_file: Path) -> Prepared:
    """Create the admin user once (password returned to show once), migrate the database, and
    on first run list the demo upstreams in the registry and give them access rules."""
    settings = load_settings(config_file)
    password = None
    async with database(settings) as db:
        users = LocalUsers(db)
        if not await users.list():
            password = generate_password()
            await users.add(
                "admin", password, is_admin=True, name="Administrator", groups=["editors"]
            )
            await _demo_rules(settings, db)
            if settings.registry.enabled:
                await _list_demo_servers(settings, db)
    return Prepared(config_file, password)


async def _demo_rules(settings: Settings, db: Database) -> None:
    """Every signed-in person may use the demo servers' tools; only editors may write notes."""
    now = system_clock()
    async with db.transaction() as conn:
        for upstream in settings.gateway.upstreams if settings.gateway.enabled else []:
            if upstream.resource:
                for rule in (
                    AccessRule(upstream.resource, "*", ("mcp:tools",)),
                    AccessRule(upstream.resource, "group:editors", ("*",)),
                ):
                    await access_rows.put_rule(conn, rule, now)


def demo_entries(settings: Settings) -> list[dict[str, Any]]:
    """server.json documents (2025-12-11 schema) for the gateway's upstreams."""
    return [
        {
            "$schema": SCHEMA_ID,
            "name": f"local.bastion/{upstream.name}",
            "description": f"The bastion demo MCP server behind the gateway ({upstream.name}).",
            "version": "1.0.0",
            "remotes": [{"type": "streamable-http", "url": str(upstream.resource)}],
        }
        for upstream in settings.gateway.upstreams
        if settings.gateway.enabled and upstream.resource
    ]


async def _list_demo_servers(settings: Settings, db: Database) -> None:
    from bastion.registry.importer import Importer

    importer = Importer(settings, db, owner="quickstart")
    for document in demo_entries(settings):
        await importer.add(document)
    if importer.report.invalid:
        raise ValueError("; ".join(importer.report.invalid))


def demo_port(settings: Settings) -> int | None:
    """The port of the demo server named in the configuration, if any."""
    for upstream in settings.gateway.upstreams:
        if upstream.name == "demo" and upstream.url:
            from urllib.parse import urlsplit

            return urlsplit(upstream.url).port
    return None


def addresses(settings: Settings) -> list[tuple[str, str, int]]:
    """Where quickstart listens: (name, host, port) of the authorization server (with the
    registry), the gateway and the demo server."""
    found = [("the authorization server", settings.host, settings.port)]
    if settings.gateway.enabled and settings.gateway.upstreams:
        found.append(("the gateway", settings.gateway.host, settings.gateway.port))
    port = demo_port(settings)
    if port is not None:
        found.append(("the demo MCP server", "127.0.0.1", port))
    return found


__all__ = [
    "CONFIG_TEMPLATE",
    "DEFAULT_PORT",
    "PortMismatch",
    "Prepared",
    "addresses",
    "demo_entries",
    "demo_port",
    "planned_settings",
    "prepare",
    "render_config",
    "write_config",
]
