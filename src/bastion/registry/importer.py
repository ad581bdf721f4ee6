"""``bastion registry import``: copy server.json documents into the registry, from a file or from
another registry's v0.1 API (following ``metadata.nextCursor``), to curate a subset of a public
registry.

A file holds one server.json, a JSON array of them, a ServerList (``{"servers": [{"server":
…}]}``), or JSON lines of either form. A URL is another registry's base URL: its
``/v0.1/servers`` pages are read (``search`` and ``version=latest`` narrow them). Each document is
validated like a publication; versions already present are skipped; imported entries belong to
``owner`` (default ``import``), carry ``groups``, and are approved unless told otherwise. One audit
record per imported or refused document (action ``import``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bastion.config import Settings
from bastion.private_files import private_dir
from bastion.registry.audit import clean_name, clean_version
from bastion.registry.problems import Problem
from bastion.registry.read_cache import writing
from bastion.registry.service import Registry, new_entry
from bastion.registry.times import MillisClock, system_millis
from bastion.registry.validation import validate_server
from bastion.store import registry as rows
from bastion.store.database import Database
from bastion.store.registry import AuditRecord

MAX_PAGES = 10_000
PAGE_LIMIT = 100


class ImportSourceError(Exception):
    """The source cannot be read: what failed and what to do."""


@dataclass
class ImportReport:
    """What an import did."""

    imported: int = 0
    skipped: int = 0
    invalid: list[str] = field(default_factory=list)


def _documents(value: Any) -> Iterator[Any]:
    if isinstance(value, list):
        for item in value:
            yield from _documents(item)
    elif isinstance(value, dict) and isinstance(value.get("servers"), list):
        for item in value["servers"]:
            yield item.get("server", item) if isinstance(item, dict) else item
    elif isinstance(value, dict) and isinstance(value.get("server"), dict):
        yield value["server"]
    else:
        yield value


def read_file(path: Path) -> list[Any]:
    """The server.json documents of a file (see the module docstring)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportSourceError(f"cannot read {path}: {exc}") from None
    try:
        return list(_documents(json.loads(text)))
    except ValueError:
        pass
    found: list[Any] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            found += _documents(json.loads(line))
        except ValueError as exc:
            raise ImportSourceError(
                f"{path} is neither JSON nor JSON lines (line {number}: {exc})"
            ) from None
    return found


