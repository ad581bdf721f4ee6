"""Keyset pagination stays consistent while entries are published: a client paging through the
list never sees an entry twice and never misses one that existed when it started."""

from __future__ import annotations

import asyncio

from tests.registry.harness import Registry, server_json

PAGE = 7


async def _pages(reg: Registry, token: str, between: list[str] | None = None) -> list[str]:
    """Page through the list; before each next page, publish the names in ``between`` (two per
    page: one sorting before the cursor, one after)."""
    headers = reg.bearer(token)
    seen: list[str] = []
    cursor: str | None = None
    for page in range(200):
        params = {"limit": str(PAGE), **({"cursor": cursor} if cursor else {})}
        response = await reg.client.get(f"{reg.base}/servers", params=params, headers=headers)
        assert response.status_code == 200
        body = response.json()
        seen += [s["server"]["name"] for s in body["servers"]]
        cursor = body["metadata"].get("nextCursor")
        if not cursor:
            return seen
        if between:
            for name in between[2 * page : 2 * page + 2]:
                await reg.published(token, server_json(name))
    raise AssertionError("more than 200 pages")


async def test_pages_neither_repeat_nor_skip_entries_published_between_pages(
    reg: Registry,
) -> None:
    """Entries published before the cursor are not seen (they sort earlier), entries after it
    are; nothing that existed at the start is missed or repeated."""
    admin = await reg.admin()
    initial = [f"io.x/s{i:03d}" for i in range(0, 80, 2)]
    for name in initial:
        await reg.published(admin, server_json(name))
    # For page p (cursor after roughly initial[7p+6]): one name far behind, one far ahead.
    between: list[str] = []
    for page in range(10):
        between += [f"io.x/a{page:03d}", f"io.x/z{page:03d}"]
    seen = await _pages(reg, admin, between)
    assert len(seen) == len(set(seen)), "an entry was returned twice"
    assert seen == sorted(seen)
    assert set(initial) <= set(seen), "an entry that existed at the start was skipped"
    assert not {n for n in seen if n.startswith("io.x/a")}, "entries behind the cursor appeared"
    published_ahead = {n for n in between if n.startswith("io.x/z")}
    assert {n for n in seen if n.startswith("io.x/z")} <= published_ahead


async def test_pages_stay_consistent_under_concurrent_publications(reg: Registry) -> None:
    """Listing and publishing at the same time (interleaved on one event loop): the listing is
    strictly ordered, has no duplicates, and contains every initial entry."""
    admin = await reg.admin()
    initial = [f"io.x/s{i:03d}" for i in range(0, 60, 2)]
    for name in initial:
        await reg.published(admin, server_json(name))
    newcomers = [f"io.x/s{i:03d}" for i in range(1, 60, 2)]

    async def publish_all() -> None:
        for name in newcomers:
            await reg.published(admin, server_json(name))

    async def list_repeatedly() -> list[list[str]]:
        runs = []
        for _ in range(4):
            runs.append(await _pages(reg, admin))
        return runs

    _, runs = await asyncio.gather(publish_all(), list_repeatedly())
    for seen in runs:
        assert len(seen) == len(set(seen))
        assert seen == sorted(seen)
        assert set(initial) <= set(seen)
    assert sorted(await _pages(reg, admin)) == sorted(initial + newcomers)


async def test_a_filter_keeps_keyset_pages_exact(reg: Registry) -> None:
    """Filters (search, visibility) are applied in the query, so every page is full until the
    last and the cursor continues where the filtered page ended."""
    admin = await reg.admin()
    for i in range(30):
        name = f"io.x/{'hit' if i % 3 == 0 else 'miss'}{i:02d}"
        await reg.published(admin, server_json(name))
    headers = reg.bearer(admin)
    counts = []
    cursor = None
    found: list[str] = []
    for _ in range(10):
        params = {"limit": "3", "search": "hit", **({"cursor": cursor} if cursor else {})}
        body = (await reg.client.get(f"{reg.base}/servers", params=params, headers=headers)).json()
        counts.append(body["metadata"]["count"])
        found += [s["server"]["name"] for s in body["servers"]]
        cursor = body["metadata"].get("nextCursor")
        if not cursor:
            break
    assert found == [f"io.x/hit{i:02d}" for i in range(0, 30, 3)]
    assert counts == [3, 3, 3, 1]
