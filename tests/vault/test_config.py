"""``auth = "oauth"`` upstreams: the configuration mistakes refused at load, each with a message
that says what to change, and the documented examples (docs/upstream-oauth.md) accepted."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bastion.config import Settings

DOC = Path(__file__).parents[2] / "docs" / "upstream-oauth.md"
URL = "https://mcp.example.com/mcp"


def _settings(upstream: dict[str, Any]) -> Settings:
    base = {"name": "up", "path": "/mcp/up"}
    return Settings(
        issuer="https://auth.example.com",
        gateway={"enabled": True, "upstreams": [{**base, **upstream}]},
    )


@pytest.mark.parametrize(
    ("upstream", "message"),
    [
        ({"command": ["server"], "auth": "oauth"}, 'auth = "oauth" needs a url'),
        (
            {"url": URL, "auth": "oauth", "headers": {"Authorization": "Bearer shared"}},
            "remove Authorization from headers",
        ),
        ({"url": URL, "oauth": {"client_id": "c"}}, 'auth is not "oauth"'),
        (
            {"url": URL, "auth": "oauth", "oauth": {"registration": "pre-registered"}},
            "needs client_id",
        ),
        (
            {"url": URL, "auth": "oauth", "oauth": {"registration": "dcr", "client_id": "c"}},
            "does not use it",
        ),
        (
            {"url": URL, "auth": "oauth", "oauth": {"client_secret": "s"}},
            "client_secret is set but client_id is not",
        ),
        (
            {"url": URL, "auth": "oauth", "oauth": {"authorization_server": "ftp://as"}},
            "absolute http",
        ),
        ({"url": URL, "auth": "oauth", "oauth": {"refresh_margin": -1}}, "greater than"),
        ({"url": URL, "auth": "basic"}, "Input should be 'none'"),
    ],
)
def test_a_mistake_is_refused_with_what_to_change(upstream: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        _settings(upstream)


def test_the_documented_examples_load() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 2
    for block in blocks:
        document = tomllib.loads("[gateway]\nenabled = true\n" + block.replace('"…"', '"a-secret"'))
        settings = Settings(issuer="https://auth.example.com", **document)
        [upstream] = settings.gateway.upstreams
        assert upstream.auth == "oauth"
        assert upstream.oauth.registration == "auto"
