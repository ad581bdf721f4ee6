"""Who may publish, edit and delete what: mcp-registry:write within the caller's own namespace
(registry.namespaces), edits by the publisher, mcp-registry:admin for everything else (G03)."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.registry.access import READ, WRITE
from tests.registry.harness import META, Registry, RegistryFactory, encoded, server_json


def _meta(body: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = body["_meta"][META]
    return found


ALLOWED = [
    ("alice", ["team-a"], "c", "com.acme.team-a/tool"),  # group:team-a
    ("bob", ["team-b"], "c", "com.acme.team-b/tool"),  # group:team-b
    ("alice", ["team-a"], "c", "com.acme.shared.tools/tool"),  # com.acme.shared.*
    ("bob", ["team-b"], "c", "com.acme.shared.a.b/tool"),  # below the wildcard
    ("alice", [], "c", "io.alice/tool"),  # sub:alice
    ("robot", None, "robot", "com.robot/tool"),  # client:robot (client_credentials)
]
REFUSED = [
    ("alice", ["team-a"], "com.acme.team-b/tool"),
    ("alice", ["team-a"], "com.acme.shared/tool"),  # the wildcard needs a further label
    ("alice", ["team-a"], "com.acme.shared-x/tool"),
    ("bob", ["team-b"], "io.alice/tool"),
    ("carol", [], "org.unknown/tool"),
    ("mallory", ["team-a"], "org.unknown/tool"),
]


async def test_a_persons_token_through_a_client_is_not_that_client(reg: Registry) -> None:
    """client:<id> counts only for the client acting for itself (sub = client_id, which only
    confidential clients an operator made obtain): anyone can present a public client's id, so
    mallory's token issued to client "robot" does not make her the robot."""
    token = await reg.token("mallory", WRITE, groups=[], client_id="robot")
    response = await reg.publish(token, server_json("com.robot/tool"))
    assert response.status_code == 403, response.text


async def test_g03_a_writer_publishes_in_a_namespace_a_rule_gives_it(reg: Registry) -> None:
    """mcp-registry:write plus a registry.namespaces rule naming one of the caller's memberships
    (group:, sub:, client:, exact namespace or <prefix>.*); the entry belongs to the caller
    and waits for approval."""
    for sub, groups, client_id, name in ALLOWED:
        token = await reg.token(sub, WRITE, groups=groups, client_id=client_id)
        body = await reg.published(token, server_json(name))
        assert body["server"]["name"] == name
        meta = _meta(body)
        assert meta["status"] == "active" and meta["isLatest"] is True
        assert meta["approved"] is False and meta["groups"] == []
        assert meta["publishedAt"] == meta["updatedAt"] == meta["statusChangedAt"]


async def test_g03_publishing_outside_the_callers_namespaces_is_forbidden(reg: Registry) -> None:
    """403 problem naming body.name; nothing is stored."""
    for sub, groups, name in REFUSED:
        token = await reg.token(sub, WRITE, groups=groups)
        response = await reg.publish(token, server_json(name))
        assert response.status_code == 403, name
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["errors"] == [
            {"location": "body.name", "message": "namespace not yours", "value": name}
        ]
    assert await reg.list_names(await reg.admin()) == []


async def test_g03_registry_admins_publish_anywhere_and_their_entries_are_approved(
    reg: Registry,
) -> None:
    """Admins are not bound to namespaces; what they publish needs no approval."""
    body = await reg.published(await reg.admin(), server_json("org.anywhere/tool"))
    assert _meta(body)["approved"] is True


async def test_g03_writers_may_only_target_their_own_groups(reg: Registry) -> None:
    """A non-admin gives an entry only groups from its own groups claim."""
    alice = await reg.token("alice", WRITE, groups=["team-a"])
    response = await reg.publish(alice, server_json("com.acme.team-a/x", groups=["team-b"]))
    assert response.status_code == 403
    assert response.json()["errors"][0]["location"] == "body._meta.dev.mcp-bastion/publish.groups"
    body = await reg.published(alice, server_json("com.acme.team-a/x", groups=["team-a"]))
    assert _meta(body)["groups"] == ["team-a"]
    admin_body = await reg.published(
        await reg.admin(), server_json("com.acme.team-a/y", groups=["anyone"])
    )
    assert _meta(admin_body)["groups"] == ["anyone"]


