"""Server processes after start-up: what start-up made is out of the garbage collector's full
collections (:mod:`bastion.ops.start_up`), so that none of them stops every request in flight
for tens of milliseconds under load. The gateway and the registry served alone (``bastion
gateway``, ``bastion registry serve``); the authorization server freezes in its lifespan too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# Run in a process of its own: the freeze is once per process, and a test process has made
# (and frozen) many apps before.
SCRIPT = """
import asyncio, gc, json, sys
from bastion.config import Settings
from bastion.gateway import create_gateway_app
from bastion.registry import create_registry_app

settings = Settings(**json.loads(sys.argv[1]))
app = create_gateway_app(settings) if sys.argv[2] == "gateway" else create_registry_app(settings)

async def main():
    before = len(gc.get_objects(generation=2))
    async with app.router.lifespan_context(app):
        after = len(gc.get_objects(generation=2))
        print(json.dumps({"before": before, "after": after, "frozen": gc.get_freeze_count()}))

asyncio.run(main())
"""

SECRET = "test-secret-key-that-is-long-enough-0123456789"
EXTRA: dict[str, dict[str, Any]] = {
    "gateway": {
        "gateway": {
            "public_url": "http://127.0.0.1:8",
            "upstreams": [{"name": "notes", "path": "/mcp/notes", "url": "http://127.0.0.1:9/mcp"}],
        }
    },
    "registry": {"registry": {"enabled": True}},
}


@pytest.mark.parametrize("app", ["gateway", "registry"])
def test_a_started_server_leaves_its_start_up_objects_out_of_full_collections(
    tmp_path: Path, app: str
) -> None:
    settings = {
        "issuer": "http://127.0.0.1:9",
        "data_dir": str(tmp_path / "data"),
        "secret_key": SECRET,
        **EXTRA[app],
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(settings), app],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    # Start-up (bastion, Starlette, SQLAlchemy, pydantic…) leaves tens of thousands of objects
    # in the oldest generation; once started, a full collection walks almost none of them.
    assert counts["before"] > 20_000, counts
    assert counts["frozen"] > 20_000, counts
    assert counts["after"] < 2_000, counts
