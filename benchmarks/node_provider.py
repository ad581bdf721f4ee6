"""node-oidc-provider (npm ``oidc-provider``) configured like bastion for the comparison.

It runs ``tests/support/oidc_provider.mjs`` (the provider the test suite uses) under the Node 22
of ``scripts/setup-node.sh``: one process, client_credentials enabled, JWT access tokens
(RFC 9068) for the same resource, signed ES256, with the same lifetime as bastion's (600 s), a
confidential client with ``client_secret_basic``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.servers import ROOT, stop

SCRIPT = ROOT / "tests" / "support" / "oidc_provider.mjs"


def node_binary() -> str | None:
    """BASTION_NODE, else the wrapper scripts/setup-node.sh writes, else None."""
    candidates = [os.environ.get("BASTION_NODE", ""), str(ROOT / ".cache/node/bin/node22")]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    return None


def node_version(node: str) -> str:
    done = subprocess.run(  # noqa: S603 - the configured Node
        [node, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    version = done.stdout.strip()
    modules = os.environ.get("BASTION_NODE_MODULES") or str(ROOT / ".cache/node/node_modules")
    package = Path(modules) / "oidc-provider" / "package.json"
    try:
        provider = json.loads(package.read_text())["version"]
    except (OSError, ValueError, KeyError):
        provider = "?"
    return f"{version} (oidc-provider {provider})"


@dataclass
class NodeProvider:
    issuer: str
    client_id: str
    secret: str
    pid: int

    @property
    def port(self) -> int:
        return int(self.issuer.rsplit(":", 1)[1])


@contextlib.contextmanager
def node_provider(
    node: str, *, resource: str, scope: str, cpus: frozenset[int] | None
) -> Iterator[NodeProvider]:
    """Start the provider until the block ends."""
    secret = secrets.token_urlsafe(24)
    config = {
        "resources": [{"uri": resource, "scope": scope, "format": "jwt", "alg": "ES256"}],
        "defaultResource": resource,
        "clients": [
            {
                "client_id": "service",
                "client_secret": secret,
                "grant_types": ["client_credentials"],
                "response_types": [],
                "redirect_uris": [],
                "token_endpoint_auth_method": "client_secret_basic",
            }
        ],
        "ttl": {"ClientCredentials": 600},
        "watchStdin": True,
    }

    def pin_self() -> None:
        if cpus and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cpus)

    process = subprocess.Popen(  # noqa: S603 - the configured Node and our script
        [node, str(SCRIPT), json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=pin_self,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        line = process.stdout.readline().decode().strip() if ready else "(nothing in 60 s)"
        if not line.startswith("READY "):
            raise RuntimeError(f"oidc_provider.mjs did not start: {line!r}")
        yield NodeProvider(line.removeprefix("READY "), "service", secret, process.pid)
    finally:
        if process.stdin is not None:
            process.stdin.close()
        stop(process)
        if process.stdout is not None:
            process.stdout.close()


__all__ = ["NodeProvider", "node_binary", "node_provider", "node_version"]
