"""The registry's list query (``bastion.store.registry.list_entries``) on SQLite and PostgreSQL.

Pages cut anywhere, even between two versions of one server or between names that share a
prefix, join up to the unpaged list; and ``search`` matches exactly what
``lower(column) LIKE '%term%'`` matches (the expression the query used before SQLite's went
without ``lower()``), for ASCII and non-ASCII text alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from bastion.config import Settings
from bastion.store import registry as rows
from bastion.store.database import Database
from bastion.store.registry import Entry, ListQuery, Visibility, registry_entries

EVERYTHING = Visibility(everything=True, subject=None, groups=frozenset())
# A reader in group team-a who published one unapproved entry of their own.
READER = Visibility(everything=False, subject="alice", groups=frozenset({"team-a"}))

VERSIONS = {
    "io.x/a": ["1.0.0", "1.10.0", "1.2.0", "2.0.0-rc.1", "2.0.0"],
    "io.x/a-b": ["1"],
    "io.x/a.b": ["0.1", "0.2"],
    "io.x/aa": ["3", "4"],
    "io.x/b": ["0.1.0"],
    "io.y/a": ["1.0.0", "1.0.1"],
}
DESCRIPTIONS = [
    "Forecasts",
    "Read WEATHER logs",
    "ÉCOLE normale",
    "école du soir",
    "Straße und Weg",
    "STRASSE",
    "ΣΊΣΥΦΟΣ",
    "σίσυφος",
    "100% other_stuff",
    "İstanbul",
    "MiXeD CaSe",
    "a/b path",
]
TERMS = [
    "weath",
    "WEATHER",
    "forecasts",
    "école",
    "ÉCOLE",
    "É",
    "straße",
    "ss",
    "\N{GREEK SMALL LETTER SIGMA}",
    "ΣΊΣ",
    "σίσυφος",
    "0%",
    "r_s",
    "_x",
    "%",
    "i",
    "İ",
    "mixed case",
    "a/b",
    "/",
    "io.x/",
    "X/A",
    "nothing like it",
]


def _entry(name: str, version: str, index: int, **fields: object) -> Entry:
    values: dict[str, object] = {
        "name": name,
        "version": version,
        "description": f"server {index}",
        "server": {"name": name, "version": version},
        "status": "active",
        "status_message": None,
        "status_changed_at": 1_000 + index,
        "published_at": 1_000 + index,
        "updated_at": 1_000 + index,
        "is_latest": False,
        "owner_subject": "import",
        "owner_client_id": None,
        "groups": (),
        "approved": True,
    }
    values.update(fields)
    return Entry(**values)  # type: ignore[arg-type]


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.effective_database_url, schema=settings.database_schema)
    await database.upgrade()
    try:
        yield database
    finally:
        await database.dispose()


async def _store(db: Database, entries: list[Entry]) -> None:
    async with db.transaction() as conn:
        for entry in entries:
            await rows.lock_server(conn, entry.name, entry.published_at)
            await rows.insert_entry(conn, entry)


async def _pages(db: Database, query: ListQuery, view: Visibility) -> list[list[str]]:
    """Every page of ``query`` following the keyset of each page's last entry."""
    pages: list[list[str]] = []
    after: tuple[str, str] | None = None
    for _ in range(100):
        async with db.connect() as conn:
            page = await rows.list_entries(
                conn,
                ListQuery(limit=query.limit, after=after, search=query.search),
                view,
            )
        if not page:
            return pages
        pages.append([f"{e.name}@{e.version}" for e in page])
        after = (page[-1].name, page[-1].version)
    raise AssertionError("more than 100 pages")


async def test_g04_pages_cut_anywhere_join_up_to_the_unpaged_list(db: Database) -> None:
    """With page sizes 1 to 4, every cut falls somewhere else (between versions of io.x/a, between
    io.x/a and io.x/a-b, io.x/a.b, io.x/aa) and the pages still give the unpaged list, for an
    admin and for a reader who sees only part of it (G04)."""
    entries: list[Entry] = []
    for name, versions in VERSIONS.items():
        for version in versions:
            index = len(entries)
            fields: dict[str, object] = {}
            if index % 4 == 1:
                fields["groups"] = ("team-b",)  # hidden from the reader
            elif index % 4 == 2:
                fields["groups"] = ("team-a",)
            if index == 3:
                fields.update(approved=False, owner_subject="alice")  # the reader's own
            entries.append(_entry(name, version, index, **fields))
    await _store(db, entries)
    for view in (EVERYTHING, READER):
        async with db.connect() as conn:
            unpaged = await rows.list_entries(conn, ListQuery(limit=1000), view)
        expected = [f"{e.name}@{e.version}" for e in unpaged]
        for size in (1, 2, 3, 4):
            pages = await _pages(db, ListQuery(limit=size), view)
            assert [n for page in pages for n in page] == expected, (view, size)
            assert all(len(page) == size for page in pages[:-1])
    assert len(expected) < len(entries) and "io.x/a@2.0.0-rc.1" in expected


async def test_search_matches_what_lower_like_matches(db: Database) -> None:
    """For every term, search returns exactly the entries whose name or description contains it
    by ``lower(column) LIKE '%term%'`` (term lower-cased, % _ / literal), on either database."""
    entries = [
        _entry(f"io.x/s{index:02d}", "1.0.0", index, description=text)
        for index, text in enumerate(DESCRIPTIONS)
    ]
    await _store(db, entries)
    e = registry_entries.c
    found_any = 0
    for term in TERMS:
        lowered = term.lower()
        reference = (
            sa.select(e.name)
            .where(
                sa.or_(
                    sa.func.lower(e.name).contains(lowered, autoescape=True),
                    sa.func.lower(e.description).contains(lowered, autoescape=True),
                )
            )
            .order_by(e.name, e.version)
        )
        async with db.connect() as conn:
            expected = list((await conn.execute(reference)).scalars())
            page = await rows.list_entries(conn, ListQuery(limit=100, search=term), EVERYTHING)
        assert [entry.name for entry in page] == expected, term
        found_any += bool(expected)
    async with db.connect() as conn:
        weather = await rows.list_entries(conn, ListQuery(limit=100, search="WEATH"), EVERYTHING)
        paths = await rows.list_entries(conn, ListQuery(limit=100, search="a/b"), EVERYTHING)
    assert [entry.description for entry in weather] == ["Read WEATHER logs"]
    assert [entry.description for entry in paths] == ["a/b path"]
    assert found_any >= 10
