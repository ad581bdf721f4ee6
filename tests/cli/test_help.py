"""``--help`` of every command reads as a manual: values named in capitals (``--port PORT``),
no Python type tags, help for every parameter, paragraphs wrapped by the terminal, and
``bastion --version``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from bastion import __version__
from bastion.cli.help_style import unwrapped
from bastion.cli.main import app

runner = CliRunner()
TYPE_TAG = re.compile(r"<(?:str|int|float|bool|path|list\[[a-z]+\]|datetime)>")


def commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, (*path, name))


ALL = list(commands(typer.main.get_command(app)))


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=lambda p: " ".join(p) or "bastion")
def test_help_has_no_type_tags_and_capital_argument_names(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert not TYPE_TAG.search(result.output), result.output
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert "{" not in usage, usage
    for word in usage.split()[usage.split().index("[OPTIONS]") + 1 :]:
        assert word.strip("[].") == word.strip("[].").upper(), usage


def test_every_parameter_has_help() -> None:
    missing = [
        (" ".join(path), param.name)
        for path, command in ALL
        for param in command.params
        if not getattr(param, "help", None)
    ]
    assert missing == []


def test_version_option() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == __version__


def test_quickstart_help_names_its_three_ports() -> None:
    text = " ".join(runner.invoke(app, ["quickstart", "--help"], terminal_width=200).output.split())
    assert "the gateway on PORT+1" in text and "the demo MCP server on PORT+2" in text


def test_docstring_paragraphs_are_unwrapped_but_examples_kept() -> None:
    doc = """First line
    goes on.

    Second paragraph
    also goes on.

        example --flag
        another line
    """
    assert unwrapped(doc) == (
        "First line goes on.\n\nSecond paragraph also goes on.\n\n"
        "    example --flag\n    another line"
    )
