"""``/healthz`` and ``/readyz`` on every listener: the authorization server, the AS and the
registry combined, a registry on its own origin, the gateway; all under uvicorn on loopback, on
SQLite and PostgreSQL.

First what nobody may see or do through them (they answer without a token): no database URL,
no upstream name, address or command, no exception text, nothing a proxy may cache, no method
but GET and HEAD, no path of an upstream or of the registry taken over. Then what they answer.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import Connection
from starlette.applications import Starlette

from bastion.authserver.app import create_app
from bastion.config import Settings, UpstreamSettings
from bastion.config import gateway as gateway_config
from bastion.gateway import create_gateway_app
from bastion.ops import health
from bastion.registry.app import create_registry_app
from bastion.serve import create_combined_app
from bastion.store.database import Database, alembic_config
from tests.gateway.upstream import RecordingUpstream
from tests.support.live import free_port, serve

MISSING_PROGRAM = "/nonexistent/secret-mcp-server"
POLLS = 200  # every 50 ms: at most 10 s (a failed JWKS fetch is retried after 5 s)


@dataclass
class Listeners:
    """Base URLs of each kind of listener, and what must never appear in their answers."""

    settings: Settings
    urls: dict[str, str]
    secrets: list[str]


@contextlib.asynccontextmanager
async def _deployment(
    make_settings: Callable[..., Settings], issuer_path: str = ""
) -> AsyncIterator[Listeners]:
    recorder = RecordingUpstream()
    as_port, gateway_port, registry_port, closed_port = (free_port() for _ in range(4))
    issuer = f"http://127.0.0.1:{as_port}{issuer_path}"
    gateway = f"http://127.0.0.1:{gateway_port}"
    registry = f"http://127.0.0.1:{registry_port}"
    closed = f"http://127.0.0.1:{closed_port}/mcp"
    async with serve(recorder.app) as upstream:
        upstreams = [
            {"name": "notes", "path": "/mcp/notes", "url": f"{upstream}/mcp"},
            {"name": "brokenupstream", "path": "/mcp/broken", "url": closed},
            {"name": "stdiotool", "path": "/mcp/tool", "command": [MISSING_PROGRAM, "--x"]},
        ]
        settings = make_settings(
            issuer=issuer,
            resources=[],
            gateway={"enabled": True, "public_url": gateway, "upstreams": upstreams},
            registry={"enabled": True, "public_url": f"{issuer}/registry"},
        )
        apart = settings.model_copy(
            update={"registry": settings.registry.model_copy(update={"public_url": registry})}
        )
        try:
            async with contextlib.AsyncExitStack() as stack:
                combined = create_combined_app(settings)
                await stack.enter_async_context(serve(combined, port=as_port))
                alone = await stack.enter_async_context(serve(create_app(settings)))
                await stack.enter_async_context(
                    serve(create_registry_app(apart), port=registry_port)
                )
                await stack.enter_async_context(
                    serve(create_gateway_app(settings), port=gateway_port)
                )
                base = f"http://127.0.0.1:{as_port}"
                yield Listeners(
                    settings,
                    {
                        "combined": base,
                        "authorization server": alone,
                        "registry": registry,
                        "gateway": gateway,
                    },
                    [
                        settings.effective_database_url,
                        str(settings.data_dir),
                        upstream,
                        closed,
                        str(closed_port),
                        "brokenupstream",
                        "stdiotool",
                        MISSING_PROGRAM,
                        "Error",
                        "Traceback",
                    ],
                )
        finally:
            recorder.release()


@pytest.fixture
async def listeners(make_settings: Callable[..., Settings]) -> AsyncIterator[Listeners]:
    async with _deployment(make_settings) as found:
        yield found


async def _get(url: str, method: str = "GET") -> httpx.Response:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        return await http.request(method, url)


def _no_secrets(answer: httpx.Response, secrets: list[str]) -> None:
    text = answer.text + str(answer.headers)
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked in {text}"


# -- who must not see or do what ----------------------------------------------------------------


async def test_readyz_names_no_upstream_address_command_or_error(listeners: Listeners) -> None:
    """The gateway reports that upstreams fail (a closed port, a missing program) by count
    only: their names, URLs and commands stay in the log."""
    answer = await _get(f"{listeners.urls['gateway']}/readyz")
    assert answer.json()["checks"]["upstreams"] == {
        "ok": False,
        "reason": "2 of 3 unreachable",
        "required": False,
    }
    for url in listeners.urls.values():
        for path in ("/readyz", "/healthz"):
            _no_secrets(await _get(f"{url}{path}"), listeners.secrets)


@pytest.mark.parametrize("factory", [create_app, create_combined_app], ids=["as", "combined"])
async def test_readyz_with_the_schema_behind_names_no_revision_or_database(
    make_settings: Callable[..., Settings], factory: Callable[[Settings], Starlette]
) -> None:
    """A schema one migration behind: 503, the check named with a fixed reason (once, though
    the AS and the registry of the combined app both check it); neither the revisions nor the
    database URL nor the data directory appear."""
    settings = make_settings()
    async with serve(factory(settings)) as base:
        await _migrate(settings, "-1")
        answer = await _poll(f"{base}/readyz", 503)
        assert answer.json() == {
            "status": "not_ready",
            "checks": {
                "database": {"ok": True},
                "migrations": {"ok": False, "reason": "not at this version's head"},
                "signing_keys": {"ok": True},
            },
        }
        head = health.head_revision()
        assert head is not None
        _no_secrets(answer, [head, settings.effective_database_url, str(settings.data_dir)])
        await _migrate(settings, "head")
        assert (await _poll(f"{base}/readyz", 200)).json()["status"] == "ready"


async def test_no_proxy_may_cache_a_probe(listeners: Listeners) -> None:
    """Cache-Control: no-store on every answer, ready or not, so no proxy serves a stale one."""
    for url in listeners.urls.values():
        for path in ("/healthz", "/readyz"):
            for method in ("GET", "HEAD", "POST"):
                answer = await _get(f"{url}{path}", method)
                assert answer.headers["cache-control"] == "no-store", (url, path, method)
    starting = create_app(listeners.settings)  # no lifespan: never started
    transport = httpx.ASGITransport(app=starting)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        answer = await http.get("/readyz")
    assert answer.status_code == 503
    assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_only_get_and_head_are_answered(listeners: Listeners, method: str) -> None:
    for url in listeners.urls.values():
        for path in ("/healthz", "/readyz"):
            answer = await _get(f"{url}{path}", method)
            assert answer.status_code == 405, (url, path, answer.text)
            assert answer.headers["allow"] == "GET, HEAD"
            assert answer.json() == {"status": "method_not_allowed"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/readyz/", "/healthz//"])
def test_an_upstream_cannot_be_mounted_on_a_probe(path: str) -> None:
    with pytest.raises(ValidationError) as raised:
        UpstreamSettings(name="x", path=path, url="http://127.0.0.1:9/mcp")
    stripped = path.rstrip("/")
    assert (
        f"path {stripped} is the gateway's own health or readiness probe (/healthz, /readyz); "
        "mount the upstream at another path"
    ) in str(raised.value)


def test_an_upstream_may_be_mounted_below_a_probe_path_name() -> None:
    """Only the exact probe paths are taken: /healthz/notes and /mcp/healthz stay free."""
    for path in ("/healthz/notes", "/mcp/healthz", "/readyz-notes"):
        assert UpstreamSettings(name="x", path=path, url="http://127.0.0.1:9/mcp").path == path


def test_configuration_refuses_the_paths_the_listeners_answer() -> None:
    """config cannot import bastion.ops: its copy of the probe paths must be the same."""
    assert gateway_config.PROBE_PATHS == health.PROBE_PATHS


async def test_probes_take_no_path_of_the_registry_or_under_the_issuer(
    make_settings: Callable[..., Settings],
) -> None:
    """With an issuer path (/auth): the probes answer at the root and under /auth; the AS's
    metadata, the registry's OpenAPI document and metadata still answer, and paths below a
    probe's name are not probes."""
    async with _deployment(make_settings, "/auth") as found:
        base = found.urls["combined"]
        for path in ("/healthz", "/auth/healthz"):
            assert (await _get(f"{base}{path}")).json() == {"status": "ok"}
        for path in ("/readyz", "/auth/readyz"):
            assert (await _get(f"{base}{path}")).json()["status"] == "ready"
        for path in (
            "/.well-known/oauth-authorization-server/auth",
            "/auth/registry/openapi.json",
            "/.well-known/oauth-protected-resource/auth/registry",
            "/auth/jwks",
        ):
            assert (await _get(f"{base}{path}")).status_code == 200, path
        for path in ("/healthz/x", "/auth/readyz/x", "/registry/healthz", "/auth/registry/readyz"):
            answer = await _get(f"{base}{path}")
            assert answer.status_code == 404, path
            assert "status" not in answer.json(), path


