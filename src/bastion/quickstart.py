"""``bastion quickstart``: a data directory with a configuration and an admin user, then the
authorization server, the gateway and the demo MCP server in one process.

Ports: the authorization server on ``port``, the gateway on ``port + 1``, the demo server (over
streamable HTTP, reachable only through the gateway by clients) on ``port + 2``. The gateway also
runs the same demo server over stdio, one process per session.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from bastion.authserver.admin import database
from bastion.config import Settings, load_settings
from bastion.identity.local import LocalUsers
from bastion.identity.passwords import generate_password
from bastion.serve import Listener

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
# notes:write, which the gateway asks for with a 403 (step-up authorization).
[[gateway.upstreams]]
name = "demo"
path = "/mcp/demo"
url = "http://127.0.0.1:{demo_port}/mcp"
scopes = ["mcp:tools"]
policy = {{ default = ["mcp:tools"], tools = {{ add_note = ["notes:write"] }} }}

# The same server over stdio: the gateway starts one process per session.
[[gateway.upstreams]]
name = "demo-stdio"
path = "/mcp/demo-stdio"
command = {command}
scopes = ["mcp:tools"]
policy = {{ default = ["mcp:tools"], tools = {{ add_note = ["notes:write"] }} }}
"""


@dataclass(frozen=True)
class Prepared:
    """What quickstart set up."""

    config_file: Path
    admin_password: str | None


def write_config(data_dir: Path, port: int) -> Path:
    """Create the data directory and, on first run, its configuration file."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    config_file = data_dir / "bastion.toml"
    if not config_file.exists():
        config_file.write_text(
            CONFIG_TEMPLATE.format(
                port=port,
                gateway_port=port + 1,
                demo_port=port + 2,
                data_dir=json.dumps(str(data_dir)),
                audit_log=json.dumps(str(data_dir / "audit.jsonl")),
                command=json.dumps([sys.executable, "-m", "bastion.demo"]),
            )
        )
    return config_file


async def prepare(config_file: Path) -> Prepared:
    """Create the admin user once (password returned to show once), migrate the database."""
    settings = load_settings(config_file)
    password = None
    async with database(settings) as db:
        users = LocalUsers(db)
        if not await users.list():
            password = generate_password()
            await users.add("admin", password, is_admin=True, name="Administrator")
    return Prepared(config_file, password)


def demo_port(settings: Settings) -> int | None:
    """The port of the demo server named in the configuration, if any."""
    for upstream in settings.gateway.upstreams:
        if upstream.name == "demo" and upstream.url:
            from urllib.parse import urlsplit

            return urlsplit(upstream.url).port
    return None


def listeners(settings: Settings) -> list[Listener]:
    """The apps quickstart runs: authorization server, gateway, demo server."""
    from bastion.authserver.app import create_app
    from bastion.demo.server import demo_app
    from bastion.gateway.app import create_gateway_app

    found = [Listener("authorization server", create_app(settings), settings.host, settings.port)]
    if settings.gateway.enabled and settings.gateway.upstreams:
        gateway = create_gateway_app(settings)
        found.append(Listener("gateway", gateway, settings.gateway.host, settings.gateway.port))
    port = demo_port(settings)
    if port is not None:
        found.append(Listener("demo MCP server", demo_app(), "127.0.0.1", port))
    return found


__all__ = ["CONFIG_TEMPLATE", "Prepared", "demo_port", "listeners", "prepare", "write_config"]
