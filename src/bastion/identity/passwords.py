"""Password hashing with argon2id (argon2-cffi defaults, RFC 9106 recommendations)."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
# Verified against when the user does not exist, so timing does not reveal valid user names.
_DUMMY = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored``; constant work even when ``stored`` is None."""
    try:
        return bool(_hasher.verify(stored or _DUMMY, password)) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """A random password for generated accounts (about 128 bits)."""
    return secrets.token_urlsafe(16)


__all__ = ["generate_password", "hash_password", "verify_password"]
