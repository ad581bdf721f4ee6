"""Registry reads with 10,000 entries: ``bastion``'s registry app under uvicorn (its own process,
as ``bastion registry serve`` runs it) on SQLite and on PostgreSQL, against a minimal ASGI app
that answers the very same pages as precomputed bytes (:func:`benchmarks.apps.static`).

Four requests, each with a valid bearer token from bastion's AS (so the resource middleware's
verification, from its verified-token cache, is part of every request) and each recorded in
the audit trail, as every registry request is:

- the first page of ``GET /v0.1/servers?limit=30&version=latest`` (the list VS Code pages);
- a deep page of the same list, by ``cursor`` (nine tenths of the way down);
- ``search=`` a substring that a few hundred of the latest versions contain;
- ``GET /v0.1/servers/{name}/versions/latest``.

The catalogue is 5,000 servers with two versions each; one server in ten is visible only to a
group the benchmark's token does not have, so visibility is filtered in SQL as in use. The
entries are validated like publications and written to each database in one bulk transaction
before any server starts (not measured; the time is reported). Rounds interleave SQLite,
PostgreSQL and the static app for every request.

The scale curve: ``python -m benchmarks --only registry --registry-entries
1000,10000,100000`` measures the same requests with each of these catalogue sizes in turn (a
group of rows per size, ratios for each), and times each request's query in-process with
nothing kept in memory (the cost of the first read after a change). The default is 10,000
entries only; 100,000 takes a few minutes more to validate and seed.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bastion.authserver.admin import add_client
from bastion.config import Settings
from bastion.registry.cursor import encode as cursor_of
from bastion.registry.validation import ValidServer, validate_server
from bastion.registry.versions import Candidate, choose_latest
from bastion.store import registry as store
from bastion.store.database import Database
from bastion.store.registry import ListQuery, Visibility
from bastion.store.schema import registry_entries, registry_entry_groups, registry_servers
from benchmarks import plan as planning
from benchmarks.loadgen import Load, Result, raw_request
from benchmarks.plan import Plan, Target
from benchmarks.report import Ratio, Report, Row
from benchmarks.servers import bastion_environment, bastion_serve, free_port, uvicorn_app
from benchmarks.stack import POSTGRES_URL, Credentials, Stack

SERVERS = 5_000
VERSIONS = ("1.0.0", "1.1.0")
ENTRIES = SERVERS * len(VERSIONS)
QUERY_REPEATS = 20
HIDDEN_GROUP = "finance"  # one server in ten; the benchmark's token is not in it
SEARCH = "postgres"  # in the description of one server in sixteen
TEAMS = ("payments", "search", "data", "identity", "platform", "mobile", "ml", "support")
TOPICS = ("tickets", "invoices", "logs", "metrics", "documents", "calendars", "builds", "alerts")
STARTED = 1_760_000_000_000  # publication times (Unix ms): the same in both databases
SCOPE = "registry:read"
SQLITE = "registry, SQLite"
POSTGRES = "registry, PostgreSQL"
STATIC = "static JSON (same bytes, minimal ASGI app)"
BACKENDS = (SQLITE, POSTGRES)


@dataclass(frozen=True)
class Case:
    """One request measured against every target."""

    key: str
    title: str
    target: str  # path and query


def document(index: int, version: str) -> dict[str, Any]:
    """The server.json of server ``index`` at ``version``."""
    team = TEAMS[index % len(TEAMS)]
    topic = TOPICS[index // len(TEAMS) % len(TOPICS)]
    extra = " in postgres" if index % 16 == 0 else ""
    body: dict[str, Any] = {
        "$schema": "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json",
        "name": f"com.acme.{team}/{topic}-{index:05d}",
        "description": f"Reads and updates the {team} team's {topic}{extra} (server {index})",
        "version": version,
        "title": f"{team.title()} {topic} {index}",
        "websiteUrl": f"https://{team}.acme.example/{topic}",
        "remotes": [
            {
                "type": "streamable-http",
                "url": f"https://mcp.acme.example/{team}/{topic}-{index:05d}/mcp",
                "headers": [
                    {"name": "X-Team", "description": "The calling team", "isRequired": False}
                ],
            }
        ],
    }
    if index % 10 == 9:
        body["_meta"] = {"dev.mcp-bastion/publish": {"groups": [HIDDEN_GROUP]}}
    return body


@dataclass(frozen=True)
class Catalogue:
    """The validated documents, and the rows every database gets."""

    servers: list[dict[str, Any]]
    entries: list[dict[str, Any]]
    groups: list[dict[str, Any]]
    validation_seconds: float

    @property
    def size(self) -> int:
        """How many entries (versions) the catalogue holds."""
        return len(self.entries)

    def visible_latest(self) -> list[dict[str, Any]]:
        """The latest versions the benchmark's token may see, in list order."""
        found = [e for e in self.entries if e["is_latest"] and not e["groups"]]
        return sorted(found, key=lambda e: (e["name"], e["version"]))


