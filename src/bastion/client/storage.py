"""Where the client keeps tokens and registrations (MCP security considerations, "Token Theft";
OAuth 2.1 §7.1: secure storage; checklist C16: refresh tokens stay confidential).

:class:`TokenStorage` is the seam (a Protocol, house rule 4). Tokens are keyed by (MCP server
URL, issuer), client registrations by issuer (checklist C09) and DPoP keys (RFC 9449) by
(issuer, client_id): a private key kept exactly as safely as the tokens it binds. Backends:

- :class:`KeyringStorage`: the OS keyring, when the ``keyring`` package has a usable backend;
- :class:`FileStorage`: a JSON file readable by its owner only (0600, in a 0700 directory) under
  the user's config directory (platformdirs), written atomically (temp file + ``os.replace``);
- :class:`MemoryStorage`: for tests and one-shot runs.

Several processes may share a store: :meth:`TokenStorage.lock` takes an exclusive
``fcntl.flock`` on a lock file (plus an in-process lock), re-entrant within one task, so a
refresh is done by one process while the others wait and then read the new tokens instead of
replaying a rotated refresh token (which RFC 9700 §4.14.2 reuse detection would punish).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import sys
import uuid
import weakref
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import platformdirs

from bastion.client.errors import StorageError
from bastion.client.models import RegisteredClient, TokenSet
from bastion.client.settings import ClientSettings

if sys.platform != "win32":
    import fcntl
else:  # pragma: no cover - Windows has no flock; the in-process lock still applies
    fcntl = None

APP_NAME = "mcp-bastion"
KEYRING_SERVICE = "mcp-bastion"
LOCK_TIMEOUT = 30.0


@runtime_checkable
class TokenStorage(Protocol):
    """Persistent tokens (by server URL and issuer) and client registrations (by issuer)."""

    def lock(self) -> AbstractAsyncContextManager[None]:
        """Exclusive access across tasks and processes; re-entrant within one task."""
        ...

    async def get_tokens(self, server_url: str, issuer: str | None = None) -> TokenSet | None:
        """The tokens for ``server_url`` from ``issuer`` (any issuer: the newest), or None."""
        ...

    async def set_tokens(self, tokens: TokenSet) -> None:
        """Store ``tokens`` under (``tokens.server_url``, ``tokens.issuer``)."""
        ...

    async def delete_tokens(self, server_url: str, issuer: str | None = None) -> None:
        """Forget the tokens for ``server_url`` (from ``issuer``, or from every issuer)."""
        ...

    async def get_client(self, issuer: str) -> RegisteredClient | None:
        """The client registered (by DCR) with ``issuer``, or None."""
        ...

    async def set_client(self, issuer: str, client: RegisteredClient) -> None:
        """Store a registration under its issuer."""
        ...

    async def delete_client(self, issuer: str) -> None:
        """Forget the registration with ``issuer``."""
        ...

    async def get_dpop_key(self, issuer: str, client_id: str) -> dict[str, str] | None:
        """The private DPoP JWK of this client at ``issuer``, or None."""
        ...

    async def set_dpop_key(self, issuer: str, client_id: str, jwk: dict[str, str]) -> None:
        """Store the DPoP key of this client at ``issuer``."""
        ...


class ReentrantLock:
    """An exclusive lock across tasks (asyncio) and, with a path, across processes (flock).

    Re-entrant for the task that holds it. The flock is polled without blocking the event loop
    and given up after ``timeout`` seconds with a :class:`StorageError`.
    """

    def __init__(self, path: Path | None = None, timeout: float = LOCK_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self._owner: asyncio.Task[Any] | None = None
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def _loop_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Hold the lock for the block."""
        task = asyncio.current_task()
        if task is not None and self._owner is task:
            yield
            return
        async with self._loop_lock():
            fd = await self._acquire_file()
            self._owner = task
            try:
                yield
            finally:
                self._owner = None
                if fd is not None:
                    with contextlib.suppress(OSError):
                        fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)

    async def _acquire_file(self) -> int | None:
        if self.path is None or fcntl is None:
            return None
        _private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if loop.time() >= deadline:
                    os.close(fd)
                    raise StorageError(
                        f"could not lock {self.path} within {self.timeout:g} s: another bastion "
                        "process holds it; if none is running, delete the lock file"
                    ) from None
                await asyncio.sleep(0.02)


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def default_path() -> Path:
    """``tokens.json`` under the user's config directory (platformdirs)."""
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "tokens.json"


