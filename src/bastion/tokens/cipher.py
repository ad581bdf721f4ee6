"""Encryption at rest for signing keys: AES-256-GCM under a key derived from the secret key."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.private_files import private_dir, write_private

_VERSION = "v1"


class SecretKeyError(Exception):
    """The secret key is missing, too short, or not the one the data was encrypted with."""


def _aead(secret: str) -> AESGCM:
    if len(secret) < 32:
        raise SecretKeyError(
            "secret_key must be at least 32 characters; generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
        )
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"bastion signing keys v1"
    ).derive(secret.encode("utf-8"))
    return AESGCM(key)


class Cipher:
    """Encrypts small secrets (private JWKs, upstream refresh tokens) bound to an identifier
    (additional data) under ``secret``; decrypts under ``secret`` or, while the secret key is
    being changed, under one of the ``previous`` secrets."""

    def __init__(self, secret: str, previous: Sequence[str] = ()) -> None:
        self._aead = _aead(secret)
        self._previous = [_aead(old) for old in previous]

    def encrypt(self, plaintext: bytes, *, bound_to: str) -> str:
        """Encrypt ``plaintext`` under the current secret; ``bound_to`` must be given again to
        decrypt."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext, bound_to.encode("utf-8"))
        return f"{_VERSION}.{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def decrypt(self, token: str, *, bound_to: str) -> bytes:
        """Decrypt a value made by :meth:`encrypt`; raise SecretKeyError if no secret fits."""
        return self._open(token, bound_to)[0]

    def reseal(self, token: str, *, bound_to: str) -> str | None:
        """``token`` encrypted under the current secret, or None when it already is."""
        plaintext, current = self._open(token, bound_to)
        return None if current else self.encrypt(plaintext, bound_to=bound_to)

    def _open(self, token: str, bound_to: str) -> tuple[bytes, bool]:
        """The plaintext, and whether the current secret (not a previous one) opened it."""
        version, _, body = token.partition(".")
        if version != _VERSION:
            raise SecretKeyError(f"unknown encryption format {version!r}")
        raw = base64.urlsafe_b64decode(body)
        aad = bound_to.encode("utf-8")
        for index, aead in enumerate([self._aead, *self._previous]):
            try:
                return aead.decrypt(raw[:12], raw[12:], aad), index == 0
            except InvalidTag:
                continue
        raise SecretKeyError(
            "cannot decrypt signing keys: the configured secret_key is not the one they were "
            "encrypted with. Restore the original secret_key (or <data_dir>/secret.key); while "
            "changing it, list the old one in previous_secret_keys until `bastion keys rekey` "
            "has run."
        )


def load_or_create_secret(path: Path) -> str:
    """Read the secret key from ``path``; on first use generate one there with mode 0600."""
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    private_dir(path.parent)
    value = secrets.token_urlsafe(48)
    write_private(path, value + "\n")
    return value


__all__ = ["Cipher", "SecretKeyError", "load_or_create_secret"]
