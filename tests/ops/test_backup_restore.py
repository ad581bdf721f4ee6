"""Backup and restore, done with the commands docs/operations.md gives, on a real deployment.

A ``bastion serve`` process signs a person in; the database is backed up with the documented
command (``pg_dump`` of the schema, or SQLite's online ``.backup``) and ``secret.key`` kept
beside it; the refresh token is rotated after the backup; then the backup is restored the
documented way (a new PostgreSQL database, or the file put back) and a new process started on it:

- with the same ``secret_key`` it publishes the same signing keys, so tokens issued before the
  backup still verify, and the refresh token current at backup time works once more (the
  documented caveat: a restore brings back refresh tokens spent since the backup) until the
  documented ``DELETE FROM token_families`` ends every refresh family;
- a refresh token issued after the backup is unknown to the restored database;
- with another ``secret_key`` the process refuses to start and says which setting is wrong.

Every command string run here must appear verbatim in docs/operations.md
(:func:`test_the_commands_run_here_are_the_documented_ones`), so the page cannot drift from
what was proven.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy.ext.asyncio import create_async_engine

from bastion.config import Settings
from tests.scaleout.processes import require_postgres, running
from tests.support.flow import add_user, authorize, exchange, register
from tests.support.live import free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
POSTGRES_URL = os.environ.get(
    "BASTION_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
SECRET_KEY = "backup-restore-test-secret-key-0123456789"
OTHER_SECRET_KEY = "another-secret-key-that-never-encrypted-0123456789"
RESOURCE = "/mcp"
METADATA = "/.well-known/oauth-authorization-server"

# The documented commands, with $VARIABLES as the page writes them.
PG_BACKUP = 'pg_dump --format=custom --no-owner --schema="$SCHEMA" --file=bastion.dump "$DATABASE"'
PG_CREATE = 'createdb --maintenance-db="$DATABASE" "$NEW_DATABASE"'
PG_RESTORE = 'pg_restore --no-owner --dbname="$NEW_DATABASE_URL" bastion.dump'
SQLITE_BACKUP = 'sqlite3 "$DATA_DIR/bastion.db" ".backup \'bastion-backup.db\'"'
END_REFRESH_FAMILIES = "DELETE FROM token_families;"
COMMANDS = [PG_BACKUP, PG_CREATE, PG_RESTORE, SQLITE_BACKUP, END_REFRESH_FAMILIES]


def test_the_commands_run_here_are_the_documented_ones() -> None:
    """docs/operations.md shows each command this test runs, character for character."""
    page = DOC.read_text()
    for command in COMMANDS:
        assert command in page, f"docs/operations.md no longer shows: {command}"


def _sh(command: str, cwd: Path, **variables: str) -> None:
    """Run a documented command in a shell, its $VARIABLES from ``variables``."""
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"


def _libpq(url: str) -> str:
    """The SQLAlchemy URL as libpq's tools take it."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


async def _sign_in(server_url: str, settings: Settings) -> tuple[str, dict[str, Any]]:
    """A public client registered, alice signed in: (client_id, token response)."""
    await add_user(settings)
    async with httpx.AsyncClient(base_url=server_url, timeout=10, trust_env=False) as http:
        app = await register(http)
        done = await authorize(http, app["client_id"], resource=f"{settings.issuer}{RESOURCE}")
        answer = await exchange(http, app["client_id"], done)
        assert answer.status_code == 200, answer.text
        return app["client_id"], answer.json()


async def _refresh(server_url: str, client_id: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server_url, timeout=10, trust_env=False) as http:
        return await http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id},
        )


async def _jwks(server_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server_url, timeout=10, trust_env=False) as http:
        return (await http.get("/jwks")).json()  # type: ignore[no-any-return]


def _settings(port: int, data_dir: Path, **database: str) -> dict[str, Any]:
    issuer = f"http://127.0.0.1:{port}"
    return {
        "issuer": issuer,
        "data_dir": str(data_dir),
        "resources": [{"uri": f"{issuer}{RESOURCE}", "name": "demo", "scopes": ["mcp:tools"]}],
        **database,
    }


def _assert_refused(answer: httpx.Response) -> None:
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_grant"


async def _check_restored(
    url: str, client_id: str, before: dict[str, Any], jwks: dict[str, Any], spent_after: str
) -> None:
    """What a restored deployment must show (see the module docstring), up to the clean-up."""
    restored_jwks = await _jwks(url)
    assert {k["kid"] for k in restored_jwks["keys"]} == {k["kid"] for k in jwks["keys"]}
    jwt.decode(before["access_token"], KeySet.import_key_set(restored_jwks))  # still verifies
    _assert_refused(await _refresh(url, client_id, spent_after))
    again = await _refresh(url, client_id, before["refresh_token"])
    assert again.status_code == 200, again.text


