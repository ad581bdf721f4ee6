"""A URL argument that is not an http(s) URL with a host is a usage error (exit 2) saying what
it looks like, before any request: never an ``UnsupportedProtocol`` trace, never a path such
as ``/8101/mcp/demo`` read from ``localhost:8101/mcp/demo``."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app

runner = CliRunner()
COMMANDS = [
    ["tools"],
    ["call", "URL", "echo"],
    ["login"],
    ["token"],
    ["whoami"],
    ["doctor"],
    ["registry", "search"],
    ["registry", "show", "URL", "io.x/y"],
]


def invoke(command: list[str], url: str) -> tuple[int, str]:
    args = [url if a == "URL" else a for a in command]
    if "URL" not in command:
        args.insert(len(command), url)
    result = runner.invoke(
        app, [*args, "--no-browser"] if command[0] in ("login", "token") else args
    )
    return result.exit_code, " ".join(result.output.replace("│", " ").split())


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_a_url_without_scheme_suggests_one(command: list[str]) -> None:
    code, out = invoke(command, "localhost:8101/mcp/demo")
    assert code == 2, out
    assert "has no scheme; did you mean http://localhost:8101/mcp/demo ?" in out
    code, out = invoke(command, "mcp.example.com/mcp")
    assert code == 2 and "did you mean https://mcp.example.com/mcp ?" in out


@pytest.mark.parametrize(
    ("url", "says"),
    [("ftp://example.com/mcp", "is not an http or https URL"), ("http:///mcp", "names no host")],
)
def test_other_schemes_and_hostless_urls_are_refused(url: str, says: str) -> None:
    code, out = invoke(["tools"], url)
    assert code == 2 and says in out
