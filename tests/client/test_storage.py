"""The token store (MCP security considerations "Token Theft", OAuth 2.1 §7.1; checklist C09,
C16): private file, atomic writes, keys by (server, issuer) and issuer, several processes, and
the OS keyring backend."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from bastion.client.errors import StorageError
from bastion.client.models import RegisteredClient
from bastion.client.settings import ClientSettings
from bastion.client.storage import (
    FileStorage,
    KeyringStorage,
    MemoryStorage,
    TokenStorage,
    default_storage,
)
from tests.client.storage_worker import tokens

ROOT = Path(__file__).resolve().parents[2]


def test_every_backend_implements_the_protocol(tmp_path: Path) -> None:
    for storage in (MemoryStorage(), FileStorage(tmp_path / "t.json"), KeyringStorage()):
        assert isinstance(storage, TokenStorage)


async def test_c16_the_token_file_is_private_and_replaced_atomically(tmp_path: Path) -> None:
    """0600 file in a 0700 directory; no temporary file left behind; valid JSON after each
    write (os.replace of a complete file)."""
    path = tmp_path / "config" / "bastion" / "tokens.json"
    storage = FileStorage(path)
    await storage.set_tokens(tokens("https://a.example/mcp"))
    await storage.set_client(
        "https://as.example.com", RegisteredClient("https://as.example.com", "c", "dcr")
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["tokens.json", "tokens.json.lock"]
    document = json.loads(path.read_text())
    assert document["version"] == 1
    assert set(document["tokens"]) == {"https://a.example/mcp"}


async def test_c09_tokens_are_keyed_by_server_and_issuer(tmp_path: Path) -> None:
    """Tokens of one server from two authorization servers live side by side; without an issuer
    the newest is returned; deleting one issuer keeps the other."""
    storage = FileStorage(tmp_path / "tokens.json")
    old = tokens("https://s/mcp").with_changes(issuer="https://as1", obtained_at=1.0)
    new = tokens("https://s/mcp").with_changes(issuer="https://as2", obtained_at=2.0)
    await storage.set_tokens(old)
    await storage.set_tokens(new)
    assert await storage.get_tokens("https://s/mcp", "https://as1") == old
    assert await storage.get_tokens("https://s/mcp") == new
    await storage.delete_tokens("https://s/mcp", "https://as2")
    assert await storage.get_tokens("https://s/mcp") == old
    await storage.delete_tokens("https://s/mcp")
    assert await storage.get_tokens("https://s/mcp") is None


async def test_a_corrupt_token_file_is_reported_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text("{not json")
    with pytest.raises(StorageError, match="delete it"):
        await FileStorage(path).get_tokens("https://s/mcp")


async def test_the_lock_is_reentrant_within_a_task(tmp_path: Path) -> None:
    """A refresh holds the lock and writes through the same store without deadlocking."""
    storage = FileStorage(tmp_path / "tokens.json")
    async with storage.lock():
        await storage.set_tokens(tokens("https://s/mcp"))
    assert await storage.get_tokens("https://s/mcp") is not None


async def test_several_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    """Two other processes and this one store 3 x 15 entries concurrently: every entry is in the
    file at the end (flock around read-modify-write, atomic replace)."""
    path = tmp_path / "tokens.json"
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.client.storage_worker",
            "write",
            str(path),
            name,
            "15",
            cwd=ROOT,
        )
        for name in ("p1", "p2")
    ]
    storage = FileStorage(path)
    for index in range(15):
        await storage.set_tokens(tokens(f"https://me-{index}.example/mcp"))
    codes = await asyncio.wait_for(asyncio.gather(*(w.wait() for w in workers)), 60)
    assert codes == [0, 0]
    document = json.loads(path.read_text())
    assert len(document["tokens"]) == 45


async def test_a_lock_held_by_another_process_times_out_with_a_clear_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tokens.json"
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.client.storage_worker",
        "hold",
        str(path),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert (await asyncio.wait_for(holder.stdout.readline(), 30)).strip() == b"locked"
        storage = FileStorage(path, lock_timeout=0.2)
        with pytest.raises(StorageError, match="another bastion process"):
            await storage.set_tokens(tokens("https://s/mcp"))
    finally:
        holder.stdin.close()
        await asyncio.wait_for(holder.wait(), 30)
    await FileStorage(path, lock_timeout=5).set_tokens(tokens("https://s/mcp"))


def test_the_default_file_is_under_the_user_config_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    storage = default_storage(ClientSettings(use_keyring=False))
    assert isinstance(storage, FileStorage)
    assert storage.path == tmp_path / "mcp-bastion" / "tokens.json"
    assert os.fspath(storage.path).startswith(os.fspath(tmp_path))