def catalogue(servers_count: int = SERVERS) -> Catalogue:
    """Every entry as the service would store it: validated like a publication, approved, the
    latest version chosen by :func:`~bastion.registry.versions.choose_latest`."""
    started = time.perf_counter()
    valid: list[list[ValidServer]] = [
        [validate_server(document(i, v)) for v in VERSIONS] for i in range(servers_count)
    ]
    seconds = time.perf_counter() - started
    servers: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    for index, versions in enumerate(valid):
        first = STARTED + index * len(VERSIONS)
        servers.append({"name": versions[0].name, "created_at": first})
        latest = choose_latest(
            [Candidate(v.version, first + n, "active", True) for n, v in enumerate(versions)]
        )
        for n, one in enumerate(versions):
            at = first + n
            entries.append(
                {
                    "name": one.name,
                    "version": one.version,
                    "description": one.description,
                    "server": one.server,
                    "status": "active",
                    "status_message": None,
                    "status_changed_at": at,
                    "published_at": at,
                    "updated_at": at,
                    "is_latest": one.version == latest,
                    "owner_subject": "import",
                    "owner_client_id": None,
                    "groups": list(one.groups or ()),
                    "approved": True,
                }
            )
            groups += [
                {"name": one.name, "version": one.version, "group_name": group}
                for group in one.groups or ()
            ]
    return Catalogue(servers, entries, groups, seconds)


async def seed(url: str, schema: str | None, rows: Catalogue) -> float:
    """Migrate the database and write the catalogue in one transaction; the seconds it took."""
    started = time.perf_counter()
    db = Database(url, schema=schema)
    try:
        await db.upgrade()
        async with db.transaction() as conn:
            await conn.execute(sa.insert(registry_servers), rows.servers)
            await conn.execute(sa.insert(registry_entries), rows.entries)
            await conn.execute(sa.insert(registry_entry_groups), rows.groups)
        if not db.is_sqlite:
            # The statistics autovacuum would gather within a minute; a registry in use has them.
            async with db.transaction() as conn:
                for table in (registry_servers, registry_entries, registry_entry_groups):
                    await conn.execute(sa.text(f"ANALYZE {table.name}"))
    finally:
        await db.dispose()
    return time.perf_counter() - started


