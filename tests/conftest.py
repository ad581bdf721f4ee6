"""Shared fixtures: settings on SQLite and PostgreSQL, the AS app with its lifespan, a client.

PostgreSQL tests use the server named by BASTION_TEST_POSTGRES_URL (default: the local one on
127.0.0.1:5432, database ``test``), each test in a schema of its own. Without a server they skip
with a message, unless BASTION_REQUIRE_POSTGRES=1 (CI), where they fail.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.ext.asyncio import create_async_engine

from bastion.config import ResourceSettings, Settings
from bastion.identity import passwords
from bastion.private_files import create_private
from bastion.store.database import Database

POSTGRES_URL = os.environ.get(
    "BASTION_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("BASTION_REQUIRE_POSTGRES") == "1"
# The fuzz case tally at the end of the run (loaded here: an xdist controller collects nothing).
pytest_plugins = ["tests.fuzz.report"]
ISSUER = "http://localhost"
RESOURCE = "http://localhost:9001/mcp"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that takes the ``pg`` fixture (PostgreSQL's own
    behaviour) has no SQLite run: its SQLite variant is deselected rather than skipped, so that
    a skip in CI always means something is missing."""
    keep, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        sqlite = callspec is not None and callspec.params.get("backend") == "sqlite"
        uses_pg = "pg" in getattr(item, "fixturenames", ())
        (dropped if sqlite and uses_pg else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


# argon2id as in production but with the least work (one pass over 64 KiB, one lane): a hash or
# a check takes microseconds instead of a fifth of a second of CPU, in every test that adds a
# user or signs in. The production parameters are pinned by tests/test_password_hashing.py
# (marked production_passwords) and used by every test that runs the `bastion` executable.
TEST_HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


@pytest.fixture(autouse=True)
def quick_password_hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process, passwords are hashed with :data:`TEST_HASHER` (not in tests marked
    ``production_passwords``)."""
    if request.node.get_closest_marker("production_passwords") is None:
        monkeypatch.setattr(passwords, "_hasher", TEST_HASHER)
        monkeypatch.setattr(passwords, "_DUMMY", TEST_DUMMY)


TEST_DUMMY = TEST_HASHER.hash("not anybody's password")


def _postgres_reachable() -> bool:
    parts = urlsplit(POSTGRES_URL.replace("+asyncpg", ""))
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A SQLite database at the newest migration, made once per run: a test gets a copy in a
    few milliseconds, where migrating takes a tenth of a second or more. Tests of the
    migrations themselves, and of anything that must find no tables, are marked
    ``empty_database`` and start from nothing."""
    path = tmp_path_factory.mktemp("migrated") / "bastion.db"

    async def migrate() -> None:
        database = Database(f"sqlite+aiosqlite:///{path}")
        try:
            await database.upgrade()
        finally:
            await database.dispose()

    # In a thread of its own: the fixture may be set up while a test's event loop runs.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, migrate()).result()
    return path.read_bytes()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """Database settings for one test: a SQLite file at the newest migration (empty with the
    ``empty_database`` mark), or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        path = tmp_path / "bastion.db"
        if request.node.get_closest_marker("empty_database") is None:
            migrated = request.getfixturevalue("migrated_sqlite")
            create_private(path)
            path.write_bytes(migrated)
        yield {"database_url": f"sqlite+aiosqlite:///{path}"}
        return
    if not _postgres_reachable():
        message = f"PostgreSQL is not reachable at {POSTGRES_URL}"
        if REQUIRE_POSTGRES:
            pytest.fail(message + " (BASTION_REQUIRE_POSTGRES=1)")
        pytest.skip(message + "; set BASTION_TEST_POSTGRES_URL to run these tests")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield {"database_url": POSTGRES_URL, "database_schema": schema}
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await engine.dispose()


@pytest.fixture
async def pg(backend: dict[str, Any]) -> AsyncIterator[Database]:
    """A migrated PostgreSQL schema (the SQLite run of a test using it is deselected, see
    :func:`pytest_collection_modifyitems`)."""
    if "database_schema" not in backend:
        pytest.skip("PostgreSQL only")
    db = Database(backend["database_url"], schema=backend["database_schema"])
    await db.upgrade()
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
def make_settings(tmp_path: Path, backend: dict[str, Any]) -> Callable[..., Settings]:
    """Build Settings for a test; keyword arguments override the defaults."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "issuer": ISSUER,
            "data_dir": tmp_path / "data",
            "secret_key": "test-secret-key-that-is-long-enough-0123456789",
            "resources": [ResourceSettings(uri=RESOURCE, name="demo", scopes=["mcp:tools"])],
            **backend,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Default test settings."""
    return make_settings()


@pytest.fixture
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the AS app in-process, lifespan run."""
    async with running(settings) as client:
        yield client


from tests.support.asgi import running  # noqa: E402


@pytest.fixture
async def live_as(make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[str, Settings]]:
    """The authorization server under uvicorn on a loopback port; yields (issuer, settings).

    The issuer is http://127.0.0.1:<port>; the resource http://127.0.0.1:<port>/mcp is configured.
    """
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings = make_settings(
        issuer=issuer,
        resources=[ResourceSettings(uri=f"{issuer}/mcp", name="demo", scopes=["mcp:tools"])],
    )
    async with serve(create_app(settings), port=port) as url:
        assert url == issuer
        yield issuer, settings


from bastion.authserver.app import create_app  # noqa: E402
from tests.support.live import free_port, serve  # noqa: E402


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Child processes a test starts (append them): terminated at its end, killed after 10 s."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
