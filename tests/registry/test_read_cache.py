"""Answers of reads kept in memory (bastion.registry.read_cache) never cross visibility, never
outlive a change: a token lacking a group never gets a page built for a token having it; a
page read before a publication, deletion, status or visibility change is not served after it
(in this process at once, in another process within CONFIRM_SECONDS); every read is still
checked for its scope and audited."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.config import Settings
from bastion.registry.access import READ
from bastion.registry.read_cache import CONFIRM_SECONDS, Answer, ReadCache, writing
from bastion.store import registry as rows
from bastion.store.database import Database
from bastion.store.schema import registry_entries, registry_generation
from tests.registry.harness import Registry, RegistryFactory, encoded, server_json
from tests.support.live import free_port

ALPHA = "com.acme.team-a/alpha"
PUBLIC = "com.acme.shared.x/public"


async def _alpha_and_public(reg: Registry) -> str:
    admin = await reg.admin()
    await reg.published(admin, server_json(ALPHA, groups=["team-a"]))
    await reg.published(admin, server_json(PUBLIC))
    return admin


def _version(reg: Registry, name: str, version: str = "1.0.0") -> str:
    return f"{reg.base}/servers/{encoded(name)}/versions/{version}"


async def test_a_token_lacking_a_group_never_gets_an_answer_built_for_a_token_having_it(
    reg: Registry,
) -> None:
    """The same requests, first by a member of team-a (answers kept), then by the same person
    without the group (as after leaving it: a new token without it): the entry of team-a is
    neither listed nor readable (404 problem, as if it did not exist)."""
    await _alpha_and_public(reg)
    member = reg.bearer(await reg.token("ann", groups=["team-a"]))
    former = reg.bearer(await reg.token("ann", groups=[]))
    outsider = reg.bearer(await reg.token("carl"))
    paths = [_version(reg, ALPHA), _version(reg, ALPHA, "latest"), f"{_version(reg, ALPHA)[:-6]}"]
    for _ in range(2):
        assert await reg.list_names(member["Authorization"][7:]) == [
            f"{PUBLIC}@1.0.0",
            f"{ALPHA}@1.0.0",
        ]
        for path in paths:
            assert (await reg.client.get(path, headers=member)).status_code == 200, path
    for headers in (former, outsider):
        assert await reg.list_names(headers["Authorization"][7:]) == [f"{PUBLIC}@1.0.0"]
        for path in paths:
            response = await reg.client.get(path, headers=headers)
            assert response.status_code == 404, path
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["status"] == 404
            assert "alpha" in response.json()["detail"]


async def test_a_finer_read_scope_is_another_visibility(reg: Registry) -> None:
    """mcp-registry:read:team-a opens team-a's entry to a token without the groups claim;
    without that scope the same subject sees only the public entry, cached or not."""
    await _alpha_and_public(reg)
    scoped = await reg.token("dave", f"{READ} {READ}:team-a")
    plain = await reg.token("dave", READ)
    for _ in range(2):
        assert f"{ALPHA}@1.0.0" in await reg.list_names(scoped)
        assert await reg.list_names(plain) == [f"{PUBLIC}@1.0.0"]


async def test_a_token_without_the_read_scope_is_refused_even_when_the_answer_is_kept(
    reg: Registry,
) -> None:
    """403 insufficient_scope, whatever a reader with the scope read just before."""
    await _alpha_and_public(reg)
    reader = reg.bearer(await reg.token("ann", groups=["team-a"]))
    other = reg.bearer(await reg.token("ann", "mcp:tools", groups=["team-a"]))
    listing = f"{reg.base}/servers"
    assert (await reg.client.get(listing, headers=reader)).status_code == 200
    for path in (listing, _version(reg, ALPHA)):
        response = await reg.client.get(path, headers=other)
        assert response.status_code == 403, path
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


async def test_an_answer_read_before_a_change_is_not_served_after_it(reg: Registry) -> None:
    """Publication, new latest version, status change, un-approval, new groups, deletion: each
    is in the very next read of the list, of the version and of latest."""
    admin = await _alpha_and_public(reg)
    ann = await reg.token("ann", groups=["team-a"])
    headers = reg.bearer(ann)
    latest = _version(reg, ALPHA, "latest")

    async def seen() -> tuple[list[str], int, str | None]:
        names = await reg.list_names(ann, version="latest")
        response = await reg.client.get(_version(reg, ALPHA), headers=headers)
        answer = await reg.client.get(latest, headers=headers)
        version = answer.json()["server"]["version"] if answer.status_code == 200 else None
        return names, response.status_code, version

    assert await seen() == ([f"{PUBLIC}@1.0.0", f"{ALPHA}@1.0.0"], 200, "1.0.0")
    await reg.published(admin, server_json(ALPHA, "1.1.0", groups=["team-a"]))
    assert await seen() == ([f"{PUBLIC}@1.0.0", f"{ALPHA}@1.1.0"], 200, "1.1.0")
    status = f"{_version(reg, ALPHA, '1.1.0')}/status"
    admin_headers = reg.bearer(admin)
    response = await reg.client.patch(
        status, json={"status": "active", "approved": False}, headers=admin_headers
    )
    assert response.status_code == 200
    assert await seen() == ([f"{PUBLIC}@1.0.0", f"{ALPHA}@1.0.0"], 200, "1.0.0")
    response = await reg.client.patch(
        f"{reg.base}/servers/{encoded(ALPHA)}/status",
        json={"status": "deprecated", "groups": ["team-b"]},
        headers=admin_headers,
    )
    assert response.status_code == 200
    assert await seen() == ([f"{PUBLIC}@1.0.0"], 404, None)
    bob = await reg.token("bob", groups=["team-b"])
    deprecated = await reg.client.get(_version(reg, ALPHA), headers=reg.bearer(bob))
    assert deprecated.json()["_meta"]["dev.mcp-bastion/registry"]["status"] == "deprecated"
    response = await reg.client.delete(_version(reg, ALPHA), headers=admin_headers)
    assert response.status_code == 200
    assert (await reg.client.get(_version(reg, ALPHA), headers=reg.bearer(bob))).status_code == 404


async def test_every_read_is_audited_with_what_it_answered_kept_or_not(reg: Registry) -> None:
    """Three identical reads (the last two from memory): three records with the same entries."""
    await _alpha_and_public(reg)
    headers = reg.bearer(await reg.token("ann", groups=["team-a"]))
    latest = _version(reg, ALPHA, "latest")
    for _ in range(3):
        assert (await reg.client.get(f"{reg.base}/servers", headers=headers)).status_code == 200
        assert (await reg.client.get(latest, headers=headers)).status_code == 200
    db = Database(reg.settings.effective_database_url, schema=reg.settings.database_schema)
    try:
        async with db.connect() as conn:
            records = [r for r in await rows.audit_records(conn) if r.subject == "ann"]
    finally:
        await db.dispose()
    lists = [r for r in records if r.action == "list"]
    gets = [r for r in records if r.action == "get"]
    assert [r.detail for r in lists] == [
        {"count": 2, "entries": [f"{PUBLIC}@1.0.0", f"{ALPHA}@1.0.0"]}
    ] * 3
    assert [(r.server_name, r.version, r.status) for r in gets] == [(ALPHA, "1.0.0", 200)] * 3


_OTHER_PROCESS = """
import json, os, uvicorn
from bastion.config import Settings
from bastion.registry.app import create_registry_app
settings = Settings(**json.loads(os.environ["TEST_REGISTRY_SETTINGS"]))
uvicorn.run(create_registry_app(settings), host="127.0.0.1", port=int(os.environ["TEST_PORT"]),
            log_level="warning")