# -- what they answer ---------------------------------------------------------------------------


async def test_healthz_is_ok_on_every_listener(listeners: Listeners) -> None:
    for url in listeners.urls.values():
        answer = await _get(f"{url}/healthz")
        assert answer.status_code == 200
        assert answer.json() == {"status": "ok"}
        assert answer.headers["content-type"] == "application/json"


async def test_head_answers_without_a_body(listeners: Listeners) -> None:
    for url in listeners.urls.values():
        for path in ("/healthz", "/readyz"):
            answer = await _get(f"{url}{path}", "HEAD")
            assert answer.status_code == 200
            assert answer.content == b""
            assert int(answer.headers["content-length"]) > 0


async def test_readyz_lists_each_listeners_checks(listeners: Listeners) -> None:
    """Ready everywhere; the gateway despite two upstreams it cannot reach (a detail, not a
    condition)."""
    ok = {"ok": True}
    expected: dict[str, dict[str, Any]] = {
        "authorization server": {"database": ok, "migrations": ok, "signing_keys": ok},
        "combined": {"database": ok, "migrations": ok, "signing_keys": ok},
        "registry": {"database": ok, "migrations": ok, "signing_keys": ok, "revocations": ok},
        "gateway": {
            "database": ok,
            "revocations": ok,
            "signing_keys": ok,
            "upstreams": {"ok": False, "reason": "2 of 3 unreachable", "required": False},
        },
    }
    for name, url in listeners.urls.items():
        answer = await _get(f"{url}/readyz")
        assert answer.status_code == 200, (name, answer.text)
        assert answer.json() == {"status": "ready", "checks": expected[name]}, name