async def test_default_groups_and_approval_on_publish_are_configurable(
    start_registry: RegistryFactory,
) -> None:
    """registry.default_groups applies to publications without groups; with
    registry.approve_on_publish writers' entries are approved at once."""
    async with start_registry(default_groups=["staff"], approve_on_publish=True) as reg:
        alice = await reg.token("alice", WRITE, groups=["team-a"])
        meta = _meta(await reg.published(alice, server_json("com.acme.team-a/x")))
        assert meta["groups"] == ["staff"] and meta["approved"] is True
        assert await reg.list_names(await reg.token("sam", groups=["staff"])) == [
            "com.acme.team-a/x@1.0.0"
        ]
        assert await reg.list_names(await reg.token("bob", groups=["team-b"])) == []


async def _alice_entry(reg: Registry) -> str:
    alice = await reg.token("alice", WRITE, groups=["team-a"])
    await reg.published(alice, server_json("com.acme.team-a/tool", groups=["team-a"]))
    return f"{reg.base}/servers/{encoded('com.acme.team-a/tool')}/versions/1.0.0"


async def test_g03_the_publisher_edits_its_version_and_approval_starts_again(
    reg: Registry,
) -> None:
    """PUT replaces the server.json; a non-admin's change needs approving again (an approved
    entry cannot be swapped for unreviewed content)."""
    path = await _alice_entry(reg)
    admin = reg.bearer(await reg.admin())
    approve = {"status": "active", "approved": True}
    assert (
        await reg.client.patch(f"{path}/status", json=approve, headers=admin)
    ).status_code == 200
    alice = await reg.token("alice", WRITE, groups=["team-a"])
    changed = server_json("com.acme.team-a/tool", description="Now with more tools")
    response = await reg.client.put(path, json=changed, headers=reg.bearer(alice))
    assert response.status_code == 200
    body = response.json()
    assert body["server"]["description"] == "Now with more tools"
    assert _meta(body)["approved"] is False
    assert _meta(body)["groups"] == ["team-a"]  # kept: the new body gave none
    response = await reg.client.put(path, json=changed, headers=admin)
    assert response.status_code == 200
    assert _meta(response.json())["approved"] is False  # an admin's edit keeps the flag


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_g03_another_writer_of_the_namespace_may_not_change_someone_elses_version(
    reg: Registry, method: str
) -> None:
    """Editing others' entries needs mcp-registry:admin: 403 for ann (team-a) on alice's version,
    404 for bob, who cannot even see it."""
    path = await _alice_entry(reg)
    body = server_json("com.acme.team-a/tool", description="hijacked")
    ann = await reg.token("ann", WRITE, groups=["team-a"])
    admin = reg.bearer(await reg.admin())
    await reg.client.patch(
        f"{path}/status", json={"status": "active", "approved": True}, headers=admin
    )
    response = await reg.client.request(method, path, json=body, headers=reg.bearer(ann))
    assert response.status_code == 403
    assert "published by someone else" in response.json()["detail"]
    bob = await reg.token("bob", WRITE, groups=["team-b"])
    response = await reg.client.request(method, path, json=body, headers=reg.bearer(bob))
    assert response.status_code == 404
    response = await reg.client.request(method, path, json=body, headers=admin)
    assert response.status_code == 200


async def test_g03_the_publisher_deletes_its_version(reg: Registry) -> None:
    """DELETE marks the version deleted (kept, seen with include_deleted); a second DELETE and
    a GET are 404."""
    path = await _alice_entry(reg)
    alice = reg.bearer(await reg.token("alice", WRITE, groups=["team-a"]))
    response = await reg.client.delete(path, headers=alice)
    assert response.status_code == 200
    meta = _meta(response.json())
    assert meta["status"] == "deleted"
    assert (await reg.client.delete(path, headers=alice)).status_code == 404
    assert (await reg.client.get(path, headers=alice)).status_code == 404
    response = await reg.client.get(path, params={"include_deleted": "true"}, headers=alice)
    assert response.status_code == 200
    assert _meta(response.json())["status"] == "deleted"


async def test_g03_a_reader_without_registry_write_cannot_edit_or_delete(reg: Registry) -> None:
    """PUT and DELETE need mcp-registry:write (403 insufficient_scope)."""
    path = await _alice_entry(reg)
    alice = reg.bearer(await reg.token("alice", READ, groups=["team-a"]))
    for method in ("PUT", "DELETE"):
        response = await reg.client.request(
            method, path, json=server_json("com.acme.team-a/tool"), headers=alice
        )
        assert response.status_code == 403
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
