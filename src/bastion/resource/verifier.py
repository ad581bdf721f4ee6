"""Access-token verification for resource servers: the :class:`TokenVerifier` protocol and what
both of bastion's verifiers share.

- :class:`~bastion.resource.jwt_verifier.JwtVerifier` checks JWT access tokens (RFC 9068)
  locally against the authorization server's JWKS;
- :class:`~bastion.resource.introspection.IntrospectionVerifier` asks the authorization server
  (RFC 7662) about opaque tokens or tokens of an AS whose format is not known.

Both are :class:`CachingVerifier`\\ s: a bounded cache of verified tokens, keyed by the SHA-256
of the token (the token itself is never stored or logged), that never outlives the token's
``exp``; and the HTTP client they make when none is given.

Given a :class:`~bastion.resource.revocation.RevocationCheck` (``revocations=``), a verifier also
refuses a token whose grant or jti has been revoked, on every request: a token from the cache is
checked again each time (two dictionary lookups), so a revocation takes effect as soon as the
list hears of it, however long the token stays cached.

Failures raise :class:`~bastion.oauth.errors.InvalidToken` whose description says what was wrong
(it is sent to the client in ``error_description``). When a verifier cannot reach the
authorization server at all (JWKS or introspection endpoint down) it raises
:class:`~bastion.oauth.errors.TemporarilyUnavailable` instead: the token is not known to be bad,
so answering 401 would send every client into a needless re-authorization.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import OrderedDict
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import httpx

from bastion.clock import Clock
from bastion.oauth.errors import InvalidToken
from bastion.resource.principal import Principal
from bastion.resource.revocation import RevocationCheck

MAX_TOKEN_LENGTH = 16 * 1024
REVOKED = "the token has been revoked"


@runtime_checkable
class TokenVerifier(Protocol):
    """Turns a bearer token into the :class:`Principal` it speaks for.

    ``verify`` raises :class:`~bastion.oauth.errors.InvalidToken` (RFC 6750 §3.1) for a token
    that must be refused, with a description of what was wrong, and
    :class:`~bastion.oauth.errors.TemporarilyUnavailable` when it cannot tell (the authorization
    server cannot be reached).
    """

    async def verify(self, token: str) -> Principal:
        """Verify ``token`` and return its principal."""
        ...


def fingerprint(token: str) -> bytes:
    """The cache key of a token: its SHA-256 (the token itself is never kept)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class VerifiedCache:
    """A bounded LRU of verified principals, each kept until a deadline (at most its exp)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[bytes, tuple[Principal, int]] = OrderedDict()

    def get(self, key: bytes, now: int) -> Principal | None:
        item = self._items.get(key)
        if item is None:
            return None
        principal, until = item
        if now >= until:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return principal

    def put(self, key: bytes, principal: Principal, until: int, now: int) -> None:
        if self.size <= 0 or until <= now:
            return
        self._items[key] = (principal, until)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


async def read_limited(response: httpx.Response, limit: int, what: str) -> bytes:
    """The body of a streamed ``response``; ValueError once it grows past ``limit`` bytes."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise ValueError(f"{what} is larger than {limit} bytes")
    return bytes(body)


class CachingVerifier(ABC):
    """A :class:`TokenVerifier` that checks the token's size, answers from the cache of verified
    tokens, and otherwise asks :meth:`_verify_uncached`; it refuses revoked tokens when given
    ``revocations``, and closes the HTTP client it made."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient | None,
        cache_size: int,
        clock: Clock,
        revocations: RevocationCheck | None = None,
    ) -> None:
        self.clock = clock
        self.revocations = revocations
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=5.0, follow_redirects=False)
        self._cache = VerifiedCache(cache_size)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this verifier made it."""
        if self._own_http:
            await self._http.aclose()

    async def verify(self, token: str) -> Principal:
        """Verify ``token`` (from the cache when it was verified before) and return its
        principal."""
        if not isinstance(token, str) or not token:
            raise InvalidToken("no token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken(f"token is longer than {MAX_TOKEN_LENGTH} characters")
        key = fingerprint(token)
        cached = self._cache.get(key, self.clock())
        if cached is not None:
            if self.revocations is not None and self.revocations.is_revoked(cached):
                raise InvalidToken(REVOKED)
            return cached
        principal, until = await self._verify_uncached(token)
        self._cache.put(key, principal, until, self.clock())
        if self.revocations is not None and self.revocations.is_revoked(principal):
            raise InvalidToken(REVOKED)
        return principal

    @abstractmethod
    async def _verify_uncached(self, token: str) -> tuple[Principal, int]:
        """Verify a token not in the cache: its principal, and until when it may be cached."""


__all__ = [
    "MAX_TOKEN_LENGTH",
    "REVOKED",
    "CachingVerifier",
    "TokenVerifier",
    "VerifiedCache",
    "fingerprint",
    "read_limited",
]
