"""The audit trail: a database record for every registry API request (who, client, entry,
action, result, time), refusals included; export as JSON lines."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bastion.registry.access import WRITE
from bastion.registry.audit import export
from bastion.store import registry as rows
from bastion.store.database import Database
from tests.registry.harness import Registry, encoded, server_json


async def _records(reg: Registry) -> list[rows.AuditRecord]:
    db = Database(reg.settings.effective_database_url, schema=reg.settings.database_schema)
    try:
        async with db.connect() as conn:
            return await rows.audit_records(conn, limit=10_000)
    finally:
        await db.dispose()


async def test_every_request_leaves_exactly_one_audit_record(reg: Registry) -> None:
    """Reads, writes, refusals by the token check (401, 403) and by the registry (400, 403,
    404, 405, 409): one record each, with subject, client, action, entry, status and result."""
    admin = await reg.admin()
    alice = await reg.token("alice", WRITE, groups=["team-a"], client_id="vscode")
    reader = await reg.token("ann", "mcp:tools", groups=["team-a"])
    name = "com.acme.team-a/tool"
    path = f"{reg.base}/servers/{encoded(name)}/versions"
    calls: list[tuple[Callable[[], Awaitable[httpx.Response]], tuple[Any, ...]]] = [
        (
            lambda: reg.client.get(f"{reg.base}/servers"),
            (None, None, "list", None, None, 401, "unauthorized"),
        ),
        (
            lambda: reg.client.get(
                f"{reg.base}/servers", headers={"Authorization": "Bearer x.y.z"}
            ),
            (None, None, "list", None, None, 401, "invalid_token"),
        ),
        (
            lambda: reg.client.get(f"{reg.base}/servers", headers=reg.bearer(reader)),
            ("ann", "test-client", "list", None, None, 403, "insufficient_scope"),
        ),
        (
            lambda: reg.publish(alice, server_json(name, groups=["team-a"])),
            ("alice", "vscode", "publish", name, "1.0.0", 200, "ok"),
        ),
        (
            lambda: reg.publish(alice, server_json(name, groups=["team-a"])),
            ("alice", "vscode", "publish", name, "1.0.0", 409, "conflict"),
        ),
        (
            lambda: reg.publish(alice, server_json("com.acme.team-b/x")),
            ("alice", "vscode", "publish", "com.acme.team-b/x", "1.0.0", 403, "namespace_denied"),
        ),
        (
            lambda: reg.publish(alice, {"name": "bad"}),
            ("alice", "vscode", "publish", None, None, 400, "invalid"),
        ),
        (
            lambda: reg.client.get(f"{path}/latest", headers=reg.bearer(alice)),
            ("alice", "vscode", "get", name, "1.0.0", 200, "ok"),
        ),
        (
            lambda: reg.client.get(f"{path}/9.9.9", headers=reg.bearer(alice)),
            ("alice", "vscode", "get", name, "9.9.9", 404, "not_found"),
        ),
        (
            lambda: reg.client.get(path, headers=reg.bearer(alice)),
            ("alice", "vscode", "list_versions", name, None, 200, "ok"),
        ),
        (
            lambda: reg.client.put(
                f"{path}/1.0.0", json=server_json(name), headers=reg.bearer(alice)
            ),
            ("alice", "vscode", "update", name, "1.0.0", 200, "ok"),
        ),
        (
            lambda: reg.client.patch(
                f"{path}/1.0.0/status", json={"status": "deprecated"}, headers=reg.bearer(admin)
            ),
            ("root", "admin-console", "set_status", name, "1.0.0", 200, "ok"),
        ),
        (
            lambda: reg.client.patch(
                f"{reg.base}/servers/{encoded(name)}/status",
                json={"status": "active"},
                headers=reg.bearer(alice),
            ),
            ("alice", "vscode", "set_server_status", name, None, 403, "insufficient_scope"),
        ),
        (
            lambda: reg.client.delete(f"{path}/1.0.0", headers=reg.bearer(alice)),
            ("alice", "vscode", "delete", name, "1.0.0", 200, "ok"),
        ),
        (
            lambda: reg.client.delete(f"{reg.base}/servers", headers=reg.bearer(alice)),
            ("alice", "vscode", "unknown", None, None, 405, "method_not_allowed"),
        ),
        (
            lambda: reg.client.get(f"{reg.base}/nothing", headers=reg.bearer(alice)),
            ("alice", "vscode", "unknown", None, None, 404, "not_found"),
        ),
        (
            lambda: reg.client.get(
                f"{reg.base}/servers", params={"limit": "0"}, headers=reg.bearer(alice)
            ),
            ("alice", "vscode", "list", None, None, 400, "invalid"),
        ),
    ]
    for call, expected in calls:
        before = len(await _records(reg))
        response = await call()
        records = await _records(reg)
        assert len(records) == before + 1, (expected, response.status_code)
        last = records[-1]
        got = (
            last.subject,
            last.client_id,
            last.action,
            last.server_name,
            last.version,
            last.status,
            last.result,
        )
        assert got == expected
        assert got[5] == response.status_code
    times = [r.at for r in await _records(reg)]
    assert times == sorted(times)


async def test_lists_record_which_entries_were_returned(reg: Registry) -> None:
    """Who saw which server: a list's record names the entries of the page."""
    admin = await reg.admin()
    await reg.published(admin, server_json("io.x/a", groups=["team-a"]))
    await reg.published(admin, server_json("io.x/b"))
    bob = await reg.token("bob", groups=["team-b"])
    await reg.client.get(
        f"{reg.base}/servers",
        params={"search": "io.x", "version": "latest"},
        headers=reg.bearer(bob),
    )
    last = (await _records(reg))[-1]
    assert last.subject == "bob" and last.action == "list"
    assert last.detail == {
        "count": 1,
        "entries": ["io.x/b@1.0.0"],
        "search": "io.x",
        "version": "latest",
    }
    await reg.client.get(f"{reg.base}/servers", headers=reg.bearer(admin))
    assert (await _records(reg))[-1].detail == {
        "count": 2,
        "entries": ["io.x/a@1.0.0", "io.x/b@1.0.0"],
    }


