"""Mirroring, what follows the upstream (generic registry API v0.1: updated_since,
cursor/nextCursor, limit 100, include_deleted, the official _meta): the first run reads
everything the filters allow, later runs what changed since the high-water mark; new versions
are added, status changes and edits follow; a long listing continues across runs; one run at a
time per mirror; a dry run writes nothing (docs/registry.md, "Mirroring")."""

from __future__ import annotations

import asyncio

from bastion.registry.mirror import OVERLAP_MS
from bastion.registry.times import format_rfc3339, parse_rfc3339
from bastion.store import registry_mirrors as mirrors
from tests.registry.mirroring import Mirroring, results
from tests.registry.upstream import response

CONTEXT7 = "io.github.upstash/context7"
GITHUB = "io.github.github/github-mcp-server"
NEWEST = "2025-09-24T15:30:05.871Z"  # the largest updatedAt of the recorded pages


async def test_the_first_run_imports_everything_the_filters_allow(mirroring: Mirroring) -> None:
    """Pages of at most 100 (limit=100, no updated_since, no include_deleted), every recorded
    entry stored with the upstream's server.json and status, owned by the mirror's owner, with
    its groups and approval; the latest version as upstream; one audit record per entry; the
    mark is the newest updatedAt."""
    report = await mirroring.sync(owner="ops", groups=["team-b", "team-a"])
    assert report.complete and report.counts()["added"] == 12
    first = mirroring.upstream.requests[0]
    assert first == {"limit": "100"}
    assert mirroring.upstream.requests[1]["cursor"] == "com.notion/mcp:1.0.1"
    entries = {(e.name, e.version): e for e in await mirroring.stored()}
    assert len(entries) == 12
    old = entries[(CONTEXT7, "1.0.13")]
    assert (old.status, old.status_message) == (
        "deprecated",
        "1.0.14 fixes the resolve-library-id tool",
    )
    assert entries[(CONTEXT7, "1.0.14")].is_latest and not old.is_latest
    assert entries[(GITHUB, "0.14.0")].is_latest
    assert {(e.owner_subject, e.groups, e.approved) for e in entries.values()} == {
        ("ops", ("team-a", "team-b"), True)
    }
    upstream = {
        (i["server"]["name"], i["server"]["version"]): i["server"]
        for i in mirroring.upstream.entries
    }
    assert all(entries[key].server == server for key, server in upstream.items())
    assert [r for _, _, r in results(await mirroring.audit())] == ["added"] * 12
    state = await mirroring.state()
    assert state is not None and state.high_water == parse_rfc3339(NEWEST)
    assert report.high_water == parse_rfc3339(NEWEST)


async def test_mirrored_entries_are_served_by_the_registry_api(mirroring: Mirroring) -> None:
    """What the mirror stored is what a reader lists (anonymous read, approved, no groups)."""
    await mirroring.sync(namespaces=["io.github.upstash/*"])
    names = await mirroring.reg.list_names(None, version="latest")
    assert names == [f"{CONTEXT7}@1.0.14"]


