"""``bastion quickstart``: a data directory with a configuration and an admin user."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bastion.authserver.admin import database
from bastion.config import load_settings
from bastion.identity.local import LocalUsers
from bastion.identity.passwords import generate_password

CONFIG_TEMPLATE = """\
# bastion configuration written by `bastion quickstart`. See docs/configuration.md.
issuer = "http://127.0.0.1:{port}"
port = {port}
data_dir = "{data_dir}"

# The MCP servers tokens may be issued for (the RFC 8707 `resource` clients send).
[[resources]]
uri = "http://127.0.0.1:{port}/mcp"
name = "demo"
scopes = ["mcp:tools"]

[unknown_clients]
# refuse | loopback_public (admit unregistered client ids, e.g. VS Code's, on loopback only)
policy = "refuse"
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
        config_file.write_text(CONFIG_TEMPLATE.format(port=port, data_dir=data_dir))
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


__all__ = ["Prepared", "prepare"]
