"""schemathesis against bastion's own OpenAPI document of the registry (whose paths and shapes are
the upstream generic registry API's): no 5xx, no response that violates the document.

The registry and its AS run under uvicorn in a thread; schemathesis loads /openapi.json and sends
generated requests with a token obtained from the AS (client_credentials, the read, write and admin
scopes; the client is a registry admin), for every operation, first with generated server names,
then (v0.1) with the name of a published server. Examples are bounded and derandomized: 10 per
operation, 6 for operations with a server.json body (generating those is slow), 3 for those bodies
on the /v0 aliases (the same handlers).
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.ext.asyncio import create_async_engine

from bastion.config import ResourceSettings, Settings
from bastion.registry.access import ADMIN, READ, WRITE
from bastion.serve import create_combined_app
from tests.registry.harness import registry_settings, server_json
from tests.support.clients import machine_client
from tests.support.live import free_port, serve

EXAMPLES = 10
BODY_EXAMPLES = 6
BODY_EXAMPLES_ALIAS = 3
BODY_METHODS = {"put", "post"}
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]
POSTGRES_URL = os.environ.get(
    "BASTION_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
EXISTING = ["io.fuzz/alpha", "io.fuzz/beta"]


class Live:
    """The AS and the registry in one app, under uvicorn in its own thread and event loop."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.settings = settings
        self.port = port
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            async with serve(create_combined_app(self.settings), port=self.port):
                self.ready.set()
                while not self.stop.is_set():
                    await asyncio.sleep(0.05)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by the test
            self.error = exc
            self.ready.set()

    def __enter__(self) -> Live:
        self.thread.start()
        assert self.ready.wait(30), "the server did not start"
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def _postgres_schema() -> Iterator[dict[str, Any]]:
    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield {"database_url": POSTGRES_URL, "database_schema": schema}

    async def drop() -> None:
        engine = create_async_engine(POSTGRES_URL)
        async with engine.begin() as conn:
            await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()

    asyncio.run(drop())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """SQLite or a fresh PostgreSQL schema (a synchronous fixture: schemathesis calls are
    blocking, so this test is not a coroutine)."""
    if request.param == "sqlite":
        yield {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}"}
        return
    yield from _postgres_schema()


def test_schemathesis_finds_no_server_error_and_no_response_outside_the_document(
    database: dict[str, Any], tmp_path: Path
) -> None:
    """Every operation of /openapi.json (v0.1 and v0), positive examples, with an admin token:
    not_a_server_error, response_schema_conformance, status_code_conformance,
    content_type_conformance."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    registry = f"{issuer}/registry"
    settings = Settings(
        issuer=issuer,
        data_dir=tmp_path / "data",
        secret_key="test-secret-key-that-is-long-enough-0123456789",
        resources=[ResourceSettings(uri=f"{issuer}/mcp", scopes=["mcp:tools"])],
        registry=registry_settings(admins=["client:fuzzer"]),
        **database,
    )
    created = asyncio.run(
        machine_client(
            settings, client_id="fuzzer", name="schemathesis", scope=f"{READ} {WRITE} {ADMIN}"
        )
    )
    with Live(settings, port), httpx.Client(base_url=issuer) as http:
        response = http.post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "resource": registry,
                "scope": f"{READ} {WRITE} {ADMIN}",
            },
            auth=created.auth,
        )
        assert response.status_code == 200, response.text
        auth = {"Authorization": f"Bearer {response.json()['access_token']}"}
        for name in EXISTING:
            published = http.post("/registry/v0.1/publish", json=server_json(name), headers=auth)
            assert published.status_code == 200, published.text

        schema = schemathesis.openapi.from_url(f"{registry}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 16

        failures: list[str] = []
        for operation in operations:
            alias = operation.path.startswith("/v0/")
            # Generating server.json bodies is slow: the /v0 aliases (the same handlers as
            # /v0.1) get a few examples of them.
            count = EXAMPLES
            if operation.method in BODY_METHODS:
                count = BODY_EXAMPLES_ALIAS if alias else BODY_EXAMPLES
            runs = [(operation.as_strategy(), count)]
            # A published name too, for the v0.1 paths.
            if "{serverName}" in operation.path and not alias:
                fixed: dict[str, Any] = {"serverName": EXISTING[0]}
                if "{version}" in operation.path:
                    fixed["version"] = "1.0.0"
                runs.append((operation.as_strategy(path_parameters=fixed), count))
            for strategy, count in runs:

                @examples(
                    max_examples=count,
                    deadline=None,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                    derandomize=True,
                )
                @given(case=strategy)
                def run(case: schemathesis.Case) -> None:
                    response = case.call(base_url=registry, headers=auth)
                    case.validate_response(response, checks=CHECKS, headers=auth)

                try:
                    run()
                except Exception as exc:  # collect every operation's failure, then report
                    failures.append(f"{operation.label}: {exc}")
        assert failures == []
