"""Mirroring, who must not get in: a server outside the mirror's filters is never imported (on
any page, on a later run through updated_since, when the upstream ignores ``search``); a name
that matches only when case is ignored is refused; the upstream cannot choose an entry's
audience (docs/registry.md, "Mirroring")."""

from __future__ import annotations

from tests.registry.mirroring import Mirroring, results
from tests.registry.upstream import response

UPSTASH = ["io.github.upstash/context7@1.0.13", "io.github.upstash/context7@1.0.14"]


async def test_a_server_outside_the_filters_is_never_imported_from_any_page(
    mirroring: Mirroring,
) -> None:
    """Namespaces and names select io.github.upstash (page 3 of 3) and com.stripe/mcp (page 2);
    the ten other entries on the three pages are counted as filtered, not stored, not audited
    one by one."""
    report = await mirroring.sync(namespaces=["io.github.upstash/*"], names=["com.stripe/mcp"])
    assert report.error is None and report.complete and report.pages == 3
    assert await mirroring.keys() == ["com.stripe/mcp@0.2.4", *UPSTASH]
    assert report.counts()["added"] == 3 and report.counts()["filtered"] == 9
    assert {n for _, n, _ in results(await mirroring.audit())} == {"0.2.4", "1.0.13", "1.0.14"}


async def test_a_server_outside_the_filters_is_not_imported_through_updated_since(
    mirroring: Mirroring,
) -> None:
    """A later run asks updated_since; servers published upstream since then outside the
    filters, including one whose namespace only starts like an allowed one, stay out."""
    assert (await mirroring.sync(namespaces=["io.github.upstash"])).error is None
    mirroring.upstream.put(
        response("io.github.evil/context7", "9.9.9", updated="2025-10-01T00:00:00Z")
    )
    mirroring.upstream.put(
        response("io.github.upstash-evil/context7", "1.0.0", updated="2025-10-01T00:00:00Z")
    )
    mirroring.upstream.put(
        response("io.github.upstash/context7", "1.0.15", updated="2025-10-01T00:00:00Z")
    )
    report = await mirroring.sync(namespaces=["io.github.upstash"])
    # The high-water mark is the newest updatedAt of the first pass (github-mcp-server's).
    assert mirroring.upstream.requests[-1]["updated_since"] == "2025-09-24T15:29:05.871Z"
    assert await mirroring.keys() == [*UPSTASH, "io.github.upstash/context7@1.0.15"]
    filtered = {c.name for c in report.changes if c.kind == "filtered"}
    assert {"io.github.evil/context7", "io.github.upstash-evil/context7"} <= filtered


async def test_a_namespace_wildcard_does_not_admit_the_namespace_itself_or_lookalikes(
    mirroring: Mirroring,
) -> None:
    """``io.github.*`` takes namespaces under io.github (not ``io.githubx``); ``com.notion/*``
    takes com.notion alone (not com.notion.x nor com.notionx)."""
    for name in ("io.githubx/tool", "com.notion.evil/mcp", "com.notionx/mcp"):
        mirroring.upstream.put(response(name, "1.0.0", updated="2025-09-30T00:00:00Z"))
    await mirroring.sync(namespaces=["io.github.*", "com.notion/*"])
    names = {key.split("@")[0] for key in await mirroring.keys()}
    assert names == {
        "com.notion/mcp",
        "io.github.MoleCare/molecare-mcp",
        "io.github.containers/kubernetes-mcp-server",
        "io.github.github/github-mcp-server",
        "io.github.upstash/context7",
    }


async def test_search_is_checked_here_even_when_the_upstream_ignores_it(
    mirroring: Mirroring,
) -> None:
    """``search`` is sent upstream, and an upstream that answers everything anyway gets only
    the matching servers (name or description, ignoring case) imported."""
    mirroring.upstream.honour_search = False
    report = await mirroring.sync(search="NOTION")
    assert mirroring.upstream.requests[0]["search"] == "NOTION"
    assert await mirroring.keys() == [
        "ai.smithery/smithery-notion@1.0.0",
        "com.mcparmory/notion@1.0.1",
        "com.mcparmory/notion@1.0.2",
        "com.notion/mcp@1.0.1",
    ]
    assert report.counts()["filtered"] == 8


async def test_a_name_matching_the_filters_only_when_case_is_ignored_is_refused(
    mirroring: Mirroring,
) -> None:
    """io.github.MoleCare/molecare-mcp for the filter io.github.molecare/* (and a name listed
    in lower case) is not the server the operator named: refused, with an audit record naming
    the mirror."""
    report = await mirroring.sync(namespaces=["io.github.molecare/*"])
    assert await mirroring.keys() == []
    assert [(c.kind, c.name) for c in report.changes if c.kind != "filtered"] == [
        ("refused", "io.github.MoleCare/molecare-mcp")
    ]
    [record] = [r for r in await mirroring.audit("mirror")]
    assert (record.server_name, record.result, record.status) == (
        "io.github.MoleCare/molecare-mcp",
        "refused",
        400,
    )
    assert record.detail is not None and record.detail["mirror"] == "official"
    assert "case" in record.detail["reason"]
    second = await mirroring.sync(
        name="names", namespaces=[], names=["io.github.molecare/molecare-mcp"]
    )
    assert second.counts()["refused"] == 1
    assert await mirroring.keys() == []


async def test_the_upstream_cannot_choose_who_sees_an_entry(mirroring: Mirroring) -> None:
    """G04 (the registry filters which servers a token sees): bastion's publish option
    _meta["dev.mcp-bastion/publish"].groups in an upstream document is ignored, so an upstream
    cannot widen or choose an entry's audience: it gets the mirror's groups and approval."""
    mirroring.upstream.put(
        response(
            "io.github.upstash/sneaky",
            "1.0.0",
            updated="2025-09-30T00:00:00Z",
            _meta={"dev.mcp-bastion/publish": {"groups": ["registry-admins"]}},
        )
    )
    await mirroring.sync(namespaces=["io.github.upstash/*"], groups=["team-a"], approved=False)
    entry = await mirroring.entry("io.github.upstash/sneaky", "1.0.0")
    assert entry.groups == ("team-a",) and entry.approved is False
    assert entry.owner_subject == "mirror:official"
    assert "_meta" not in entry.server