def cases(rows: Catalogue) -> list[Case]:
    """The four requests, with a deep cursor and a name taken from the catalogue."""
    visible = rows.visible_latest()
    cut = len(visible) * 9 // 10  # the page starts after this many entries
    deep = visible[cut - 1]
    middle = visible[len(visible) // 2]["name"]
    matches = sum(SEARCH in e["description"] for e in visible)
    listing = {"limit": "30", "version": "latest"}
    latest = f"/v0.1/servers/{quote(middle, safe='')}/versions/latest"
    return [
        Case(
            "first",
            "GET /v0.1/servers?limit=30&version=latest",
            f"/v0.1/servers?{urlencode(listing)}",
        ),
        Case(
            "deep",
            f"the same list, entries {cut + 1:,}-{cut + 30:,} of {len(visible):,} (by cursor)",
            "/v0.1/servers?"
            + urlencode({**listing, "cursor": cursor_of(deep["name"], deep["version"])}),
        ),
        Case(
            "search",
            f"the same list with search={SEARCH} ({matches} entries match)",
            f"/v0.1/servers?{urlencode({**listing, 'search': SEARCH})}",
        ),
        Case("latest", "GET /v0.1/servers/{name}/versions/latest", latest),
    ]


def group(case: Case, entries: int = ENTRIES) -> str:
    return f"registry ({entries:,} entries): {case.title}"


def name(case: Case, target: str, entries: int = ENTRIES) -> str:
    suffix = "" if entries == ENTRIES else f" ({entries:,} entries)"
    return f"{case.key}: {target}{suffix}"


def sizes(plan: Plan) -> list[int]:
    """The catalogue sizes to measure (``--registry-entries``, default 10,000)."""
    smallest = 2 * len(VERSIONS) * 16
    if any(n < smallest for n in plan.registry_entries):
        raise ValueError(f"--registry-entries: sizes of at least {smallest}")
    return list(plan.registry_entries)


def _token(issuer: str, client: Credentials, resource: str) -> str:
    answer = httpx.post(
        f"{issuer}/token",
        data={"grant_type": "client_credentials", "resource": resource, "scope": SCOPE},
        headers={"Authorization": client.basic()},
        timeout=10,
        trust_env=False,
    )
    answer.raise_for_status()
    token: str = answer.json()["access_token"]
    return token


def _fetch(url: str, token: str, target: str) -> bytes:
    answer = httpx.get(
        url + target, headers={"Authorization": f"Bearer {token}"}, timeout=30, trust_env=False
    )
    if answer.status_code != 200:
        raise RuntimeError(f"GET {url}{target} answered {answer.status_code}: {answer.text[:300]}")
    return answer.content


@dataclass
class Backend:
    """One registry process to measure: its row label, port, settings and extra environment."""

    label: str
    port: int
    settings: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    seed_seconds: float = 0.0
    token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def backend(stack: Stack, label: str, database: dict[str, str], **env: str) -> Backend:
    """A registry on its own origin (``http://127.0.0.1:<port>``, API at /v0.1) on ``database``."""
    port = free_port()
    values = stack.settings(registry={"enabled": True, "public_url": f"http://127.0.0.1:{port}"})
    values.pop("database_url", None)
    values.pop("database_schema", None)
    return Backend(label, port, {**values, **database}, dict(env))


@dataclass
class Measured:
    """Rounds per row name, and the body every target answered for each case."""

    results: dict[str, list[Result]]
    bodies: dict[str, bytes]


@contextlib.contextmanager
def _serving(plan: Plan, backends: Sequence[Backend]) -> Iterator[dict[str, int]]:
    """Every backend's registry process; yields their process ids by label (whose CPU each
    measurement reads)."""
    with contextlib.ExitStack() as running:
        pids: dict[str, int] = {}
        for one in backends:
            server = running.enter_context(
                uvicorn_app(
                    one.label,
                    "benchmarks.apps:registry",
                    port=one.port,
                    env={**bastion_environment(one.settings), **one.env},
                    cpus=plan.server_cpus,
                    ready_path="/openapi.json",
                )
            )
            pids[one.label] = server.process.pid
        yield pids


async def _reader(stack: Stack, backends: Sequence[Backend]) -> tuple[dict[str, Any], Credentials]:
    """The AS's settings (the registries as resources) and a client allowed registry:read."""
    resources = [
        *stack.settings()["resources"],
        *({"uri": b.url, "name": b.label, "scopes": [SCOPE]} for b in backends),
    ]
    settings = stack.settings(resources=resources)
    client = await add_client(
        Settings(**settings),
        client_id=f"bench-registry-reader-{uuid.uuid4().hex[:8]}",
        name="benchmark registry reader",
        redirect_uris=[],
        confidential=True,
        grant_types=["client_credentials"],
        resources=["*"],
        scope=SCOPE,
    )
    return settings, Credentials(client.client.client_id, client.secret)


def _load_maker(
    plan: Plan, port: int, token: str, case: Case, body: bytes, pid: int
) -> Callable[[], Awaitable[Load]]:
    request = raw_request(
        "127.0.0.1", port, "GET", case.target, headers={"Authorization": f"Bearer {token}"}
    )

    async def make() -> Load:
        return planning.load(plan, port, [request], expect_body=body, watch=(pid,))

    return make


async def measure(
    plan: Plan,
    stack: Stack,
    rows: Catalogue,
    requests: Sequence[Case],
    backends: Sequence[Backend],
    tmp: Path,
) -> Measured:
    """Seed every backend, start the AS, the registries and the static app, check that every
    registry answers each case with the same bytes, then measure in interleaved rounds."""
    for one in backends:
        model = Settings(**one.settings)
        one.seed_seconds = await seed(model.effective_database_url, model.database_schema, rows)
    as_settings, reader = await _reader(stack, backends)
    static_port = free_port()
    pages = tmp / "pages.json"
    with (
        bastion_serve(as_settings, port=stack.as_port, cpus=plan.server_cpus),
        _serving(plan, backends) as pids,
    ):
        for one in backends:
            one.token = _token(stack.issuer, reader, one.url)
        first = backends[0]
        bodies = {case.key: _fetch(first.url, first.token, case.target) for case in requests}
        for one in backends[1:]:
            for case in requests:
                if _fetch(one.url, one.token, case.target) != bodies[case.key]:
                    raise RuntimeError(f"{one.label} answers {case.target} unlike {first.label}")
        pages.write_text(
            json.dumps({case.target: bodies[case.key].decode("utf-8") for case in requests})
        )
        with uvicorn_app(
            "static",
            "benchmarks.apps:static",
            port=static_port,
            env={"BENCH_STATIC_PAGES": str(pages)},
            cpus=plan.server_cpus,
        ) as static:
            targets: list[Target] = []
            for case in requests:
                body = bodies[case.key]
                for one in backends:
                    make = _load_maker(plan, one.port, one.token, case, body, pids[one.label])
                    targets.append((name(case, one.label), make))
                make = _load_maker(plan, static_port, first.token, case, body, static.process.pid)
                targets.append((name(case, STATIC), make))
            results = await planning.interleaved(plan, targets)
    return Measured(results, bodies)


@contextlib.asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A schema name for the PostgreSQL registry, dropped (if it was made) at the end."""
    schema = f"bench_registry_{uuid.uuid4().hex[:12]}"
    try:
        yield schema
    finally:
        engine = create_async_engine(POSTGRES_URL)
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            await engine.dispose()


async def query_times(url: str, schema: str | None, rows: Catalogue) -> dict[str, float]:
    """Milliseconds of each request's query alone (best of QUERY_REPEATS, in this process,
    through :mod:`bastion.store.registry` as the service calls it, nothing kept in memory)."""
    visible = rows.visible_latest()
    deep = visible[len(visible) * 9 // 10 - 1]
    middle = visible[len(visible) // 2]["name"]
    view = Visibility(everything=False, subject="bench-reader", groups=frozenset())
    queries = {
        "first": ListQuery(limit=31, latest_only=True),
        "deep": ListQuery(limit=31, latest_only=True, after=(deep["name"], deep["version"])),
        "search": ListQuery(limit=31, latest_only=True, search=SEARCH),
    }
    db = Database(url, schema=schema)
    best: dict[str, float] = {}
    try:
        async with db.connect() as conn:
            for _ in range(QUERY_REPEATS):
                for key, query in queries.items():
                    started = time.perf_counter()
                    await store.list_entries(conn, query, view)
                    elapsed = time.perf_counter() - started
                    best[key] = min(best.get(key, elapsed), elapsed)
                started = time.perf_counter()
                await store.versions_of(conn, middle, view)
                elapsed = time.perf_counter() - started
                best["latest"] = min(best.get("latest", elapsed), elapsed)
    finally:
        await db.dispose()
    return {key: seconds * 1000 for key, seconds in best.items()}


async def run(plan: Plan, stack: Stack, report: Report) -> None:
    for entries in sizes(plan):
        await run_size(plan, stack, report, entries)


async def run_size(plan: Plan, stack: Stack, report: Report, entries: int) -> None:
    """Measure the four requests with a catalogue of ``entries`` versions."""
    rows = catalogue(max(1, entries // len(VERSIONS)))
    requests = cases(rows)
    queried: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bastion-bench-registry-") as tmp:
        sqlite = {"database_url": f"sqlite+aiosqlite:///{Path(tmp) / 'registry.db'}"}
        async with contextlib.AsyncExitStack() as cleanup:
            backends = [backend(stack, SQLITE, sqlite)]
            if plan.use_postgres:
                schema = await cleanup.enter_async_context(postgres_schema())
                postgres = {"database_url": POSTGRES_URL, "database_schema": schema}
                backends.append(backend(stack, POSTGRES, postgres))
            measured = await measure(plan, stack, rows, requests, backends, Path(tmp))
            for one in backends:
                model = Settings(**one.settings)
                queried[one.label] = await query_times(
                    model.effective_database_url, model.database_schema, rows
                )
    for case in requests:
        size = f"{len(measured.bodies[case.key]):,} bytes"
        for label in (*BACKENDS, STATIC):
            key = name(case, label)
            row = name(case, label, rows.size)
            if key in measured.results:
                report.rows.append(
                    Row(group(case, rows.size), row, rounds=measured.results[key], note=size)
                )
            else:
                report.rows.append(
                    Row(
                        group(case, rows.size),
                        row,
                        note="not measured (--sqlite, or no PostgreSQL)",
                    )
                )
        for label in BACKENDS:
            suffix = "" if rows.size == ENTRIES else f" ({rows.size:,} entries)"
            report.ratios.append(
                Ratio(
                    f"registry {case.key}{suffix}: {label.removeprefix('registry, ')} / static",
                    name(case, label, rows.size),
                    name(case, STATIC, rows.size),
                )
            )
    seeded = ", ".join(
        f"{b.label.removeprefix('registry, ')} {b.seed_seconds:.1f} s" for b in backends
    )
    report.notes.append(
        f"registry: {rows.size:,} entries ({rows.size // len(VERSIONS):,} servers x "
        f"{len(VERSIONS)} versions) validated in {rows.validation_seconds:.1f} s, then written "
        f"in one transaction per database (migrations included): {seeded}; not measured. Each "
        "registry request is verified (token from the cache), answered from the answers kept "
        "in memory after the first (bastion.registry.read_cache), and waits for its audit "
        "record's commit (group commit). The registry and the static app are pinned to the "
        "server CPU; PostgreSQL is not."
    )
    for label, times in queried.items():
        report.notes.append(
            f"registry ({rows.size:,} entries), {label.removeprefix('registry, ')}: each "
            "query alone, nothing kept in memory (best of "
            f"{QUERY_REPEATS}): " + ", ".join(f"{key} {ms:.2f} ms" for key, ms in times.items())
        )


__all__ = [
    "ENTRIES",
    "Backend",
    "Case",
    "Catalogue",
    "Measured",
    "backend",
    "cases",
    "catalogue",
    "document",
    "measure",
    "postgres_schema",
    "query_times",
    "run",
    "run_size",
    "seed",
    "sizes",
]
