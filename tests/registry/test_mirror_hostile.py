"""Mirroring, a malformed or hostile upstream: a page that is not a registry page (not JSON,
too large, more servers than asked for, no servers array, a cursor loop) stops the run before
anything is written, with an audit record; a document that is not a valid ServerResponse or
server.json is refused with an audit record; a failed run leaves the high-water mark where it
was, so nothing is skipped (docs/registry.md, "Mirroring")."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from starlette.responses import JSONResponse, Response

from bastion.registry.mirror_upstream import MAX_PAGE_BYTES
from bastion.registry.times import parse_rfc3339
from bastion.store.schema import registry_audit, registry_mirrors
from tests.registry.mirroring import Mirroring, results
from tests.registry.upstream import OFFICIAL, recorded, response

Override = Callable[[dict[str, str], int], Response | None]


def on_request(number: int, answer: Response) -> Override:
    """Answer ``answer`` to the request ``number`` (0-based), the recorded pages otherwise."""
    return lambda query, n: answer if n == number else None


def page(servers: list[object], cursor: str | None = None) -> JSONResponse:
    metadata: dict[str, object] = {"count": len(servers)}
    if cursor is not None:
        metadata["nextCursor"] = cursor
    return JSONResponse({"servers": servers, "metadata": metadata})


HOSTILE_PAGES = {
    "not_json": Response(b"<html>maintenance</html>", media_type="text/html"),
    "truncated_json": Response(b'{"servers": [{"server": ', media_type="application/json"),
    "duplicate_members": Response(
        b'{"servers": [], "servers": [], "metadata": {}}', media_type="application/json"
    ),
    "no_servers_array": JSONResponse({"items": [], "metadata": {}}),
    "servers_not_a_list": JSONResponse({"servers": {"a": 1}, "metadata": {}}),
    "metadata_not_an_object": JSONResponse({"servers": [], "metadata": "next"}),
    "cursor_not_a_string": JSONResponse({"servers": [], "metadata": {"nextCursor": 7}}),
    "too_many_servers": page(recorded() * 10),
    "giant_page": Response(
        b'{"servers": [], "pad": "' + b"x" * (MAX_PAGE_BYTES + 1) + b'"}',
        media_type="application/json",
    ),
    "deeply_nested": Response(b"[" * 5000 + b"]" * 5000, media_type="application/json"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_PAGES))
async def test_a_hostile_second_page_stops_the_run_before_anything_is_written(
    mirroring: Mirroring, case: str
) -> None:
    """Page 1 is fine, page 2 is hostile: nothing of page 1 is stored either, the mark is not
    set, and the run is audited as refused (502) with the reason."""
    mirroring.upstream.override = on_request(1, HOSTILE_PAGES[case])
    report = await mirroring.sync()
    assert report.error is not None and not report.complete
    assert await mirroring.keys() == []
    state = await mirroring.state()
    assert state is not None and state.high_water is None and state.pass_cursor is None
    assert state.last_error == report.error
    [run] = await mirroring.audit()
    assert (run.action, run.status, run.result) == ("mirror_sync", 502, "refused")
    assert run.detail is not None and run.detail["mirror"] == "official"


async def test_a_cursor_loop_is_refused(mirroring: Mirroring) -> None:
    """An upstream that keeps answering the same nextCursor is refused at the repeat, long
    before max_pages."""
    first = recorded()[:5]
    mirroring.upstream.override = lambda query, n: page(first, "ai.smithery/smithery-notion:1.0.0")
    report = await mirroring.sync(max_pages=50)
    assert report.error is not None and "twice" in report.error
    assert len(mirroring.upstream.requests) == 2
    assert await mirroring.keys() == []


async def test_an_unreachable_or_failing_upstream_leaves_the_mark_unchanged(
    mirroring: Mirroring,
) -> None:
    """After a complete first run, a change upstream, then a run whose second page fails (503):
    the mark stays, and the next run still asks from the old mark and gets the change."""
    assert (await mirroring.sync()).error is None
    before = await mirroring.state()
    assert before is not None and before.high_water is not None
    mirroring.upstream.change(
        "com.stripe/mcp", "0.2.4", updated="2025-10-02T00:00:00Z", status="deprecated"
    )
    mirroring.upstream.page_size = 1
    mirroring.upstream.put(response("io.github.upstash/a", "1.0.0", updated="2025-10-02T00:00:00Z"))
    count = len(mirroring.upstream.requests)
    mirroring.upstream.override = on_request(count + 1, Response("busy", status_code=503))
    failed = await mirroring.sync()
    assert failed.error is not None and "503" in failed.error
    after = await mirroring.state()
    assert after is not None and after.high_water == before.high_water
    assert (await mirroring.entry("com.stripe/mcp", "0.2.4")).status == "active"
    assert "io.github.upstash/a@1.0.0" not in await mirroring.keys()
    mirroring.upstream.override = None
    healed = await mirroring.sync()
    assert healed.error is None
    assert healed.since == failed.since
    assert (await mirroring.entry("com.stripe/mcp", "0.2.4")).status == "deprecated"
    assert "io.github.upstash/a@1.0.0" in await mirroring.keys()
    [_, failure, _] = [r for r in await mirroring.audit() if r.action == "mirror_sync"]
    assert (failure.status, failure.result) == (502, "failed")


async def test_a_closed_port_is_a_failed_run_not_a_crash(mirroring: Mirroring) -> None:
    """Nothing listens at the url: the run reports what failed and what to check."""
    report = await mirroring.sync(url="http://127.0.0.1:9", timeout_seconds=5)
    assert report.error is not None and "check the mirror's url" in report.error
    assert await mirroring.keys() == []


def _bad(item: dict[str, object], **changes: object) -> dict[str, object]:
    copied = json.loads(json.dumps(item))
    for path, value in changes.items():
        target = copied
        *parents, last = path.split("__")
        for part in parents:
            target = target[OFFICIAL if part == "official" else part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return copied


async def test_invalid_documents_are_refused_one_by_one_and_audited(
    mirroring: Mirroring,
) -> None:
    """Within a well-formed page, each document that is not a ServerResponse, has no or a
    wrong official _meta, or whose server.json the registry's validation refuses, is refused
    with one audit record; the valid ones beside them are imported."""
    good = response("io.github.upstash/good", "1.0.0", updated="2025-09-30T00:00:00Z")
    bad_items: list[object] = [
        "not an object",
        {"server": "not an object"},
        _bad(good, server__name="io.github.upstash/x/y"),
        _bad(good, server__version="^1.0.0"),
        _bad(good, server__description="x" * 101),
        _bad(good, server__remotes=[{"type": "streamable-http", "url": "not a uri"}]),
        _bad(good, _meta=None),
        _bad(good, _meta__official__status="hijacked"),
        _bad(good, _meta__official__updatedAt="yesterday"),
        _bad(good, _meta__official__statusMessage=["x"]),
    ]
    mirroring.upstream.override = lambda query, n: page([*bad_items, good])
    report = await mirroring.sync()
    assert report.error is None
    assert report.counts()["refused"] == len(bad_items)
    assert await mirroring.keys() == ["io.github.upstash/good@1.0.0"]
    audited = results(await mirroring.audit())
    assert [r for _, _, r in audited] == ["refused"] * len(bad_items) + ["added"]
    reasons = [c.reason for c in report.changes if c.kind == "refused"]
    assert any("body.version" in r for r in reasons)
    assert any("status" in r for r in reasons)


async def test_a_document_larger_than_a_publication_may_be_is_refused(
    mirroring: Mirroring,
) -> None:
    """An upstream cannot store here what a publisher could not: a server.json above
    registry.max_body_bytes (its bulk in _meta, which the schema leaves open) is refused."""
    limit = mirroring.reg.settings.registry.max_body_bytes
    bulky = response(
        "io.github.upstash/bulky",
        "1.0.0",
        updated="2025-09-30T00:00:00Z",
        _meta={"com.example/blob": {"x": "y" * limit}},
    )
    mirroring.upstream.put(bulky)
    report = await mirroring.sync(namespaces=["io.github.upstash/*"])
    [refused] = [c for c in report.changes if c.kind == "refused"]
    assert refused.name == "io.github.upstash/bulky" and "max_body_bytes" in refused.reason
    assert "io.github.upstash/bulky@1.0.0" not in await mirroring.keys()


async def test_a_run_reads_a_bounded_number_of_bytes_and_continues_next_time(
    mirroring: Mirroring,
) -> None:
    """Past its byte budget a run stops after the page it was reading, keeps the cursor
    (not a mark), and the next run continues: every page is read once, nothing skipped."""
    sync = mirroring.sync_of()
    sync.max_pass_bytes = 1
    first = await sync.run()
    assert first.pages == 1 and not first.complete
    state = await mirroring.state()
    assert state is not None and state.high_water is None and state.pass_cursor
    for _ in range(5):
        if (await sync.run()).complete:
            break
    assert len(await mirroring.keys()) == 12
    assert [q.get("cursor") for q in mirroring.upstream.requests] == [
        None,
        "com.notion/mcp:1.0.1",
        "io.github.github/github-mcp-server:0.14.0",
    ]


async def test_an_updated_at_in_the_future_does_not_move_the_mark_past_now(
    mirroring: Mirroring,
) -> None:
    """An upstream stamping an entry 2099 would make every later updated_since skip real
    changes: the mark never passes this registry's clock."""
    mirroring.upstream.put(
        response("io.github.upstash/future", "1.0.0", updated="2099-01-01T00:00:00Z")
    )
    await mirroring.sync()
    state = await mirroring.state()
    assert state is not None and state.high_water is not None
    assert state.high_water <= mirroring.reg.clock()
    assert state.high_water < parse_rfc3339("2099-01-01T00:00:00Z")


