"""House rule 1: ``bastion.client`` never imports the server side (nor ``bastion.config``, which
does); it uses only the pure ``bastion.oauth`` package, ``bastion.net``, and the two leaf modules
that depend on the standard library alone: ``bastion.private_files`` (files only their user may
read, for the local CA's keys) and ``bastion.logs``, which it imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import bastion.client

CLIENT = Path(bastion.client.__file__).parent
ALLOWED = (
    "bastion.client",
    "bastion.oauth",
    "bastion.net",
    "bastion.private_files",
    "bastion.logs",
)


def test_client_modules_import_no_server_module() -> None:
    for path in sorted(CLIENT.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: relative import"
                names = [node.module or ""]
            for name in names:
                if name == "bastion" or name.startswith("bastion."):
                    assert name.startswith(ALLOWED), f"{path.name} imports {name}"


def test_importing_the_client_loads_no_server_module() -> None:
    """At run time too (no server module comes in through a dependency)."""
    code = (
        "import sys, bastion.client, bastion.client.mcp_sdk, bastion.client.conformance\n"
        "import bastion.client.registry_bridge, bastion.client.local_trust\n"
        "print('\\n'.join(m for m in sys.modules if m.startswith('bastion.')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert loaded
    assert all(m.startswith(ALLOWED) for m in loaded), loaded