async def test_metadata_openapi_and_preflights_are_not_audited(reg: Registry) -> None:
    """Only API requests are records; discovery documents and CORS preflights are not."""
    before = len(await _records(reg))
    await reg.client.get("/.well-known/oauth-protected-resource/registry")
    await reg.client.get("/registry/openapi.json")
    await reg.client.options(
        f"{reg.base}/servers",
        headers={"Origin": "https://github.com", "Access-Control-Request-Method": "GET"},
    )
    assert len(await _records(reg)) == before


async def test_a_record_carries_its_requests_id_never_a_malformed_one(reg: Registry) -> None:
    """The id the answer's X-Request-Id and the log lines carry: the client's when well formed,
    else (two headers, characters outside the safe set) a new one."""
    alice = await reg.token("alice", groups=["team-a"])
    sent = [
        [("X-Request-Id", "trace-reg-1")],
        [("X-Request-Id", "has space")],
        [("X-Request-Id", "one"), ("X-Request-Id", "two")],
        [],
    ]
    answered = []
    for headers in sent:
        response = await reg.client.get(
            f"{reg.base}/servers", headers=[*reg.bearer(alice).items(), *headers]
        )
        assert response.status_code == 200, response.text
        answered.append(response.headers["x-request-id"])
    records = (await _records(reg))[-4:]
    assert [r.request_id for r in records] == answered
    assert answered[0] == "trace-reg-1"
    assert {"has space", "one", "two"}.isdisjoint(answered)
    assert len(set(answered)) == 4


async def test_export_filters_by_time_and_subject_as_json_lines(reg: Registry) -> None:
    """`bastion registry audit` exports JSON objects: time (RFC 3339), sub, client_id, action,
    server, version, status, result, detail, request_id."""
    alice = await reg.token("alice", groups=["team-a"])
    await reg.client.get(f"{reg.base}/servers", headers=reg.bearer(alice))
    reg.clock.advance(60_000)
    bob = await reg.token("bob", groups=["team-b"])
    await reg.client.get(f"{reg.base}/servers", headers=reg.bearer(bob))
    db = Database(reg.settings.effective_database_url, schema=reg.settings.database_schema)
    try:
        everything = [line async for line in export(db)]
        assert [line["sub"] for line in everything] == ["alice", "bob"]
        assert set(everything[0]) == {
            "id",
            "time",
            "sub",
            "client_id",
            "action",
            "server",
            "version",
            "status",
            "result",
            "detail",
            "request_id",
        }
        bobs = [line async for line in export(db, subject="bob")]
        assert [line["sub"] for line in bobs] == ["bob"]
        records = await _records(reg)
        later = [line async for line in export(db, since=records[-1].at)]
        assert [line["sub"] for line in later] == ["bob"]
        assert everything[1]["time"].endswith("Z")
    finally:
        await db.dispose()
