"""The OS keyring backend of the token store (used when ``keyring`` has a usable backend).

``keyring`` is optional: without it these tests are skipped and the file store is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

keyring = pytest.importorskip("keyring", reason="the optional keyring package is not installed")

from keyring.backend import KeyringBackend  # noqa: E402
from keyring.errors import PasswordDeleteError  # noqa: E402

from bastion.client.models import RegisteredClient  # noqa: E402
from bastion.client.settings import ClientSettings  # noqa: E402
from bastion.client.storage import (  # noqa: E402
    FileStorage,
    KeyringStorage,
    default_storage,
    keyring_usable,
)
from tests.client.storage_worker import tokens  # noqa: E402


class DictKeyring(KeyringBackend):
    """A real (in-memory) keyring backend, as an OS keyring would be."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


@pytest.fixture
def dict_keyring() -> Iterator[DictKeyring]:
    previous = keyring.get_keyring()
    backend = DictKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


async def test_keyring_backend_when_one_is_usable(
    dict_keyring: DictKeyring, tmp_path: Path
) -> None:
    """With a usable keyring the default store is the keyring: entries per server and issuer,
    nothing secret on disk (only the lock file)."""
    assert keyring_usable()
    settings = ClientSettings(storage_path=tmp_path / "tokens.json")
    storage = default_storage(settings)
    assert isinstance(storage, KeyringStorage)
    await storage.set_tokens(tokens("https://s/mcp"))
    await storage.set_client("https://as", RegisteredClient("https://as", "cid", "dcr"))
    assert {name for _, name in dict_keyring.items} == {"tokens https://s/mcp", "client https://as"}
    assert await storage.get_tokens("https://s/mcp") == tokens("https://s/mcp")
    assert (await storage.get_client("https://as")) == RegisteredClient("https://as", "cid", "dcr")
    await storage.delete_tokens("https://s/mcp")
    await storage.delete_client("https://as")
    assert dict_keyring.items == {}
    assert not (tmp_path / "tokens.json").exists()


def test_without_a_usable_keyring_the_file_is_used(tmp_path: Path) -> None:
    """keyring's fail/null backends (headless machines) do not count as usable."""
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        assert not keyring_usable()
        storage = default_storage(ClientSettings(storage_path=tmp_path / "t.json"))
        assert isinstance(storage, FileStorage)
    finally:
        keyring.set_keyring(previous)
    assert isinstance(
        default_storage(ClientSettings(storage_path=tmp_path / "t.json", use_keyring=False)),
        FileStorage,
    )


async def test_rfc9449_the_dpop_key_is_a_keyring_entry_of_its_own(
    dict_keyring: DictKeyring, tmp_path: Path
) -> None:
    """The DPoP key is kept like the tokens it binds: an entry per (issuer, client_id), nothing
    on disk but the lock file; another store over the same keyring reads the same key."""
    from bastion.client.dpop import DPoPKey

    key = DPoPKey.generate()
    storage = KeyringStorage(tmp_path / "keyring.lock")
    assert await storage.get_dpop_key("https://as", "cid") is None
    await storage.set_dpop_key("https://as", "cid", key.to_jwk())
    assert {name for _, name in dict_keyring.items} == {"dpop-key https://as cid"}
    stored = await KeyringStorage(tmp_path / "keyring.lock").get_dpop_key("https://as", "cid")
    assert stored is not None and DPoPKey.from_jwk(stored).jkt == key.jkt
    assert [p.name for p in tmp_path.iterdir()] == ["keyring.lock"]
