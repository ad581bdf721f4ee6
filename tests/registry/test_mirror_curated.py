"""Mirroring never overwrites what was curated here: a server with a version published locally
(or by another mirror) is left alone entirely, and a mirrored version whose status, audience or
approval an operator changed no longer follows the upstream; each such skip is audited
(docs/registry.md, "Mirroring")."""

from __future__ import annotations

from tests.registry.harness import encoded, server_json
from tests.registry.mirroring import Mirroring, results
from tests.registry.upstream import response

CONTEXT7 = "io.github.upstash/context7"
GITHUB = "io.github.github/github-mcp-server"


async def _patch(mirroring: Mirroring, name: str, version: str, body: dict[str, object]) -> None:
    reg = mirroring.reg
    response = await reg.client.patch(
        f"{reg.base}/servers/{encoded(name)}/versions/{version}/status",
        json=body,
        headers=reg.bearer(await reg.admin()),
    )
    assert response.status_code == 200, response.text


async def test_a_server_published_locally_is_never_overwritten_or_deleted(
    mirroring: Mirroring,
) -> None:
    """An operator published context7 1.0.14 here before the mirror's first run: the upstream's
    1.0.13 and 1.0.14 are not added beside it, and the upstream deleting 1.0.14 later does not
    delete the local one. Every skip is one audit record (result curated, 409)."""
    reg = mirroring.reg
    local = server_json(CONTEXT7, "1.0.14", description="Our vetted build")
    await reg.published(await reg.admin(), local)
    first = await mirroring.sync(namespaces=["io.github.upstash/*"])
    assert [(c.kind, c.version) for c in first.changes if c.kind != "filtered"] == [
        ("curated", "1.0.13"),
        ("curated", "1.0.14"),
    ]
    mirroring.upstream.change(CONTEXT7, "1.0.14", updated="2025-10-02T00:00:00Z", status="deleted")
    second = await mirroring.sync(namespaces=["io.github.upstash/*"])
    assert [(c.kind, c.version) for c in second.changes if c.kind != "filtered"] == [
        ("curated", "1.0.14")
    ]
    [entry] = await mirroring.stored()
    assert (entry.version, entry.status, entry.description) == (
        "1.0.14",
        "active",
        local["description"],
    )
    assert entry.owner_subject == "root"
    assert results(await mirroring.audit()) == [
        (CONTEXT7, "1.0.13", "curated"),
        (CONTEXT7, "1.0.14", "curated"),
        (CONTEXT7, "1.0.14", "curated"),
    ]
    assert {r.status for r in await mirroring.audit("mirror")} == {409}


async def test_a_version_an_operator_changed_is_left_alone(mirroring: Mirroring) -> None:
    """After the first run an operator deprecates context7 1.0.14 and gives github-mcp-server
    0.14.0 an audience; the upstream then deletes the first and deprecates the second: both keep
    what the operator set. A version nobody touched (github 0.13.0) still follows."""
    await mirroring.sync()
    await _patch(mirroring, CONTEXT7, "1.0.14", {"status": "deprecated", "statusMessage": "ours"})
    await _patch(mirroring, GITHUB, "0.14.0", {"status": "active", "groups": ["team-a"]})
    at = "2025-10-02T00:00:00Z"
    mirroring.upstream.change(CONTEXT7, "1.0.14", updated=at, status="deleted")
    mirroring.upstream.change(GITHUB, "0.14.0", updated=at, status="deprecated")
    mirroring.upstream.change(GITHUB, "0.13.0", updated=at, status="deleted")
    report = await mirroring.sync()
    kinds = {(c.name, c.version): c.kind for c in report.changes}
    assert kinds[(CONTEXT7, "1.0.14")] == "curated"
    assert kinds[(GITHUB, "0.14.0")] == "curated"
    assert kinds[(GITHUB, "0.13.0")] == "updated"
    c7 = await mirroring.entry(CONTEXT7, "1.0.14")
    assert (c7.status, c7.status_message) == ("deprecated", "ours")
    gh = await mirroring.entry(GITHUB, "0.14.0")
    assert (gh.status, gh.groups) == ("active", ("team-a",))
    assert (await mirroring.entry(GITHUB, "0.13.0")).status == "deleted"


async def test_an_approval_withdrawn_here_is_not_restored_by_the_mirror(
    mirroring: Mirroring,
) -> None:
    """An operator withdraws the approval of com.stripe/mcp; the upstream republishes the
    version's server.json (an edit): the entry stays unapproved and unchanged."""
    await mirroring.sync(names=["com.stripe/mcp"], namespaces=[])
    await _patch(mirroring, "com.stripe/mcp", "0.2.4", {"status": "active", "approved": False})
    edited = response(
        "com.stripe/mcp", "0.2.4", updated="2025-10-02T00:00:00Z", description="Changed upstream"
    )
    mirroring.upstream.put(edited)
    report = await mirroring.sync(names=["com.stripe/mcp"], namespaces=[])
    assert [c.kind for c in report.changes if c.name == "com.stripe/mcp"] == ["curated"]
    entry = await mirroring.entry("com.stripe/mcp", "0.2.4")
    assert entry.approved is False and entry.description != "Changed upstream"


async def test_a_server_of_another_mirror_is_left_to_it(mirroring: Mirroring) -> None:
    """Two mirrors of overlapping filters: what the first imported, the second skips as
    curated (naming the first), and never adds versions to."""
    await mirroring.sync(name="first", namespaces=["io.github.upstash/*"])
    mirroring.upstream.put(response(CONTEXT7, "1.0.15", updated="2025-10-02T00:00:00Z"))
    report = await mirroring.sync(name="second", namespaces=["io.github.*"])
    skipped = [c for c in report.changes if c.name == CONTEXT7]
    assert {c.kind for c in skipped} == {"curated"}
    assert "mirror first" in skipped[0].reason
    versions = [e.version for e in await mirroring.stored() if e.name == CONTEXT7]
    assert versions == ["1.0.13", "1.0.14"]
