"""docs/token-exchange.md's configuration examples load as written, and say what they say."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from bastion.config import Settings

DOC = Path(__file__).parents[2] / "docs" / "token-exchange.md"


def _examples() -> list[Settings]:
    loaded = []
    for block in re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S):
        text = block.replace('"…"', '"a-secret-of-the-example"')
        if "[[gateway.upstreams]]" in text:
            text = text.replace(
                "[[gateway.upstreams]]", "[gateway]\nenabled = true\n[[gateway.upstreams]]", 1
            )
        document = tomllib.loads('issuer = "https://auth.example.com"\n' + text)
        loaded.append(Settings(**document))
    return loaded


def test_the_examples_load_with_the_rules_they_show() -> None:
    direct, behind_gateway = _examples()
    [rule] = direct.token_exchange
    assert (rule.client, rule.source, rule.target, rule.scopes) == (
        "notes-mcp",
        "https://notes.example.com/mcp",
        "https://files.example.com/api",
        ["files:read"],
    )
    [rule] = behind_gateway.token_exchange
    assert (rule.client, rule.source, rule.target) == (
        "gateway",
        "https://auth.example.com/mcp/notes",
        "https://notes.internal.example.com/mcp",
    )
    [upstream] = behind_gateway.gateway.upstreams
    assert upstream.auth == "exchange"