async def test_a_database_failure_mid_run_leaves_the_mark_unchanged(mirroring: Mirroring) -> None:
    """While a run reads the upstream, the audit table disappears (a real database error when
    the run writes a change and its record, in one transaction): the run reports it, neither the
    change nor the mark is written, and once the table is back the next run asks from the same
    point and applies what the failed one did not."""
    assert (await mirroring.sync()).error is None
    before = await mirroring.state()
    mirroring.upstream.change(
        "com.stripe/mcp", "0.2.4", updated="2025-10-02T00:00:00Z", status="deprecated"
    )

    async def drop(number: int) -> None:
        async with mirroring.db.transaction() as conn:
            await conn.run_sync(lambda c: registry_audit.drop(c))

    first = len(mirroring.upstream.requests)
    mirroring.upstream.meanwhile = lambda n: drop(n) if n == first else _nothing()
    failed = await mirroring.sync()
    assert failed.error is not None and "the high-water mark is unchanged" in failed.error
    after = await mirroring.state()
    assert after is not None and before is not None
    assert after.high_water == before.high_water and after.last_error == failed.error
    assert (await mirroring.entry("com.stripe/mcp", "0.2.4")).status == "active"
    mirroring.upstream.meanwhile = None
    async with mirroring.db.transaction() as conn:
        await conn.run_sync(lambda c: registry_audit.create(c))
    healed = await mirroring.sync()
    assert healed.since == failed.since and healed.error is None
    assert (await mirroring.entry("com.stripe/mcp", "0.2.4")).status == "deprecated"


async def _nothing() -> None:
    return None


async def test_a_run_that_lost_its_lease_does_not_move_the_mark(mirroring: Mirroring) -> None:
    """Another process takes the lease while a run reads (the run outlived it): the run's
    progress is not recorded, so the mark is the other process's business."""
    other = "other-host:1"

    async def steal(number: int) -> None:
        async with mirroring.db.transaction() as conn:
            await conn.execute(
                sa.update(registry_mirrors).values(lease_owner=other, lease_until=2**62)
            )

    mirroring.upstream.meanwhile = steal
    report = await mirroring.sync()
    assert report.error is not None and "lease" in report.error
    state = await mirroring.state()
    assert state is not None and state.high_water is None
    [run] = [r for r in await mirroring.audit() if r.action == "mirror_sync"]
    assert (run.status, run.result) == (409, "lease_lost")