async def test_later_runs_ask_updated_since_and_follow_new_versions_and_statuses(
    mirroring: Mirroring,
) -> None:
    """The second run asks updated_since = mark - overlap with include_deleted; a new version
    is added (and becomes the latest), a deprecation and a deletion follow, an edit of a
    version's server.json follows; each change is audited as added or updated."""
    await mirroring.sync()
    at = "2025-10-03T00:00:00Z"
    mirroring.upstream.put(
        response(CONTEXT7, "1.0.15", updated=at, description="Up-to-date code docs")
    )
    mirroring.upstream.change(GITHUB, "0.14.0", updated=at, status="deprecated", statusMessage="x")
    mirroring.upstream.change("com.notion/mcp", "1.0.1", updated=at, status="deleted")
    edited = response("com.stripe/mcp", "0.2.4", updated=at, description="Stripe, edited")
    mirroring.upstream.put(edited)
    report = await mirroring.sync()
    asked = mirroring.upstream.requests[-1]
    assert asked["updated_since"] == format_rfc3339(parse_rfc3339(NEWEST) - OVERLAP_MS)
    assert asked["include_deleted"] == "true"
    changed = {(c.name, c.version): c.kind for c in report.changes if c.kind != "unchanged"}
    assert changed == {
        (CONTEXT7, "1.0.15"): "added",
        (GITHUB, "0.14.0"): "updated",
        ("com.notion/mcp", "1.0.1"): "updated",
        ("com.stripe/mcp", "0.2.4"): "updated",
    }
    assert (await mirroring.entry(CONTEXT7, "1.0.15")).is_latest
    gh = await mirroring.entry(GITHUB, "0.14.0")
    assert (gh.status, gh.status_message) == ("deprecated", "x")
    assert (await mirroring.entry("com.notion/mcp", "1.0.1")).status == "deleted"
    assert (await mirroring.entry("com.stripe/mcp", "0.2.4")).description == "Stripe, edited"
    assert results(await mirroring.audit())[12:] == [
        ("com.notion/mcp", "1.0.1", "updated"),
        ("com.stripe/mcp", "0.2.4", "updated"),
        (GITHUB, "0.14.0", "updated"),
        (CONTEXT7, "1.0.15", "added"),
    ]
    state = await mirroring.state()
    assert state is not None and state.high_water == parse_rfc3339(at)


async def test_statuses_do_not_follow_when_follow_status_is_off(mirroring: Mirroring) -> None:
    """follow_status = false: the first run asks no deleted entries; a later deprecation
    upstream changes nothing here."""
    await mirroring.sync(follow_status=False)
    mirroring.upstream.change(GITHUB, "0.14.0", updated="2025-10-03T00:00:00Z", status="deprecated")
    report = await mirroring.sync(follow_status=False)
    assert "include_deleted" not in mirroring.upstream.requests[-1]
    assert report.counts()["updated"] == 0
    assert (await mirroring.entry(GITHUB, "0.14.0")).status == "active"


async def test_a_version_deleted_upstream_before_it_was_mirrored_is_not_added(
    mirroring: Mirroring,
) -> None:
    """A deleted version seen through include_deleted is never added."""
    await mirroring.sync()
    mirroring.upstream.put(
        response(CONTEXT7, "0.9.0", updated="2025-10-03T00:00:00Z", status="deleted")
    )
    report = await mirroring.sync()
    assert [c.kind for c in report.changes if c.version == "0.9.0"] == ["unchanged"]
    assert f"{CONTEXT7}@0.9.0" not in await mirroring.keys()


async def test_a_listing_longer_than_max_pages_continues_at_the_next_run(
    mirroring: Mirroring,
) -> None:
    """max_pages = 1 and pages of 5: the first run stores page 1 and the cursor, not a mark;
    the next ones continue from the cursor; the third completes and sets the mark."""
    first = await mirroring.sync(max_pages=1)
    assert not first.complete and first.pages == 1
    state = await mirroring.state()
    assert state is not None and state.high_water is None
    assert state.pass_cursor == "com.notion/mcp:1.0.1"
    assert len(await mirroring.keys()) == 5
    second = await mirroring.sync(max_pages=1)
    assert mirroring.upstream.requests[-1]["cursor"] == "com.notion/mcp:1.0.1"
    assert not second.complete and len(await mirroring.keys()) == 10
    third = await mirroring.sync(max_pages=1)
    assert third.complete and len(await mirroring.keys()) == 12
    state = await mirroring.state()
    assert state is not None and state.pass_cursor is None
    assert state.high_water == parse_rfc3339(NEWEST)


