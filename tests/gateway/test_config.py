"""Gateway configuration: one file, several upstreams, each with its own path and resource."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from bastion.config import Settings, UpstreamSettings

HTTP = {"name": "notes", "path": "/mcp/notes", "url": "http://127.0.0.1:9000/mcp"}
STDIO = {"name": "files", "path": "/mcp/files", "command": ["python", "-m", "files"]}


def gateway(*upstreams: dict[str, Any], **fields: Any) -> Settings:
    return Settings(issuer="https://as.example", gateway={"upstreams": list(upstreams), **fields})


def test_resource_defaults_to_the_public_url_plus_the_path() -> None:
    """RFC 8707 §2: each upstream is its own resource; canonical form, no trailing slash."""
    settings = gateway(HTTP, {**STDIO, "path": "/mcp/files/"}, public_url="https://GW.example/")
    assert [u.resource for u in settings.gateway.upstreams] == [
        "https://gw.example/mcp/notes",
        "https://gw.example/mcp/files",
    ]
    assert settings.gateway.upstreams[1].path == "/mcp/files"


def test_public_url_defaults_to_the_issuer() -> None:
    settings = gateway(HTTP)
    assert settings.gateway.public_url == "https://as.example"
    assert settings.gateway.upstreams[0].resource == "https://as.example/mcp/notes"


def test_an_explicit_resource_is_kept_canonical() -> None:
    settings = gateway({**HTTP, "resource": "HTTPS://Notes.Example:443/api/"})
    assert settings.gateway.upstreams[0].resource == "https://notes.example/api"


@pytest.mark.parametrize(
    "upstream",
    [
        {"name": "x", "path": "/x"},
        {"name": "x", "path": "/x", "url": "http://a/mcp", "command": ["run"]},
        {"name": "x", "path": "/x", "command": []},
        {"name": "x", "path": "x", "url": "http://a/mcp"},
        {"name": "x", "path": "/", "url": "http://a/mcp"},
        {"name": "x", "path": "/a/../b", "url": "http://a/mcp"},
        {"name": "x", "path": "/.well-known/x", "url": "http://a/mcp"},
        {"name": "x", "path": "/x", "url": "ftp://a/mcp"},
        {"name": "x y", "path": "/x", "url": "http://a/mcp"},
        {"name": "x", "path": "/x", "url": "http://a/mcp", "env": {"A": "b"}},
        {"name": "x", "path": "/x", "url": "http://a/mcp", "headers": {"Host": "h"}},
        {"name": "x", "path": "/x", "url": "http://a/mcp", "headers": {"X-Bastion-Subject": "h"}},
        {"name": "x", "path": "/x", "url": "http://a/mcp", "headers": {"A": "b\r\nC: d"}},
        {"name": "x", "path": "/x", "url": "http://a/mcp", "surprise": 1},
    ],
)
def test_invalid_upstreams_are_refused(upstream: dict[str, Any]) -> None:
    """url xor command, a plain mount path, valid names and headers, no unknown keys."""
    with pytest.raises(ValidationError):
        gateway(upstream)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({**HTTP}, {**STDIO, "name": "notes"}),
        ({**HTTP}, {**STDIO, "path": "/mcp/notes"}),
        ({**HTTP}, {**STDIO, "path": "/mcp/notes/deeper"}),
        ({**STDIO, "path": "/mcp"}, {**HTTP}),
    ],
)
def test_names_and_paths_are_unique_and_do_not_nest(a: dict[str, Any], b: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=r"twice|overlap"):
        gateway(a, b)


def test_forward_identity_needs_a_long_enough_secret() -> None:
    with pytest.raises(ValidationError, match="identity_secret is not set"):
        gateway({**HTTP, "forward_identity": True})
    with pytest.raises(ValidationError, match="at least 32"):
        gateway({**HTTP, "forward_identity": True}, identity_secret="short")
    settings = gateway({**HTTP, "forward_identity": True}, identity_secret="k" * 32)
    assert settings.gateway.upstreams[0].forward_identity


def test_enabled_gateway_on_plain_http_needs_loopback() -> None:
    """MCP requires https outside loopback, as for the issuer."""
    with pytest.raises(ValidationError, match="https"):
        gateway(HTTP, enabled=True, public_url="http://gw.example")
    assert gateway(HTTP, enabled=True, public_url="http://127.0.0.1:8001").gateway.enabled


def test_secrets_are_masked_and_stdio_environment_is_minimal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """House rule 11: credentials never show in reprs. The process environment is the
    configured env plus a few harmless variables, not the gateway's own secrets."""
    monkeypatch.setenv("BASTION_SECRET_KEY", "do-not-leak")
    monkeypatch.setenv("PATH", "/usr/bin")
    upstream = UpstreamSettings(name="files", path="/f", command=["run"], env={"API_KEY": "sekrit"})
    http = UpstreamSettings(name="n", path="/n", url="http://a/", headers={"X-Key": "sekrit2"})
    assert "sekrit" not in repr(upstream) + repr(http)
    env = upstream.process_environment()
    assert env["API_KEY"] == "sekrit"
    assert env["PATH"] == "/usr/bin"
    assert "BASTION_SECRET_KEY" not in env


