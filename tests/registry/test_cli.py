"""`bastion registry audit` and `bastion registry import` against a real database, and import
from another registry served over HTTP (following nextCursor)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.config import Settings
from bastion.identity.local import LocalUsers
from bastion.registry.app import create_registry_app
from tests.registry.harness import (
    MillisClock,
    Registry,
    registry_settings,
    running_registry,
    server_json,
)
from tests.support.live import serve

runner = CliRunner()


def config_file(settings: Settings, path: Path) -> Path:
    """A TOML configuration naming the test's database."""
    lines = [
        f'issuer = "{settings.issuer}"',
        f'data_dir = "{settings.data_dir}"',
        'secret_key = "test-secret-key-that-is-long-enough-0123456789"',
        f'database_url = "{settings.database_url}"',
    ]
    if settings.database_schema:
        lines.append(f'database_schema = "{settings.database_schema}"')
    lines += ["[registry]", "enabled = true"]
    path.write_text("\n".join(lines) + "\n")
    return path


async def bastion(config: Path, *args: str) -> tuple[int, str, str]:
    """Run the CLI in a thread (it runs its own event loop)."""
    result = await asyncio.to_thread(runner.invoke, app, [*args, "--config", str(config)])
    return result.exit_code, result.stdout, result.stderr


async def test_audit_exports_json_lines_filtered_by_subject_and_time(
    reg: Registry, tmp_path: Path
) -> None:
    """`bastion registry audit --json [--subject] [--since]`: one JSON object per line."""
    alice = await reg.token("alice", groups=["team-a"], client_id="vscode")
    await reg.client.get(
        f"{reg.base}/servers", headers={**reg.bearer(alice), "X-Request-Id": "trace-cli-1"}
    )
    await reg.client.get(f"{reg.base}/servers")
    config = config_file(reg.settings, tmp_path / "bastion.toml")
    code, out, _ = await bastion(config, "registry", "audit", "--json")
    assert code == 0, out
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(x["sub"], x["client_id"], x["action"], x["status"]) for x in lines] == [
        ("alice", "vscode", "list", 200),
        (None, None, "list", 401),
    ]
    assert lines[0]["request_id"] == "trace-cli-1"
    assert lines[1]["request_id"] and lines[1]["request_id"] != "trace-cli-1"
    code, out, _ = await bastion(config, "registry", "audit", "--json", "--subject", "alice")
    assert [json.loads(line)["sub"] for line in out.splitlines()] == ["alice"]
    code, out, _ = await bastion(
        config, "registry", "audit", "--json", "--since", "2999-01-01T00:00:00Z"
    )
    assert code == 0 and out == ""
    code, out, _ = await bastion(config, "registry", "audit")
    assert code == 0 and "action" in out and "401" in out
    assert "request_id" in out and "trace-cli-1" in out
    code, _, err = await bastion(config, "registry", "audit", "--since", "yesterday")
    assert code == 2 and "--since" in err


async def test_audit_takes_and_shows_user_names_not_only_opaque_subjects(
    reg: Registry, tmp_path: Path
) -> None:
    """Subjects of local users are opaque ids: ``--subject carol`` means carol's id, and the
    table and JSON lines name her."""
    carol = await LocalUsers(reg.auth_app.state.bastion.db).add("carol", "a long password 01")
    token = await reg.token(carol.id, groups=["team-a"])
    await reg.client.get(f"{reg.base}/servers", headers=reg.bearer(token))
    other = await reg.token("someone-else")
    await reg.client.get(f"{reg.base}/servers", headers=reg.bearer(other))
    config = config_file(reg.settings, tmp_path / "bastion.toml")
    code, out, _ = await bastion(config, "registry", "audit", "--json", "--subject", "carol")
    assert code == 0, out
    [line] = [json.loads(x) for x in out.splitlines()]
    assert (line["sub"], line["user"]) == (carol.id, "carol")
    code, out, _ = await bastion(config, "registry", "audit", "--subject", carol.id)
    assert code == 0 and "carol" in out and "someone-else" not in out
    code, out, _ = await bastion(config, "registry", "audit")
    assert "carol" in out and "someone-else" in out and carol.id not in out