def _newest(entries: dict[str, Any], issuer: str | None) -> TokenSet | None:
    if issuer is not None:
        data = entries.get(issuer)
        return TokenSet.from_json(data) if isinstance(data, dict) else None
    tokens = [TokenSet.from_json(d) for d in entries.values() if isinstance(d, dict)]
    return max(tokens, key=lambda t: t.obtained_at, default=None)


class _DocumentStorage:
    """A TokenStorage over one JSON document ``{"tokens": {url: {issuer: …}}, "clients": …}``
    read and written whole by a subclass."""

    def __init__(self, lock: ReentrantLock) -> None:
        self._lock = lock

    def lock(self) -> AbstractAsyncContextManager[None]:
        return self._lock.hold()

    async def _read(self) -> dict[str, Any]:
        raise NotImplementedError

    async def _write(self, document: dict[str, Any]) -> None:
        raise NotImplementedError

    async def get_tokens(self, server_url: str, issuer: str | None = None) -> TokenSet | None:
        entries = (await self._read()).get("tokens", {}).get(server_url, {})
        return _newest(entries, issuer)

    async def set_tokens(self, tokens: TokenSet) -> None:
        async with self._lock.hold():
            document = await self._read()
            by_url = document.setdefault("tokens", {}).setdefault(tokens.server_url, {})
            by_url[tokens.issuer] = tokens.to_json()
            await self._write(document)

    async def delete_tokens(self, server_url: str, issuer: str | None = None) -> None:
        async with self._lock.hold():
            document = await self._read()
            by_url = document.setdefault("tokens", {})
            if issuer is None:
                by_url.pop(server_url, None)
            else:
                by_url.get(server_url, {}).pop(issuer, None)
                if not by_url.get(server_url):
                    by_url.pop(server_url, None)
            await self._write(document)

    async def get_client(self, issuer: str) -> RegisteredClient | None:
        data = (await self._read()).get("clients", {}).get(issuer)
        return RegisteredClient.from_json(data) if isinstance(data, dict) else None

    async def set_client(self, issuer: str, client: RegisteredClient) -> None:
        async with self._lock.hold():
            document = await self._read()
            document.setdefault("clients", {})[issuer] = client.to_json()
            await self._write(document)

    async def delete_client(self, issuer: str) -> None:
        async with self._lock.hold():
            document = await self._read()
            document.setdefault("clients", {}).pop(issuer, None)
            await self._write(document)

    async def get_dpop_key(self, issuer: str, client_id: str) -> dict[str, str] | None:
        data = (await self._read()).get("dpop_keys", {}).get(issuer, {}).get(client_id)
        return data if isinstance(data, dict) else None

    async def set_dpop_key(self, issuer: str, client_id: str, jwk: dict[str, str]) -> None:
        async with self._lock.hold():
            document = await self._read()
            document.setdefault("dpop_keys", {}).setdefault(issuer, {})[client_id] = jwk
            await self._write(document)


class MemoryStorage(_DocumentStorage):
    """Tokens in memory only: gone when the process ends."""

    def __init__(self) -> None:
        super().__init__(ReentrantLock())
        self._document: dict[str, Any] = {}

    async def _read(self) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(self._document))  # as a file read gives
        return copy

    async def _write(self, document: dict[str, Any]) -> None:
        self._document = json.loads(json.dumps(document))


