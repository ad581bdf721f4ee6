"""A gateway starts, and serves, while bastion's database cannot be reached yet (it never
migrates it; its revocation feed retries with backoff and says once what to check)."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from bastion.config import Settings
from bastion.gateway import create_gateway_app
from tests.revocation.scenarios import gateway_settings
from tests.support.live import free_port, serve


async def test_the_gateway_starts_while_the_database_is_unreachable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    gateway = f"http://127.0.0.1:{port}"
    closed = free_port()  # nothing listens there
    settings = Settings(
        issuer="http://127.0.0.1:9",
        data_dir=tmp_path,
        database_url=f"postgresql+asyncpg://bastion@127.0.0.1:{closed}/bastion",
        gateway=gateway_settings(gateway, "http://127.0.0.1:9/mcp"),
    )
    caplog.set_level(logging.WARNING, logger="bastion.revocations")
    async with serve(create_gateway_app(settings), port=port), httpx.AsyncClient() as http:
        metadata = await http.get(f"{gateway}/.well-known/oauth-protected-resource/mcp/notes")
        assert metadata.status_code == 200
        unauthenticated = await http.post(f"{gateway}/mcp/notes", json={})
        assert unauthenticated.status_code == 401
    [warning] = [r.getMessage() for r in caplog.records if r.name == "bastion.revocations"]
    assert f"cannot follow postgresql+asyncpg://bastion@127.0.0.1:{closed}/bastion" in warning
    assert "tokens revoked meanwhile keep working here until it is back" in warning
    assert "check database_url and database_schema" in warning