def test_the_gateway_section_loads_from_toml(tmp_path: Any) -> None:
    """One configuration file describes the gateway and all its upstreams."""
    from bastion.config import load_settings

    path = tmp_path / "bastion.toml"
    path.write_text(
        'issuer = "https://as.example"\n'
        "[gateway]\nenabled = true\nport = 9100\n"
        '[[gateway.upstreams]]\nname = "notes"\npath = "/mcp/notes"\n'
        'url = "http://127.0.0.1:9000/mcp"\nscopes = ["notes:read"]\n'
        'headers = { Authorization = "Bearer up" }\n'
        '[gateway.upstreams.policy]\ntools = { delete = ["notes:write"] }\n'
        '[[gateway.upstreams]]\nname = "files"\npath = "/mcp/files"\n'
        'command = ["python", "-m", "files"]\n'
    )
    settings = load_settings(path)
    notes, files = settings.gateway.upstreams
    assert settings.gateway.port == 9100
    assert notes.policy.tools == {"delete": ["notes:write"]}
    assert notes.headers["Authorization"].get_secret_value() == "Bearer up"
    assert files.command == ["python", "-m", "files"]


def test_the_as_learns_each_upstream_resource_and_every_scope_its_policy_can_ask_for() -> None:
    """RFC 8707: the AS of the same configuration issues tokens for each upstream; step-up (MCP
    authorization, scope challenges) needs the AS to know the scopes the gateway will ask for."""
    settings = Settings(
        issuer="http://127.0.0.1:8000",
        gateway={
            "enabled": True,
            "upstreams": [
                {
                    "name": "demo",
                    "path": "/mcp/demo",
                    "url": "http://127.0.0.1:9/mcp",
                    "scopes": ["mcp:tools"],
                    "policy": {"tools": {"add_note": ["notes:write"]}},
                }
            ],
        },
    )
    [resource] = settings.resources
    assert resource.uri == "http://127.0.0.1:8000/mcp/demo"
    assert resource.scopes == ["mcp:tools", "notes:write"]
    assert "notes:write" in settings.all_scopes


EXCHANGE = {"resource": "https://notes.example/mcp", "client_id": "gateway", "client_secret": "s"}
NOTES_SERVER = {"uri": "https://notes.example/mcp", "name": "notes-server", "scopes": ["mcp:tools"]}


def exchanging(upstream: dict[str, Any], **fields: Any) -> Settings:
    return Settings(
        issuer="https://as.example",
        resources=[NOTES_SERVER],
        gateway={"upstreams": [upstream]},
        **fields,
    )


def test_an_exchange_upstream_keeps_its_resource_canonical_and_its_secret_masked() -> None:
    """auth = "exchange" (RFC 8693 behind the gateway, X08)."""
    exchange = {**EXCHANGE, "resource": "HTTPS://Notes.Example:443/mcp"}
    settings = exchanging({**HTTP, "auth": "exchange", "exchange": exchange})
    found = settings.gateway.upstreams[0].exchange
    assert found is not None
    assert found.resource == "https://notes.example/mcp"
    assert "**" in repr(found.client_secret)


@pytest.mark.parametrize(
    ("upstream", "says"),
    [
        ({**HTTP, "auth": "exchange"}, r"needs \[gateway.upstreams.exchange\]"),
        ({**HTTP, "exchange": EXCHANGE}, 'auth is not "exchange"'),
        ({**STDIO, "auth": "exchange", "exchange": EXCHANGE}, "needs a url"),
        (
            {**HTTP, "auth": "exchange", "exchange": EXCHANGE, "headers": {"Authorization": "x"}},
            "remove Authorization",
        ),
        ({**HTTP, "auth": "exchange", "exchange": {**EXCHANGE, "client_secret": ""}}, "empty"),
        ({**HTTP, "auth": "exchange", "exchange": {**EXCHANGE, "resource": "notes"}}, "absolute"),
        (
            {**HTTP, "auth": "exchange", "exchange": {**EXCHANGE, "resource": "https://x.example"}},
            r"not a configured resource; add it to \[\[resources\]\]",
        ),
        (
            {
                **HTTP,
                "auth": "exchange",
                "exchange": {**EXCHANGE, "resource": "https://as.example/mcp/notes"},
            },
            "the upstream's resource at the gateway",
        ),
    ],
)
def test_an_exchange_upstream_is_refused_with_a_reason(upstream: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        exchanging(upstream)