class FileStorage(_DocumentStorage):
    """A 0600 JSON file, replaced atomically on every change, locked with ``<file>.lock``."""

    def __init__(self, path: Path | None = None, *, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.path = path or default_path()
        super().__init__(ReentrantLock(self.path.with_name(self.path.name + ".lock"), lock_timeout))

    def __repr__(self) -> str:
        return f"FileStorage({str(self.path)!r})"

    async def _read(self) -> dict[str, Any]:
        return await asyncio.to_thread(self._read_sync)

    def _read_sync(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {"version": 1, "tokens": {}, "clients": {}}
        except OSError as exc:
            raise StorageError(f"cannot read the token file {self.path}: {exc}") from exc
        try:
            document = json.loads(raw)
        except ValueError:
            raise StorageError(
                f"the token file {self.path} is not valid JSON; delete it to log in again"
            ) from None
        if not isinstance(document, dict):
            raise StorageError(f"the token file {self.path} is not a JSON object; delete it")
        return document

    async def _write(self, document: dict[str, Any]) -> None:
        await asyncio.to_thread(self._write_sync, document)

    def _write_sync(self, document: dict[str, Any]) -> None:
        document["version"] = 1
        data = json.dumps(document, indent=1, sort_keys=True).encode()
        try:
            _private_dir(self.path.parent)
            temp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    temp.unlink()
                raise
        except OSError as exc:
            raise StorageError(f"cannot write the token file {self.path}: {exc}") from exc


class KeyringStorage:
    """The OS keyring (service ``mcp-bastion``): one entry per server URL (``tokens <url>``,
    its issuers inside) and per issuer (``client <issuer>``); a lock file guards changes."""

    def __init__(self, lock_path: Path | None = None, *, service: str = KEYRING_SERVICE) -> None:
        self.service = service
        self._lock = ReentrantLock(lock_path or default_path().with_name("keyring.lock"))

    def lock(self) -> AbstractAsyncContextManager[None]:
        return self._lock.hold()

    async def _get(self, name: str) -> dict[str, Any]:
        keyring = _keyring()
        try:
            raw = await asyncio.to_thread(keyring.get_password, self.service, name)
        except Exception as exc:
            raise StorageError(f"the OS keyring refused to read {name!r}: {exc}") from exc
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    async def _set(self, name: str, data: dict[str, Any]) -> None:
        keyring = _keyring()
        delete_error = importlib.import_module("keyring.errors").PasswordDeleteError
        try:
            if data:
                await asyncio.to_thread(keyring.set_password, self.service, name, json.dumps(data))
            else:
                with contextlib.suppress(delete_error):
                    await asyncio.to_thread(keyring.delete_password, self.service, name)
        except Exception as exc:
            raise StorageError(f"the OS keyring refused to write {name!r}: {exc}") from exc

    async def get_tokens(self, server_url: str, issuer: str | None = None) -> TokenSet | None:
        return _newest(await self._get(f"tokens {server_url}"), issuer)

    async def set_tokens(self, tokens: TokenSet) -> None:
        async with self._lock.hold():
            name = f"tokens {tokens.server_url}"
            entries = await self._get(name)
            entries[tokens.issuer] = tokens.to_json()
            await self._set(name, entries)

    async def delete_tokens(self, server_url: str, issuer: str | None = None) -> None:
        async with self._lock.hold():
            name = f"tokens {server_url}"
            entries = {} if issuer is None else await self._get(name)
            entries.pop(issuer or "", None)
            await self._set(name, entries)

    async def get_client(self, issuer: str) -> RegisteredClient | None:
        data = await self._get(f"client {issuer}")
        return RegisteredClient.from_json(data) if data else None

    async def set_client(self, issuer: str, client: RegisteredClient) -> None:
        async with self._lock.hold():
            await self._set(f"client {issuer}", client.to_json())

    async def delete_client(self, issuer: str) -> None:
        async with self._lock.hold():
            await self._set(f"client {issuer}", {})

    async def get_dpop_key(self, issuer: str, client_id: str) -> dict[str, str] | None:
        return await self._get(f"dpop-key {issuer} {client_id}") or None

    async def set_dpop_key(self, issuer: str, client_id: str, jwk: dict[str, str]) -> None:
        async with self._lock.hold():
            await self._set(f"dpop-key {issuer} {client_id}", jwk)


def _keyring() -> Any:
    """The optional ``keyring`` package (imported on use: it is not a hard dependency)."""
    return importlib.import_module("keyring")


def keyring_usable() -> bool:
    """Whether the ``keyring`` package is installed and has a real backend (not the ``fail``
    or ``null`` ones it falls back to on headless machines)."""
    try:
        keyring = _keyring()
    except ImportError:
        return False
    try:
        backend = keyring.get_keyring()
    except Exception:
        return False
    priority = getattr(backend, "priority", 0)
    return isinstance(priority, int | float) and priority > 0


def default_storage(settings: ClientSettings) -> TokenStorage:
    """The OS keyring when usable (and allowed), else the token file."""
    path = settings.storage_path or default_path()
    if settings.use_keyring and keyring_usable():
        return KeyringStorage(path.with_name(path.name + ".lock"))
    return FileStorage(path)


__all__ = [
    "FileStorage",
    "KeyringStorage",
    "MemoryStorage",
    "ReentrantLock",
    "TokenStorage",
    "default_path",
    "default_storage",
    "keyring_usable",
]
