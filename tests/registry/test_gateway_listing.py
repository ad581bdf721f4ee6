"""Gateway upstreams with ``publish = true`` listed in the registry, kept in step with the
configuration at each start of the registry and by ``bastion registry sync-gateway``.

Each start is a real start of the registry (its lifespan) on the same database, SQLite and
PostgreSQL; what the registry shows is read through its API. What must not happen comes
first: an upstream with ``publish = false`` listed, an entry published through the API or
imported overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydantic import ValidationError

from bastion.config import Settings
from bastion.demo.server import demo_app
from bastion.gateway import create_gateway_app
from bastion.oauth.www_authenticate import parse_challenges
from bastion.registry.access import WRITE
from bastion.registry.audit import export
from bastion.registry.gateway_listing import GATEWAY_OWNER, REMOVED
from bastion.registry.importer import run_import
from bastion.serve import create_combined_app
from bastion.store.database import Database
from tests.registry.harness import MillisClock, registry_settings, running_registry, server_json
from tests.registry.test_cli import bastion, config_file
from tests.support.live import free_port, serve

GATEWAY = "https://gateway.example.com"
NOTES = "com.example.tools/notes"
HELLO = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}}


def upstream(name: str = "notes", path: str = "/mcp/notes", **options: Any) -> dict[str, Any]:
    """A hand-added ``[[gateway.upstreams]]`` entry; ``options`` are its own keys plus
    ``registry``."""
    return {"name": name, "path": path, "url": "http://127.0.0.1:9/mcp", **options}


def listed(name: str = NOTES, **registry: Any) -> dict[str, Any]:
    """An upstream with publish = true and these [gateway.upstreams.registry] keys."""
    return upstream(publish=True, registry={"name": name, **registry})


class Starts:
    """Starts the registry again and again on one database, each time with another gateway
    configuration, and reads what it then shows."""

    def __init__(self, make_settings: Callable[..., Settings]) -> None:
        self.make_settings = make_settings
        self.clock = MillisClock()
        self.settings = self.configure()

    def configure(self, *upstreams: dict[str, Any], enabled: bool = True) -> Settings:
        gateway = {"enabled": enabled, "public_url": GATEWAY, "upstreams": list(upstreams)}
        return self.make_settings(registry=registry_settings(), gateway=gateway)

    async def start(self, *upstreams: dict[str, Any], enabled: bool = True, **work: Any) -> Any:
        """Start with these upstreams; return every version (deleted too) of each name shown."""
        self.settings = self.configure(*upstreams, enabled=enabled)
        async with running_registry(self.settings, self.clock) as reg:
            admin = reg.bearer(await reg.admin())
            hand = work.get("publish")
            if hand is not None:
                alice = await reg.token("alice", WRITE, groups=["team-a"])
                await reg.published(alice, hand)
            found: dict[str, list[dict[str, Any]]] = {}
            for name in work.get("names", [NOTES]):
                response = await reg.client.get(
                    f"{reg.base}/servers/{quote(name, safe='')}/versions",
                    params={"include_deleted": "true"},
                    headers=admin,
                )
                found[name] = response.json()["servers"] if response.status_code == 200 else []
            return found

    async def audit(self) -> list[dict[str, Any]]:
        db = Database(self.settings.effective_database_url, schema=self.settings.database_schema)
        try:
            return [line async for line in export(db) if line["action"] == "gateway"]
        finally:
            await db.dispose()


def shown(versions: list[dict[str, Any]]) -> list[tuple[str, str, str, bool]]:
    """(version, status, remote URL, isLatest) of each version."""
    out = []
    for item in versions:
        meta = item["_meta"]["dev.mcp-bastion/registry"]
        url = item["server"]["remotes"][0]["url"]
        out.append((item["server"]["version"], meta["status"], url, meta["isLatest"]))
    return sorted(out)


@pytest.fixture
def starts(make_settings: Callable[..., Settings]) -> Starts:
    return Starts(make_settings)


# -- what must not happen ------------------------------------------------------------------------


async def test_an_upstream_with_publish_false_or_of_a_disabled_gateway_is_not_listed(
    starts: Starts,
) -> None:
    quiet = upstream("quiet", "/mcp/quiet", registry={"name": "com.example.tools/quiet"})
    found = await starts.start(quiet, names=["com.example.tools/quiet"])
    assert found == {"com.example.tools/quiet": []}
    assert await starts.start(listed(), enabled=False) == {NOTES: []}
    assert await starts.audit() == []


async def test_a_gateway_entry_never_overwrites_an_entry_published_through_the_api(
    starts: Starts,
) -> None:
    """The name was published by a person (through the API): the gateway leaves every version
    of it alone, records the conflict (409) and says what to change."""
    mine = "com.acme.team-a/notes"
    before = await starts.start(publish=server_json(mine), names=[mine])
    after = await starts.start(listed(mine), names=[mine])
    assert after == before and len(before[mine]) == 1
    assert before[mine][0]["server"]["remotes"][0]["url"] == "https://mcp.example.com/mcp"
    [conflict] = await starts.audit()
    assert (conflict["status"], conflict["result"], conflict["server"]) == (409, "conflict", mine)
    assert conflict["sub"] == GATEWAY_OWNER
    assert "another [gateway.upstreams.registry] name" in conflict["detail"]["detail"]


async def test_a_gateway_entry_never_overwrites_an_imported_entry(
    starts: Starts, tmp_path: Path
) -> None:
    path = tmp_path / "servers.json"
    path.write_text(json.dumps([server_json(NOTES, "0.9.0")]))
    report = await run_import(starts.settings, str(path))
    assert report.imported == 1
    before = await starts.start()
    after = await starts.start(listed(version="1.0.0"))
    assert after == before
    assert shown(after[NOTES]) == [("0.9.0", "active", "https://mcp.example.com/mcp", True)]
    assert [r["result"] for r in await starts.audit()] == ["conflict"]


# -- what follows the configuration --------------------------------------------------------------


async def test_the_registry_follows_the_configuration_at_each_start(starts: Starts) -> None:
    """Listed with the gateway's URL of the upstream; a moved path updates it; publish = false
    marks it deleted; listing it again brings it back; a new version replaces the old one.
    Every change is one audit record; a start without changes writes none."""
    first = await starts.start(listed(groups=["team-a"]))
    assert shown(first[NOTES]) == [("1.0.0", "active", f"{GATEWAY}/mcp/notes", True)]
    entry = first[NOTES][0]
    assert entry["server"]["description"] == "notes through the gateway"
    assert entry["_meta"]["dev.mcp-bastion/registry"]["groups"] == ["team-a"]
    assert entry["_meta"]["dev.mcp-bastion/registry"]["approved"] is True
    assert await starts.start(listed(groups=["team-a"])) == first  # nothing changed

    moved = upstream(path="/mcp/notes2", publish=True, registry={"name": NOTES})
    found = await starts.start(moved)
    assert shown(found[NOTES]) == [("1.0.0", "active", f"{GATEWAY}/mcp/notes2", True)]
    assert found[NOTES][0]["_meta"]["dev.mcp-bastion/registry"]["groups"] == []

    found = await starts.start(upstream(path="/mcp/notes2", registry={"name": NOTES}))
    # The only version, deleted, stays the latest (the registry's rule for deletions).
    assert shown(found[NOTES]) == [("1.0.0", "deleted", f"{GATEWAY}/mcp/notes2", True)]
    assert found[NOTES][0]["_meta"]["dev.mcp-bastion/registry"]["statusMessage"] == REMOVED

    found = await starts.start(moved)
    assert shown(found[NOTES]) == [("1.0.0", "active", f"{GATEWAY}/mcp/notes2", True)]

    found = await starts.start(listed(version="2.0.0"))
    assert shown(found[NOTES]) == [
        ("1.0.0", "deleted", f"{GATEWAY}/mcp/notes2", False),
        ("2.0.0", "active", f"{GATEWAY}/mcp/notes", True),
    ]
    found = await starts.start()  # the upstream removed from the configuration
    assert [status for _, status, _, _ in shown(found[NOTES])] == ["deleted", "deleted"]
    records = [(r["result"], r["version"]) for r in await starts.audit()]
    assert records == [
        ("added", "1.0.0"),
        ("updated", "1.0.0"),
        ("deleted", "1.0.0"),
        ("updated", "1.0.0"),
        ("added", "2.0.0"),
        ("deleted", "1.0.0"),
        ("deleted", "2.0.0"),
    ]
    assert {r["sub"] for r in await starts.audit()} == {GATEWAY_OWNER}


async def test_sync_gateway_command_dry_run_changes_nothing_then_applies(
    starts: Starts, tmp_path: Path
) -> None:
    """``bastion registry sync-gateway``: the change without a restart; --dry-run only says."""
    await starts.start()
    config = config_file(starts.settings, tmp_path / "bastion.toml")
    with config.open("a") as toml:
        toml.write(
            f'[gateway]\nenabled = true\npublic_url = "{GATEWAY}"\n'
            '[[gateway.upstreams]]\nname = "notes"\npath = "/mcp/notes"\n'
            f'url = "http://127.0.0.1:9/mcp"\npublish = true\n'
            f'[gateway.upstreams.registry]\nname = "{NOTES}"\n'
        )
    code, out, err = await bastion(config, "registry", "sync-gateway", "--dry-run", "--json")
    assert code == 0, err
    assert [(c["kind"], c["name"]) for c in json.loads(out)["changes"]] == [("added", NOTES)]
    assert await starts.audit() == []
    code, out, err = await bastion(config, "registry", "sync-gateway")
    assert code == 0, err
    assert f"added {NOTES} 1.0.0 (upstream notes): lists {GATEWAY}/mcp/notes" in out
    assert [r["result"] for r in await starts.audit()] == ["added"]


def test_configuration_names_and_checks_listings(make_settings: Callable[..., Settings]) -> None:
    """The default name is the gateway's host reversed and the upstream's name; an IP address
    gives no name; two upstreams may not share one; a version range is refused."""

    def gateway(public_url: str, *upstreams: dict[str, Any]) -> Settings:
        return make_settings(
            gateway={"enabled": True, "public_url": public_url, "upstreams": list(upstreams)}
        )

    settings = gateway(GATEWAY, upstream(publish=True))
    assert settings.gateway.upstreams[0].registry.name == "com.example.gateway/notes"
    with pytest.raises(ValidationError, match=r"set \[gateway.upstreams.registry\] name"):
        gateway("https://192.0.2.7", upstream(publish=True))
    with pytest.raises(ValidationError, match="two upstreams with publish = true"):
        gateway(GATEWAY, listed(), upstream("b", "/mcp/b", publish=True, registry={"name": NOTES}))
    with pytest.raises(ValidationError, match="not a range"):
        gateway(GATEWAY, listed(version="^1.0"))
    with pytest.raises(ValidationError, match="reverse-DNS"):
        gateway(GATEWAY, listed(name="notes"))


# -- end to end: what the registry lists is what the gateway serves ------------------------------


async def test_the_listed_remote_is_the_gateways_protected_endpoint(
    make_settings: Callable[..., Settings],
) -> None:
    """Real gateway and registry processes: the remote URL the registry lists answers as the
    gateway's endpoint of that upstream (401 whose metadata names that URL as its resource)."""
    port, gateway_port = free_port(), free_port()
    issuer, public = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{gateway_port}"
    async with serve(demo_app()) as demo:
        demo_upstream = {
            "name": "demo",
            "path": "/mcp/demo",
            "url": f"{demo}/mcp",
            "scopes": ["mcp:tools"],
            "publish": True,
            "registry": {"name": "dev.example.tools/demo", "description": "The demo server"},
        }
        settings = make_settings(
            issuer=issuer,
            registry=registry_settings(anonymous_read=True),
            gateway={"enabled": True, "public_url": public, "upstreams": [demo_upstream]},
        )
        async with (
            serve(create_combined_app(settings), port=port),
            serve(create_gateway_app(settings), port=gateway_port),
            httpx.AsyncClient(timeout=30) as http,
        ):
            response = await http.get(
                f"{issuer}/registry/v0.1/servers/{quote('dev.example.tools/demo', safe='')}"
                "/versions/latest"
            )
            assert response.status_code == 200, response.text
            server = response.json()["server"]
            assert server["description"] == "The demo server"
            [remote] = server["remotes"]
            assert remote == {"type": "streamable-http", "url": f"{public}/mcp/demo"}
            hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": HELLO}
            refused = await http.post(
                remote["url"],
                json=hello,
                headers={"Accept": "application/json, text/event-stream"},
            )
            assert refused.status_code == 401
            challenge, _dpop = parse_challenges(refused.headers["www-authenticate"])
            metadata = await http.get(challenge.get("resource_metadata") or "")
            assert metadata.json()["resource"] == remote["url"]
