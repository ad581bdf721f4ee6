"""The Dockerfile, read (no Docker engine runs the tests, so the image is not built here):
a slim multi-stage build, an unprivileged user, writes only to the /data and /tmp volumes,
``bastion`` as the entry point; its HEALTHCHECK command is run for real against a server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from bastion.authserver.app import create_app
from bastion.config import Settings
from tests.support.live import free_port, serve

ROOT = Path(__file__).parents[2]


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
            pending = ""
    return found


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    return instructions[starts[-1] :]


def _one(word: str) -> str:
    values = [rest for name, rest in _final_stage() if name == word]
    assert len(values) == 1, f"{word}: {values}"
    return values[0]


def test_the_image_is_built_in_two_stages_on_python_slim() -> None:
    bases = [rest for word, rest in _instructions() if word == "FROM"]
    assert bases == ["python:3.11-slim AS build", "python:3.11-slim"]
    copies = [rest for word, rest in _final_stage() if word == "COPY"]
    assert copies == ["--from=build /opt/bastion /opt/bastion"]


def test_the_image_runs_as_an_unprivileged_user_writing_only_to_its_volumes() -> None:
    assert _one("USER") == "10001:10001"
    assert json.loads(_one("VOLUME")) == ["/data", "/tmp"]
    environment = _one("ENV")
    for setting in ("BASTION_DATA_DIR=/data", "PYTHONDONTWRITEBYTECODE=1"):
        assert setting in environment.split()
    assert json.loads(_one("ENTRYPOINT")) == ["bastion"]
    assert json.loads(_one("CMD")) == ["serve"]


def test_the_build_context_is_only_what_the_build_copies() -> None:
    """.dockerignore lets in pyproject.toml, README.md and src/ only: no data directory,
    virtual environment, cache or test secrets reach the image or the build."""
    lines = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {line for line in lines if line.startswith("!")} == {
        "!pyproject.toml",
        "!README.md",
        "!src/",
    }
    copied = {rest.split()[0] for word, rest in _instructions() if word == "COPY"}
    assert copied <= {"pyproject.toml", "src", "--from=build"}


def _healthcheck() -> list[str]:
    rest = _one("HEALTHCHECK")
    assert "--timeout=5s" in rest
    command: list[str] = json.loads(rest.partition("CMD ")[2])
    assert command[0] == "python"  # slim has no curl
    return [sys.executable, *command[1:]]


async def test_the_healthcheck_passes_on_a_live_server_and_fails_without_one(
    make_settings: Callable[..., Settings],
) -> None:
    """The HEALTHCHECK command itself, run with this interpreter: exit 0 while /healthz
    answers, non-zero when nothing listens on HEALTHCHECK_PORT."""
    async with serve(create_app(make_settings())) as base:
        assert await _run_healthcheck(base.rsplit(":", 1)[1]) == 0
    assert await _run_healthcheck(str(free_port())) != 0


async def _run_healthcheck(port: str) -> int:
    """The exit status of the HEALTHCHECK command (the server runs in this event loop)."""
    process = await asyncio.create_subprocess_exec(
        *_healthcheck(),
        env={**os.environ, "HEALTHCHECK_PORT": port},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(process.wait(), 30)
