"""The conformance entry point's own logic (no Node needed): lifecycle per protocol version and
the settings each scenario calls for."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bastion.client import Authorizer, ClientSettings, MemoryStorage
from bastion.client.conformance import CIMD_URL, ConformanceEnvironment, sdk_mode, settings_for


@pytest.mark.parametrize(
    ("version", "mode"),
    [
        ("2025-06-18", "legacy"),
        ("2025-11-25", "legacy"),
        ("2026-07-28", "2026-07-28"),
        (None, "auto"),
    ],
)
def test_the_lifecycle_follows_the_protocol_version(version: str | None, mode: str) -> None:
    """Dated versions through 2025-11-25 use the initialize handshake; 2026-07-28 is stateless."""
    assert sdk_mode(version) == mode


async def test_pre_registration_context_binds_the_credentials_to_its_issuer() -> None:
    context = {
        "name": "auth/pre-registration",
        "client_id": "pre-registered-client",
        "client_secret": "pre-registered-secret",
        "issuer": "http://localhost:4000",
    }
    async with Authorizer(ClientSettings(use_keyring=False), storage=MemoryStorage()) as probe:
        settings = await settings_for("auth/pre-registration", context, "http://x/mcp", probe)
    [pre] = settings.pre_registered
    assert (pre.issuer, pre.client_id, pre.grant_type) == (
        "http://localhost:4000",
        "pre-registered-client",
        "authorization_code",
    )
    assert settings.client_metadata_url == CIMD_URL
    assert not settings.legacy_2025_03_26


async def test_other_scenarios_get_no_credentials_and_backcompat_gets_legacy_mode() -> None:
    async with Authorizer(ClientSettings(use_keyring=False), storage=MemoryStorage()) as probe:
        plain = await settings_for("auth/metadata-default", {}, "http://x/mcp", probe)
        legacy = await settings_for(
            "auth/2025-03-26-oauth-endpoint-fallback", {}, "http://x/mcp", probe
        )
    assert plain.pre_registered == []
    assert legacy.legacy_2025_03_26


def test_the_environment_is_read_from_mcp_conformance_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MCP_CONFORMANCE_SCENARIO", "auth/pre-registration")
    monkeypatch.setenv("MCP_CONFORMANCE_CONTEXT", json.dumps({"client_id": "c"}))
    monkeypatch.setenv("MCP_CONFORMANCE_PROTOCOL_VERSION", "2026-07-28")
    env = ConformanceEnvironment()
    assert env.scenario == "auth/pre-registration"
    assert env.context_json() == {"client_id": "c"}
    assert env.protocol_version == "2026-07-28"


def test_the_entry_point_needs_the_server_url() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bastion.client.conformance"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "usage" in done.stderr


def test_a_refusal_exits_1_with_the_reason_and_the_trace() -> None:
    """An unreachable server: the client refuses with a discovery error and its trace."""
    done = subprocess.run(
        [sys.executable, "-m", "bastion.client.conformance", "http://127.0.0.1:9/mcp"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "MCP_CONFORMANCE_SCENARIO": "auth/metadata-default"},
    )
    assert done.returncode == 1
    assert "failed" in done.stderr or "refused" in done.stderr