"""


@contextmanager
def _other_process(reg: Registry) -> Iterator[str]:
    """The same registry (same database) served by a uvicorn process of its own."""
    port = free_port()
    values: dict[str, Any] = json.loads(reg.settings.model_dump_json())
    secret = reg.settings.secret_key
    assert secret is not None
    values["secret_key"] = secret.get_secret_value()
    env = {**os.environ, "TEST_REGISTRY_SETTINGS": json.dumps(values), "TEST_PORT": str(port)}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    process = subprocess.Popen([sys.executable, "-c", _OTHER_PROCESS], env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/readyz", timeout=1, trust_env=False).status_code < 600:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                raise RuntimeError("the second registry process exited")
            subprocess.run(["sleep", "0.05"], check=True)
        yield url
    finally:
        process.terminate()
        process.wait(10)


async def test_another_process_serves_a_change_no_later_than_confirm_seconds_after_it(
    start_registry: RegistryFactory,
) -> None:
    """A second process keeps the list; a deletion through this process, then an un-approval by
    SQL by hand, are in its first answer once CONFIRM_SECONDS have passed."""
    async with start_registry(anonymous_read=True) as reg:
        admin = await _alpha_and_public(reg)
        other = "com.acme.shared.x/other"
        await reg.published(admin, server_json(other))
        with _other_process(reg) as url:
            async with httpx.AsyncClient(base_url=url, trust_env=False) as http:

                async def names() -> list[str]:
                    response = await http.get("/registry/v0.1/servers")
                    assert response.status_code == 200, response.text
                    return [s["server"]["name"] for s in response.json()["servers"]]

                assert await names() == [other, PUBLIC]
                assert await names() == [other, PUBLIC]
                deleted = await reg.client.delete(_version(reg, PUBLIC), headers=reg.bearer(admin))
                assert deleted.status_code == 200
                await asyncio.sleep(CONFIRM_SECONDS + 0.1)
                assert await names() == [other]
                settings = reg.settings
                db = Database(settings.effective_database_url, schema=settings.database_schema)
                try:
                    async with db.transaction() as conn:
                        await conn.execute(
                            sa.update(registry_entries)
                            .where(registry_entries.c.name == other)
                            .values(approved=False)
                        )
                finally:
                    await db.dispose()
                await asyncio.sleep(CONFIRM_SECONDS + 0.1)
                assert await names() == []


class GatedDatabase(Database):
    """A Database whose reads wait at a gate the test opens."""

    def __init__(self, url: str, *, schema: str | None) -> None:
        super().__init__(url, schema=schema)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        self.entered.set()
        await self.gate.wait()
        async with super().connect() as conn:
            yield conn


async def test_the_generation_read_again_after_confirm_seconds_and_after_this_processs_change(
    make_settings: Callable[..., Settings],
) -> None:
    """A kept answer is used while the generation was read less than confirm_seconds ago; a
    change by SQL is seen once that has passed; a change of this process that commits while the
    generation is being read makes that read not count (its value may predate the change)."""
    settings = make_settings()
    db = GatedDatabase(settings.effective_database_url, schema=settings.database_schema)
    now = [100.0]
    try:
        await db.upgrade()
        cache = ReadCache(db, confirm_seconds=0.5, clock=lambda: now[0])
        first = await cache.generation()
        assert first is not None
        cache.put("page", first, Answer(b"[]"))
        async with db.transaction() as conn:
            await conn.execute(sa.update(registry_generation).values(value=first + 7))
        now[0] += 0.4
        assert await cache.generation() == first
        assert cache.get("page", first) == Answer(b"[]")
        now[0] += 0.2
        assert await cache.generation() == first + 7
        assert cache.get("page", first) is None and cache.get("page", first + 7) is None

        cache.put("page", first + 7, Answer(b"[1]"))
        now[0] += 1
        db.gate.clear()
        db.entered.clear()
        reading = asyncio.ensure_future(cache.generation())
        await db.entered.wait()
        cache.changed()
        db.gate.set()
        assert await reading is None
        assert cache.get("page", first + 7) is None
        assert await cache.generation() == first + 7
    finally:
        await db.dispose()


async def test_a_write_of_this_process_outside_the_api_empties_every_cache_at_once(
    make_settings: Callable[..., Settings],
) -> None:
    """A registry write made in this process by other code than the registry app's own service
    (the console's operator service, a mirror run, an import: all go through
    ``read_cache.writing``) empties every cache of the process when it is over, committed or
    not. The caches' clock stands still, so waiting out confirm_seconds cannot explain it."""
    settings = make_settings()
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        await db.upgrade()
        caches = [ReadCache(db, clock=lambda: 100.0) for _ in range(2)]
        for cache in caches:
            generation = await cache.generation()
            cache.put("page", generation, Answer(b"[]"))
            assert cache.get("page", generation) == Answer(b"[]")
        async with writing(db) as conn:
            await conn.execute(sa.update(registry_generation).values(value=41))
        for cache in caches:
            assert cache.get("page", await cache.generation()) is None
            assert await cache.generation() == 41
            cache.put("page", 41, Answer(b"[1]"))
        try:
            async with writing(db) as conn:
                await conn.execute(sa.update(registry_generation).values(value=42))
                raise RuntimeError("the write fails after its statement")
        except RuntimeError:
            pass
        for cache in caches:
            assert cache.get("page", 41) is None
            assert await cache.generation() == 41
    finally:
        await db.dispose()