async def test_a_dry_run_shows_what_would_change_and_writes_nothing(mirroring: Mirroring) -> None:
    """--dry-run: added, curated, refused and filtered are reported; no entry, audit record,
    mirror row or mark is written."""
    reg = mirroring.reg
    await reg.published(await reg.admin(), {**response(GITHUB, "1.0.0", updated=NEWEST)["server"]})
    mirroring.upstream.put(response(CONTEXT7, "^2.0", updated=NEWEST))
    before = await mirroring.audit("publish")
    report = await mirroring.sync(dry_run=True, namespaces=["io.github.*"])
    kinds = {(c.name, c.version): c.kind for c in report.changes}
    assert kinds[(CONTEXT7, "1.0.14")] == "added"
    assert kinds[(GITHUB, "0.14.0")] == "curated"
    assert kinds[("com.stripe/mcp", "0.2.4")] == "filtered"
    assert kinds[(CONTEXT7, "^2.0")] == "refused"
    assert report.dry_run and report.complete
    assert await mirroring.keys() == [f"{GITHUB}@1.0.0"]
    assert await mirroring.audit() == []
    assert await mirroring.audit("publish") == before
    assert await mirroring.state() is None
    body = report.as_json()
    assert body["dry_run"] is True
    assert {k: body["counts"][k] for k in ("added", "curated", "refused")} == {
        "added": 4,
        "curated": 2,
        "refused": 1,
    }


async def test_one_run_at_a_time_per_mirror(mirroring: Mirroring) -> None:
    """While another process holds the mirror's lease, a run does nothing and says so; once
    the lease has run out, a run takes it."""
    sync = mirroring.sync_of()
    now = mirroring.reg.clock()
    async with mirroring.db.transaction() as conn:
        assert await mirrors.claim(conn, "official", "other-host:1", now, now + 60_000)
    busy = await sync.run()
    assert busy.busy and mirroring.upstream.requests == []
    mirroring.reg.clock.advance(61_000)
    assert not (await sync.run()).busy
    assert len(await mirroring.keys()) == 12


async def test_concurrent_runs_of_one_mirror_do_not_both_write(mirroring: Mirroring) -> None:
    """Two runs started together: one syncs, the other finds the lease taken."""
    reports = await asyncio.gather(mirroring.sync(), mirroring.sync())
    assert sorted(r.busy for r in reports) == [False, True]
    assert [r for _, _, r in results(await mirroring.audit())] == ["added"] * 12


async def test_widened_filters_read_the_whole_listing_again(mirroring: Mirroring) -> None:
    """The mark holds for the url and filters it was reached with: after namespaces change, the
    next run asks no updated_since, so servers older than the mark but newly allowed come in."""
    await mirroring.sync(namespaces=["io.github.upstash/*"])
    again = await mirroring.sync(namespaces=["io.github.upstash/*"])
    assert again.since is not None
    widened = await mirroring.sync(namespaces=["io.github.upstash/*", "com.stripe"])
    assert widened.since is None and "updated_since" not in mirroring.upstream.requests[-1]
    assert "com.stripe/mcp@0.2.4" in await mirroring.keys()
    assert [c.kind for c in widened.changes if c.kind not in ("filtered", "unchanged")] == ["added"]


async def test_an_older_copy_of_a_version_does_not_undo_a_newer_change(
    mirroring: Mirroring,
) -> None:
    """The upstream deprecates a version, then (a stale replica) answers it again active with
    an older updatedAt: the deprecation stays."""
    await mirroring.sync()
    mirroring.upstream.change(GITHUB, "0.14.0", updated="2025-10-03T00:00:00Z", status="deprecated")
    await mirroring.sync()
    mirroring.upstream.change(GITHUB, "0.14.0", updated="2025-10-02T23:59:59Z", status="active")
    report = await mirroring.sync(namespaces=["*"], search="github")
    assert [c.kind for c in report.changes if c.version == "0.14.0"] == ["unchanged"]
    assert (await mirroring.entry(GITHUB, "0.14.0")).status == "deprecated"