async def test_readyz_is_not_ready_before_the_app_has_started(
    make_settings: Callable[..., Settings],
) -> None:
    """Until the lifespan has opened the database and the keys (here: never), not ready;
    /healthz answers all the same."""
    settings = make_settings()
    for app in (create_app(settings), create_combined_app(settings)):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            answer = await http.get("/readyz")
            assert answer.status_code == 503
            assert answer.json() == {
                "status": "not_ready",
                "checks": {"started": {"ok": False, "reason": "starting or stopping"}},
            }
            assert (await http.get("/healthz")).json() == {"status": "ok"}


async def test_a_gateway_is_not_ready_until_it_has_the_authorization_servers_keys(
    make_settings: Callable[..., Settings],
) -> None:
    """Without the AS's JWKS the gateway can verify no token: not ready, and ready once the
    authorization server answers."""
    as_port, gateway_port = free_port(), free_port()
    upstream = {"name": "tool", "path": "/mcp/tool", "command": [sys.executable, "-V"]}
    settings = make_settings(
        issuer=f"http://127.0.0.1:{as_port}",
        resources=[],
        gateway={
            "enabled": True,
            "public_url": f"http://127.0.0.1:{gateway_port}",
            "upstreams": [upstream],
        },
    )
    async with serve(create_gateway_app(settings), port=gateway_port) as gateway:
        answer = await _get(f"{gateway}/readyz")
        assert answer.status_code == 503
        assert answer.json()["checks"]["signing_keys"] == {"ok": False, "reason": "not fetched"}
        assert answer.json()["checks"]["upstreams"] == {"ok": True, "required": False}
        async with serve(create_app(settings), port=as_port):
            assert (await _poll(f"{gateway}/readyz", 200)).json()["status"] == "ready"


# -- helpers ------------------------------------------------------------------------------------


async def _poll(url: str, status: int) -> httpx.Response:
    """GET ``url`` until it answers ``status`` (bounded: :data:`POLLS` tries, 50 ms apart)."""
    import asyncio

    answer = await _get(url)
    for _ in range(POLLS):
        if answer.status_code == status:
            return answer
        await asyncio.sleep(0.05)
        answer = await _get(url)
    raise AssertionError(f"{url} still answers {answer.status_code}: {answer.text}")


async def _migrate(settings: Settings, revision: str) -> None:
    """Alembic to ``revision`` (``-1``: one back; ``head``) on the settings' database."""
    from alembic import command

    def run(connection: Connection) -> None:
        config = alembic_config(connection)
        if revision == "head":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)

    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        async with db.transaction() as conn:
            await conn.run_sync(run)
    finally:
        await db.dispose()
