"""`bastion registry sync [--mirror NAME] [--dry-run] [--json]` against a live upstream of the
recorded official pages and a real database (docs/registry.md, "Mirroring")."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.responses import Response

from tests.registry.mirroring import Mirroring
from tests.registry.test_cli import bastion, config_file


def with_mirror(mirroring: Mirroring, path: Path) -> Path:
    config = config_file(mirroring.reg.settings, path)
    config.write_text(
        config.read_text()
        + "\n".join(
            [
                "[[registry.mirrors]]",
                'name = "official"',
                f'url = "{mirroring.url}"',
                'namespaces = ["io.github.upstash/*"]',
                'groups = ["team-a"]',
                "",
            ]
        )
    )
    return config


async def test_a_dry_run_from_the_shell_writes_nothing(
    mirroring: Mirroring, tmp_path: Path
) -> None:
    """--dry-run --json: what would be added and what is filtered out, and no entry stored."""
    config = with_mirror(mirroring, tmp_path / "bastion.toml")
    code, out, err = await bastion(config, "registry", "sync", "--dry-run", "--json")
    assert code == 0, err
    [report] = json.loads(out)["mirrors"]
    assert report["dry_run"] is True and report["counts"]["added"] == 2
    assert report["counts"]["filtered"] == 10
    assert {(c["kind"], c["version"]) for c in report["changes"] if c["kind"] == "added"} == {
        ("added", "1.0.13"),
        ("added", "1.0.14"),
    }
    assert await mirroring.keys() == []
    code, out, _ = await bastion(config, "registry", "sync", "--dry-run")
    assert code == 0 and "official: would change (3 pages)" in out and "filtered" in out


async def test_sync_from_the_shell_imports_and_reports(
    mirroring: Mirroring, tmp_path: Path
) -> None:
    """A real run stores what the filters allow with the configured groups; a second one has
    nothing to do."""
    config = with_mirror(mirroring, tmp_path / "bastion.toml")
    code, out, err = await bastion(config, "registry", "sync", "--mirror", "official")
    assert code == 0, err
    assert "official: synced (3 pages): added 2, updated 0, curated 0, refused 0" in out
    assert [e.groups for e in await mirroring.stored()] == [("team-a",), ("team-a",)]
    code, out, _ = await bastion(config, "registry", "sync")
    assert code == 0 and "added 0" in out


async def test_an_unknown_mirror_or_a_failing_upstream_is_an_error(
    mirroring: Mirroring, tmp_path: Path
) -> None:
    """--mirror names a configured mirror (exit 2, listing them); an upstream that fails is
    exit 1 with the reason."""
    config = with_mirror(mirroring, tmp_path / "bastion.toml")
    code, _, err = await bastion(config, "registry", "sync", "--mirror", "nope")
    assert code == 2 and "no mirror named 'nope'" in err and "official" in err
    mirroring.upstream.override = lambda query, n: Response("down", status_code=503)
    code, _, err = await bastion(config, "registry", "sync")
    assert code == 1 and "503" in err
    plain = config_file(mirroring.reg.settings, tmp_path / "plain.toml")
    code, _, err = await bastion(plain, "registry", "sync")
    assert code == 2 and "[[registry.mirrors]]" in err
