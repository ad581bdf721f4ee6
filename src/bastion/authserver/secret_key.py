"""The secret key that encrypts what bastion stores sealed (signing keys, upstream tokens)."""

from __future__ import annotations

from bastion.config import Settings
from bastion.tokens.cipher import Cipher, load_or_create_secret


def secret_for(settings: Settings) -> str:
    """The key-encryption secret: configured, or generated once into the data directory."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    return load_or_create_secret(settings.data_dir / "secret.key")


def cipher_for(settings: Settings) -> Cipher:
    """What encrypts stored secrets: :func:`secret_for`, and ``previous_secret_keys`` that
    still decrypt while the secret key is being changed."""
    previous = [old.get_secret_value() for old in settings.previous_secret_keys]
    return Cipher(secret_for(settings), previous)


__all__ = ["cipher_for", "secret_for"]
