"""Server-provided DPoP nonces (RFC 9449 §8 at the authorization server, §9 at a resource).

A nonce is the time window it was made in and an HMAC of that window under the server's key, so
no state is kept and every process that holds the same key makes and accepts the same nonces. A
nonce is accepted in its own window and the next one: a client holds a valid nonce for at least
``lifetime`` seconds and at most twice that. A server hands out a new one (in ``DPoP-Nonce``)
once the window turns.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

_CONTEXT = b"bastion dpop nonce v1"
_MAC_BYTES = 16


class DPoPNonces:
    """Make and check stateless DPoP nonces under ``secret`` (at least 32 bytes), each good for
    ``lifetime`` to ``2 * lifetime`` seconds."""

    def __init__(self, secret: bytes, *, lifetime: int = 300) -> None:
        if len(secret) < 32:
            raise ValueError("a DPoP nonce key needs at least 32 bytes")
        if lifetime < 10:
            raise ValueError("a DPoP nonce must live at least 10 seconds")
        self._key = hmac.new(secret, _CONTEXT, hashlib.sha256).digest()
        self.lifetime = lifetime

    def __repr__(self) -> str:
        return f"DPoPNonces(lifetime={self.lifetime})"

    def _make(self, window: int) -> str:
        packed = struct.pack(">Q", window)
        mac = hmac.new(self._key, packed, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(packed + mac).rstrip(b"=").decode("ascii")

    def current(self, now: int) -> str:
        """The nonce to hand out at ``now`` (Unix seconds)."""
        return self._make(now // self.lifetime)

    def accepts(self, nonce: str, now: int) -> bool:
        """Whether ``nonce`` was made by this key in the current window or the one before."""
        if not isinstance(nonce, str) or len(nonce) > 64:
            return False
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except ValueError:
            return False
        if len(raw) != 8 + _MAC_BYTES:
            return False
        (window,) = struct.unpack(">Q", raw[:8])
        if window not in (now // self.lifetime, now // self.lifetime - 1):
            return False
        return hmac.compare_digest(self._make(window), nonce)


__all__ = ["DPoPNonces"]