@pytest.fixture
def postgres_databases() -> Iterator[list[str]]:
    """Schemas and databases a test made, dropped afterwards (names appended by the test)."""
    require_postgres(POSTGRES_URL)
    made: list[str] = []
    yield made
    for name in made:
        kind, _, ident = name.partition(":")
        statement = (
            f'DROP DATABASE IF EXISTS "{ident}" WITH (FORCE)'
            if kind == "database"
            else f'DROP SCHEMA IF EXISTS "{ident}" CASCADE'
        )
        subprocess.run(
            ["psql", _libpq(POSTGRES_URL), "-qc", statement], capture_output=True, check=False
        )


@pytest.fixture
def tmp_workdir(tmp_path: Path) -> Path:
    """Where the documented commands run (the backup files land here)."""
    work = tmp_path / "backup"
    work.mkdir()
    return work


@pytest.mark.postgres
async def test_a_postgresql_backup_and_secret_key_restore_a_deployment_that_serves_on(
    tmp_path: Path, tmp_workdir: Path, postgres_databases: list[str]
) -> None:
    schema, new_database = f"b_{uuid.uuid4().hex[:12]}", f"restored_{uuid.uuid4().hex[:12]}"
    postgres_databases += [f"schema:{schema}", f"database:{new_database}"]
    port = free_port()
    database = {"database_url": POSTGRES_URL, "database_schema": schema}
    environment = {**_settings(port, tmp_path / "a", **database), "secret_key": SECRET_KEY}
    url = f"http://127.0.0.1:{port}"

    with running(environment, ["serve", "--port", str(port)], url=url, ready_path=METADATA):
        client_id, before = await _sign_in(url, Settings(**environment))
        jwks = await _jwks(url)
        _sh(PG_BACKUP, tmp_workdir, SCHEMA=schema, DATABASE=_libpq(POSTGRES_URL))
        rotated = await _refresh(url, client_id, before["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        spent_after = rotated.json()["refresh_token"]

    new_url = _with_database(POSTGRES_URL, new_database)
    _sh(PG_CREATE, tmp_workdir, DATABASE=_libpq(POSTGRES_URL), NEW_DATABASE=new_database)
    _sh(PG_RESTORE, tmp_workdir, NEW_DATABASE_URL=_libpq(new_url))

    restored = {**environment, "database_url": new_url}
    with running(restored, ["serve", "--port", str(port)], url=url, ready_path=METADATA):
        await _check_restored(url, client_id, before, jwks, spent_after)
        search_path = {"server_settings": {"search_path": schema}}
        engine = create_async_engine(new_url, connect_args=search_path)
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.text(END_REFRESH_FAMILIES))
        finally:
            await engine.dispose()
        _assert_refused(await _refresh(url, client_id, before["refresh_token"]))

    wrong = {**restored, "secret_key": OTHER_SECRET_KEY}
    with (
        pytest.raises(RuntimeError, match="the configured secret_key is not the one"),
        running(wrong, ["serve", "--port", str(port)], url=url, ready_path=METADATA),
    ):
        pass


async def test_a_sqlite_backup_and_secret_key_restore_a_deployment_that_serves_on(
    tmp_path: Path, tmp_workdir: Path
) -> None:
    if shutil.which("sqlite3") is None:
        pytest.fail("the sqlite3 command is missing: scripts/test-setup.sh installs it")
    port = free_port()
    data_dir = tmp_path / "data"
    environment = _settings(port, data_dir)
    url = f"http://127.0.0.1:{port}"

    with running(environment, ["serve", "--port", str(port)], url=url, ready_path=METADATA):
        client_id, before = await _sign_in(url, Settings(**environment))
        jwks = await _jwks(url)
        # Online: the documented backup runs while the server serves.
        _sh(SQLITE_BACKUP, tmp_workdir, DATA_DIR=str(data_dir))
        shutil.copy2(data_dir / "secret.key", tmp_workdir / "secret.key")
        rotated = await _refresh(url, client_id, before["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        spent_after = rotated.json()["refresh_token"]

    new_dir = tmp_path / "restored"
    new_dir.mkdir(mode=0o700)
    shutil.copy2(tmp_workdir / "bastion-backup.db", new_dir / "bastion.db")
    shutil.copy2(tmp_workdir / "secret.key", new_dir / "secret.key")
    restored = {**environment, "data_dir": str(new_dir)}
    with running(restored, ["serve", "--port", str(port)], url=url, ready_path=METADATA):
        await _check_restored(url, client_id, before, jwks, spent_after)

    (new_dir / "secret.key").write_text(OTHER_SECRET_KEY + "\n")
    with (
        pytest.raises(RuntimeError, match="the configured secret_key is not the one"),
        running(restored, ["serve", "--port", str(port)], url=url, ready_path=METADATA),
    ):
        pass
