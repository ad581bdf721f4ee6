"""What each caller sees (checklist G04: a registry MAY filter which servers a token can see):
groups of the token and of the entry, fine-grained mcp-registry:read:<group> scopes, approval,
ownership, admins, deletion; the same for lists, single versions and version lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bastion.registry.access import ADMIN, READ, WRITE
from tests.registry.harness import Registry, encoded, server_json

PUBLIC = "com.acme.shared.x/public@1.0.0"
ALPHA = "com.acme.team-a/alpha@1.0.0"
BETA = "com.acme.team-b/beta@1.0.0"
MIXED = "com.acme.shared.x/mixed@1.0.0"
DRAFT = "com.acme.team-a/draft@1.0.0"  # alice's, not approved
GONE = "com.acme.team-a/gone@1.0.0"  # deleted
EVERYTHING = {PUBLIC, ALPHA, BETA, MIXED, DRAFT, GONE}


async def populate(reg: Registry) -> None:
    """The entries above: admins' publications are approved, alice's draft is not."""
    admin = await reg.admin()
    await reg.published(admin, server_json("com.acme.shared.x/public"))
    await reg.published(admin, server_json("com.acme.team-a/alpha", groups=["team-a"]))
    await reg.published(admin, server_json("com.acme.team-b/beta", groups=["team-b"]))
    await reg.published(admin, server_json("com.acme.shared.x/mixed", groups=["team-a", "team-b"]))
    await reg.published(admin, server_json("com.acme.team-a/gone", groups=["team-a"]))
    response = await reg.client.delete(
        f"{reg.base}/servers/{encoded('com.acme.team-a/gone')}/versions/1.0.0",
        headers=reg.bearer(admin),
    )
    assert response.status_code == 200
    alice = await reg.token("alice", WRITE, groups=["team-a"])
    draft = await reg.published(alice, server_json("com.acme.team-a/draft", groups=["team-a"]))
    assert draft["_meta"]["dev.mcp-bastion/registry"]["approved"] is False


@dataclass(frozen=True)
class Who:
    """A caller: token claims, and what it should see (without deleted entries)."""

    label: str
    sub: str
    scope: str
    groups: list[str] | None
    sees: frozenset[str]
    client_id: str = "test-client"


CALLERS = [
    Who(
        "registry admin",
        "root",
        ADMIN,
        ["registry-admins"],
        frozenset({PUBLIC, ALPHA, BETA, MIXED, DRAFT}),
    ),
    Who(
        "owner of the draft, team-a",
        "alice",
        READ,
        ["team-a"],
        frozenset({PUBLIC, ALPHA, MIXED, DRAFT}),
    ),
    Who("team-a member", "ann", READ, ["team-a"], frozenset({PUBLIC, ALPHA, MIXED})),
    Who("team-b member", "bob", READ, ["team-b"], frozenset({PUBLIC, BETA, MIXED})),
    Who(
        "member of both",
        "eve",
        READ,
        ["team-b", "team-a"],
        frozenset({PUBLIC, ALPHA, BETA, MIXED}),
    ),
    Who("no groups", "carol", READ, [], frozenset({PUBLIC})),
    Who("no groups claim at all", "carl", READ, None, frozenset({PUBLIC})),
    Who(
        "fine-grained scope mcp-registry:read:team-b",
        "dave",
        f"{READ} {READ}:team-b",
        None,
        frozenset({PUBLIC, BETA, MIXED}),
    ),
    Who(
        "client_credentials token (no groups)",
        "robot",
        READ,
        None,
        frozenset({PUBLIC}),
        client_id="robot",
    ),
    Who(
        "mcp-registry:admin scope but not a registry admin",
        "mallory",
        ADMIN,
        ["team-a"],
        frozenset({PUBLIC, ALPHA, MIXED}),
    ),
    Who(
        "groups claim that is not a list",
        "odd",
        READ,
        None,
        frozenset({PUBLIC}),
    ),
]


async def _token(reg: Registry, who: Who) -> str:
    extra: dict[str, Any] = {}
    if who.label == "groups claim that is not a list":
        extra["groups"] = "team-a"
        return await reg.token(who.sub, who.scope, client_id=who.client_id, **extra)
    return await reg.token(who.sub, who.scope, groups=who.groups, client_id=who.client_id)


async def test_g04_each_caller_lists_exactly_the_entries_its_groups_scopes_and_ownership_allow(
    reg: Registry,
) -> None:
    """An entry is seen by admins, by its owner, and, once approved, by everyone whose groups
    (claim, or mcp-registry:read:<group> scopes) meet its groups; an entry without groups by every
    reader. Deleted entries only with include_deleted. (Every caller of CALLERS, one registry.)"""
    await populate(reg)
    for who in CALLERS:
        token = await _token(reg, who)
        assert set(await reg.list_names(token)) == who.sees, who.label
        assert set(await reg.list_names(token, version="latest")) == who.sees, who.label
        with_deleted = set(await reg.list_names(token, include_deleted="true"))
        expected_gone = who.sees | {GONE} if ALPHA in who.sees else who.sees
        assert with_deleted == expected_gone, who.label


async def test_g04_single_versions_and_version_lists_follow_the_same_visibility(
    reg: Registry,
) -> None:
    """GET .../versions/{version}, .../versions/latest and .../versions answer 404 for an
    entry the caller may not see (its existence is not revealed)."""
    await populate(reg)
    gone = f"{reg.base}/servers/{encoded('com.acme.team-a/gone')}/versions/1.0.0"
    for who in CALLERS:
        headers = reg.bearer(await _token(reg, who))
        for entry in EVERYTHING - {GONE}:
            name, version = entry.split("@")
            base = f"{reg.base}/servers/{encoded(name)}/versions"
            expected = 200 if entry in who.sees else 404
            for path in (f"{base}/{version}", f"{base}/latest", base):
                response = await reg.client.get(path, headers=headers)
                assert response.status_code == expected, (who.label, path, response.text)
                if expected == 404:
                    assert response.headers["content-type"] == "application/problem+json"
        assert (await reg.client.get(gone, headers=headers)).status_code == 404
        response = await reg.client.get(gone, params={"include_deleted": "true"}, headers=headers)
        assert response.status_code == (200 if ALPHA in who.sees else 404), who.label


async def test_g04_an_approved_entry_becomes_visible_to_its_groups(reg: Registry) -> None:
    """Approval (PATCH .../status with approved, registry admins) makes a draft visible to the
    entry's groups; un-approving hides it again."""
    await populate(reg)
    ann = await reg.token("ann", groups=["team-a"])
    assert DRAFT not in await reg.list_names(ann)
    path = f"{reg.base}/servers/{encoded('com.acme.team-a/draft')}/versions/1.0.0/status"
    admin = reg.bearer(await reg.admin())
    response = await reg.client.patch(
        path, json={"status": "active", "approved": True}, headers=admin
    )
    assert response.status_code == 200
    assert response.json()["_meta"]["dev.mcp-bastion/registry"]["approved"] is True
    assert DRAFT in await reg.list_names(ann)
    response = await reg.client.patch(
        path, json={"status": "active", "approved": False}, headers=admin
    )
    assert response.status_code == 200
    assert DRAFT not in await reg.list_names(ann)


async def test_g04_admins_can_change_an_entrys_groups(reg: Registry) -> None:
    """PATCH .../status with groups (bastion extension) re-targets an entry."""
    await populate(reg)
    bob = await reg.token("bob", groups=["team-b"])
    assert ALPHA not in await reg.list_names(bob)
    response = await reg.client.patch(
        f"{reg.base}/servers/{encoded('com.acme.team-a/alpha')}/status",
        json={"status": "active", "groups": ["team-b"]},
        headers=reg.bearer(await reg.admin()),
    )
    assert response.status_code == 200
    assert response.json()["updatedCount"] == 1
    assert ALPHA in await reg.list_names(bob)
    assert ALPHA not in await reg.list_names(await reg.token("ann", groups=["team-a"]))
