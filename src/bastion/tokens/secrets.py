"""Opaque high-entropy values (codes, refresh tokens, client secrets) and their at-rest hashes.

Every value made here carries 256 bits of entropy, so a plain SHA-256 is a sufficient at-rest hash:
no guessing attack on a 256-bit random value is feasible, and the token endpoint stays fast
(a slow password hash such as argon2 would cost tens of milliseconds per request for no gain).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_token(prefix: str = "") -> str:
    """A URL-safe random value with 256 bits of entropy, with an optional readable prefix."""
    return prefix + secrets.token_urlsafe(32)


def digest(value: str) -> str:
    """The at-rest SHA-256 hex digest of a high-entropy value."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def matches(value: str, stored_digest: str) -> bool:
    """Constant-time check of ``value`` against a stored digest."""
    return hmac.compare_digest(digest(value), stored_digest)


__all__ = ["digest", "matches", "new_token"]