async def test_import_reads_a_file_of_server_json_documents(reg: Registry, tmp_path: Path) -> None:
    """A JSON array, a ServerList, or JSON lines; invalid documents are reported (exit 1),
    versions already present are skipped; entries get the given groups and are approved."""
    source = tmp_path / "servers.jsonl"
    source.write_text(
        "\n".join(
            json.dumps(d)
            for d in [
                server_json("io.x/one"),
                {"servers": [{"server": server_json("io.x/two")}]},
                {"name": "bad name", "description": "x", "version": "1"},
            ]
        )
    )
    config = config_file(reg.settings, tmp_path / "bastion.toml")
    code, out, err = await bastion(
        config, "registry", "import", str(source), "--group", "team-a", "--owner", "ops"
    )
    assert code == 1, out + err
    assert "imported 2, already present 0, invalid 1" in out
    assert "bad name@1" in err and "body.name" in err
    ann = await reg.token("ann", groups=["team-a"])
    assert await reg.list_names(ann) == ["io.x/one@1.0.0", "io.x/two@1.0.0"]
    assert await reg.list_names(await reg.token("bob", groups=["team-b"])) == []
    source.write_text(json.dumps([server_json("io.x/one"), server_json("io.x/three")]))
    code, out, _ = await bastion(config, "registry", "import", str(source))
    assert code == 0, out
    assert "imported 1, already present 1, invalid 0" in out
    code, out, _ = await bastion(config, "registry", "audit", "--json", "--subject", "ops")
    assert [json.loads(line)["result"] for line in out.splitlines()] == ["ok", "ok", "invalid"]


async def test_import_follows_next_cursor_of_another_registry(
    reg: Registry, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """From a registry URL: GET /v0.1/servers?version=latest pages until nextCursor is empty
    (more than one page of 100), with a token for the source read from --token-file; what the
    source shows that token is what is imported."""
    source_settings = make_settings(
        data_dir=tmp_path / "source",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'source.db'}",
        database_schema=None,
        registry=registry_settings(),
    )
    async with running_registry(source_settings, MillisClock()) as source:
        admin = await source.admin()
        for i in range(105):
            await source.published(admin, server_json(f"io.public/s{i:03d}"))
        await source.published(admin, server_json("io.public/s000", "2.0.0"))
        await source.published(admin, server_json("io.public/hidden", groups=["staff"]))
        jwks = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=source.auth_app), base_url=source_settings.issuer
        )
        async with serve(create_registry_app(source_settings, http=jwks)) as url:
            config = config_file(reg.settings, tmp_path / "bastion.toml")
            code, out, err = await bastion(config, "registry", "import", f"{url}/registry")
            assert code == 1 and "answered 401" in err
            token = tmp_path / "token"
            token.write_text(await source.token("importer", groups=[]) + "\n")
            code, out, err = await bastion(
                config, "registry", "import", f"{url}/registry", "--token-file", str(token)
            )
            assert code == 0, out + err
            assert "imported 105, already present 0, invalid 0" in out
        await jwks.aclose()
    names = await reg.list_names(await reg.admin(), version="latest", limit=100)
    assert len(names) == 105
    assert "io.public/s000@2.0.0" in names
    assert not any("hidden" in n for n in names)


async def test_registry_serve_refuses_to_start_when_the_registry_is_off(
    settings: Settings, tmp_path: Path
) -> None:
    """`bastion registry serve` without [registry] enabled: exit code 2 and what to set."""
    path = tmp_path / "off.toml"
    path.write_text(f'issuer = "{settings.issuer}"\ndata_dir = "{settings.data_dir}"\n')
    code, _, err = await bastion(path, "registry", "serve")
    assert code == 2
    assert "[registry] enabled = true" in err