async def read_registry(
    base_url: str,
    http: httpx.AsyncClient,
    *,
    search: str | None = None,
    latest_only: bool = True,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[list[Any]]:
    """The pages of another registry's ``GET /v0.1/servers``, following ``nextCursor``."""
    url = base_url.rstrip("/") + "/v0.1/servers"
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        params: dict[str, str | int] = {"limit": PAGE_LIMIT}
        if latest_only:
            params["version"] = "latest"
        if search:
            params["search"] = search
        if cursor:
            params["cursor"] = cursor
        try:
            response = await http.get(url, params=params, headers=headers or {})
        except httpx.HTTPError as exc:
            raise ImportSourceError(f"cannot reach {url}: {exc}") from None
        if response.status_code != 200:
            raise ImportSourceError(f"{url} answered {response.status_code}: {response.text[:200]}")
        try:
            body = response.json()
            servers = body["servers"]
            metadata = body.get("metadata") or {}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ImportSourceError(f"{url} did not answer a ServerList") from None
        yield list(_documents({"servers": servers}))
        cursor = metadata.get("nextCursor") or metadata.get("next_cursor")
        if not cursor:
            return
        if cursor in seen:
            raise ImportSourceError(f"{url} returned the cursor {cursor!r} twice; stopping")
        seen.add(cursor)
    raise ImportSourceError(f"{url} has more than {MAX_PAGES} pages; narrow it with --search")


class Importer:
    """Stores imported documents through the registry's own validation and latest choice."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        owner: str = "import",
        groups: tuple[str, ...] = (),
        approved: bool = True,
        clock: MillisClock = system_millis,
    ) -> None:
        self.db = db
        self.owner = owner
        self.groups = tuple(sorted(set(groups)))
        self.approved = approved
        self.clock = clock
        self.registry = Registry(
            db, settings.registry, clock=clock, challenge=lambda scope, dpop: ""
        )
        self.report = ImportReport()

    async def add(self, document: Any) -> None:
        """Import one document (counted in :attr:`report`)."""
        label = _label(document)
        now = self.clock()
        try:
            if not isinstance(document, dict):
                raise Problem(400, "not a JSON object")
            valid = validate_server(document)
            entry = new_entry(
                valid,
                now,
                owner_subject=self.owner,
                owner_client_id=None,
                groups=valid.groups if valid.groups is not None else self.groups,
                approved=self.approved,
            )
            await self.registry.insert(entry, now)
        except Problem as problem:
            if problem.status == 409:
                self.report.skipped += 1
                await self._audit(document, now, 409, "exists")
                return
            reasons = "; ".join(f"{e.location}: {e.message}" for e in problem.errors)
            self.report.invalid.append(
                f"{label}: {problem.detail}{' (' + reasons + ')' if reasons else ''}"
            )
            await self._audit(document, now, problem.status, problem.audit_result)
            return
        self.report.imported += 1
        await self._audit(document, now, 200, "ok")

    async def _audit(self, document: Any, now: int, status: int, result: str) -> None:
        fields = document if isinstance(document, dict) else {}
        async with writing(self.db) as conn:
            await rows.add_audit(
                conn,
                AuditRecord(
                    at=now,
                    subject=self.owner,
                    client_id=None,
                    action="import",
                    server_name=clean_name(fields.get("name")),
                    version=clean_version(fields.get("version")),
                    status=status,
                    result=result,
                ),
            )


def _label(document: Any) -> str:
    if isinstance(document, dict):
        return f"{document.get('name', '?')}@{document.get('version', '?')}"
    return repr(document)[:60]


async def import_documents(
    importer: Importer,
    batches: AsyncIterator[list[Any]],
    progress: Callable[[int, int | None], None] | None = None,
) -> ImportReport:
    """Import every document of ``batches``; ``progress(done, total or None)`` after each."""
    done = 0
    async for batch in batches:
        for document in batch:
            await importer.add(document)
            done += 1
            if progress is not None:
                progress(done, None)
    return importer.report


async def batches_of(documents: list[Any]) -> AsyncIterator[list[Any]]:
    """A file's documents as one batch."""
    yield documents


def is_url(source: str) -> bool:
    """Whether an import source is a registry URL (else a file path)."""
    return source.startswith(("http://", "https://"))


async def run_import(
    settings: Settings,
    source: str,
    *,
    search: str | None = None,
    latest_only: bool = True,
    owner: str = "import",
    groups: tuple[str, ...] = (),
    approved: bool = True,
    token: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    http: httpx.AsyncClient | None = None,
) -> ImportReport:
    """Import from a file or a registry URL into the database of ``settings``."""
    documents: list[Any] | None = None if is_url(source) else read_file(Path(source))
    if settings.database_url is None:
        private_dir(settings.data_dir)
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    client = http or httpx.AsyncClient(timeout=httpx.Timeout(30.0), follow_redirects=True)
    try:
        await db.upgrade()
        importer = Importer(settings, db, owner=owner, groups=groups, approved=approved)
        if documents is not None:
            if progress is not None:
                progress(0, len(documents))
            return await import_documents(importer, batches_of(documents), progress)
        headers = {"Authorization": f"Bearer {token}"} if token else None
        pages = read_registry(
            source, client, search=search, latest_only=latest_only, headers=headers
        )
        return await import_documents(importer, pages, progress)
    finally:
        if http is None:
            await client.aclose()
        await db.dispose()


__all__ = [
    "ImportReport",
    "ImportSourceError",
    "Importer",
    "batches_of",
    "import_documents",
    "is_url",
    "read_file",
    "read_registry",
    "run_import",
]
