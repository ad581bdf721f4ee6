"""Revoked grants and access tokens as a resource server knows them: :class:`RevocationList`.

An access token is a JWT checked locally, so revoking it at the authorization server changes
nothing at a resource server that is not told. bastion's tokens name the grant they belong to
(``grant_id``: a refresh family, or a machine client's current grant) and themselves (``jti``,
RFC 7519 §4.1.7); the authorization server publishes every grant and token revoked while some
token it covers is alive. A :class:`RevocationList` holds that set in memory, each entry until
its expiry; a verifier given one (``revocations=``) refuses a token whose grant or jti is in it,
also when the token comes from the verifier's cache.

Feeds keep a list current:

- :class:`~bastion.store.revocation_feed.DatabaseRevocationFeed` in processes that reach bastion's
  database (the authorization server, the gateway, the registry): PostgreSQL ``LISTEN``, or
  polling on SQLite;
- :class:`~bastion.resource.revocation_feed.HttpRevocationFeed` in any resource server: it
  long-polls the authorization server's ``<issuer>/revocations`` document (:meth:`document`).

Entries are only ever added (a revocation is final) and leave once expired, so merging what a
feed reports into the list is always right, whatever order reports arrive in.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from typing import Literal, Protocol, runtime_checkable

from bastion.clock import Clock, system_clock
from bastion.resource.principal import Principal

Kind = Literal["grant", "token"]
# Seconds an entry outlives its expiry. A verifier accepts a token up to its ``leeway`` past
# ``exp`` (30 s by default), so an entry dropped at the token's exp would let it work again.
GRACE = 120
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


@runtime_checkable
class RevocationCheck(Protocol):
    """Whether a verified token has been revoked (kept O(1): it runs on every request)."""

    def is_revoked(self, principal: Principal) -> bool:
        """True when the token's grant or the token itself has been revoked."""
        ...


class RevocationList:
    """The grants and access tokens revoked while tokens they cover may still be alive.

    ``is_revoked`` is two dictionary lookups and reads no clock: an entry found after its expiry
    only covers tokens verification refuses anyway. :meth:`prune` drops entries ``grace``
    seconds past their expiry; feeds call it on every cycle, and it costs one comparison when
    nothing is due. ``version`` grows with every change, and :meth:`wait_changed` waits for the
    next one (the long poll of ``<issuer>/revocations``).
    """

    def __init__(self, *, clock: Clock = system_clock, grace: int = GRACE) -> None:
        if grace < 0:
            raise ValueError("grace must not be negative")
        self.clock = clock
        self.grace = grace
        self.version = 0
        self.waiters = 0
        self._grants: dict[str, int] = {}
        self._tokens: dict[str, int] = {}
        self._next_prune: int | None = None
        self._changed = asyncio.Event()
        self._document: tuple[int, str, bytes] | None = None

    def __repr__(self) -> str:
        return f"RevocationList(grants={len(self._grants)}, tokens={len(self._tokens)})"

    def __len__(self) -> int:
        return len(self._grants) + len(self._tokens)

    # -- the check ------------------------------------------------------------------------------

    def is_revoked(self, principal: Principal) -> bool:
        """Whether ``principal``'s grant or token is in the list."""
        return principal.grant_id in self._grants or principal.token_id in self._tokens

    def covers(self, grant_id: str | None, token_id: str | None) -> bool:
        """Whether the grant ``grant_id`` or the token ``token_id`` is in the list."""
        return grant_id in self._grants or token_id in self._tokens

    # -- changes --------------------------------------------------------------------------------

    def add(self, kind: Kind, value: str, expires_at: int) -> bool:
        """Record that a grant or a token (``kind``) is revoked until ``expires_at``; whether
        that changed the list."""
        changed = self._put(kind, value, expires_at, self.clock())
        if changed:
            self._bump()
        return changed

    def update(self, grants: Mapping[str, int], tokens: Mapping[str, int]) -> int:
        """Add many entries at once (what a feed reports); how many were new or extended."""
        now = self.clock()
        changed = sum(self._put("grant", v, exp, now) for v, exp in grants.items())
        changed += sum(self._put("token", v, exp, now) for v, exp in tokens.items())
        if changed:
            self._bump()
        return changed

    def prune(self) -> int:
        """Drop the entries more than ``grace`` seconds past their expiry; how many."""
        now = self.clock()
        if self._next_prune is None or now < self._next_prune:
            return 0
        cutoff = now - self.grace
        before = len(self)
        self._grants = {v: exp for v, exp in self._grants.items() if exp > cutoff}
        self._tokens = {v: exp for v, exp in self._tokens.items() if exp > cutoff}
        left = [*self._grants.values(), *self._tokens.values()]
        self._next_prune = min(left) + self.grace if left else None
        dropped = before - len(self)
        if dropped:
            self._bump()
        return dropped

    def _put(self, kind: Kind, value: str, expires_at: int, now: int) -> bool:
        if kind == "grant":
            table = self._grants
        elif kind == "token":
            table = self._tokens
        else:
            raise ValueError(f"a revocation is of a grant or a token, not {kind!r}")
        if not isinstance(value, str) or not value or expires_at + self.grace <= now:
            return False
        known = table.get(value)
        if known is not None and known >= expires_at:
            return False
        table[value] = expires_at
        due = expires_at + self.grace
        if self._next_prune is None or due < self._next_prune:
            self._next_prune = due
        return True

    def _bump(self) -> None:
        self.version += 1
        self._document = None
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_changed(self, version: int, seconds: float) -> bool:
        """Wait up to ``seconds`` until the list is no longer at ``version``; whether it
        changed."""
        if self.version != version:
            return True
        changed = self._changed
        self.waiters += 1
        try:
            async with asyncio.timeout(seconds):
                await changed.wait()
        except TimeoutError:
            return False
        finally:
            self.waiters -= 1
        return True

    # -- the published document -----------------------------------------------------------------

    def document(self) -> tuple[str, bytes]:
        """The list as JSON, ``{"grants": {id: exp}, "tokens": {jti: exp}}`` (keys sorted), and
        its strong ETag (RFC 9110 §8.8.3): a digest of the content, so that every process of a
        deployment gives the same tag for the same list. Built once per version."""
        if self._document is None or self._document[0] != self.version:
            document = {"grants": self._grants, "tokens": self._tokens}
            body = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
            etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
            self._document = (self.version, etag, body)
        return self._document[1], self._document[2]


def parse_document(body: bytes) -> tuple[dict[str, int], dict[str, int]]:
    """The grants and tokens of a revocation document (:meth:`RevocationList.document`);
    ValueError saying what is wrong when it is not one."""
    if len(body) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"the revocation document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the revocation document is not JSON") from None
    if not isinstance(document, dict):
        raise ValueError("the revocation document is not a JSON object")
    found: list[dict[str, int]] = []
    for member in ("grants", "tokens"):
        entries = document.get(member)
        if not isinstance(entries, dict) or not all(
            isinstance(exp, int) and not isinstance(exp, bool) for exp in entries.values()
        ):
            raise ValueError(f"the revocation document's {member!r} is not an object of expiries")
        found.append(entries)
    return found[0], found[1]


__all__ = [
    "GRACE",
    "MAX_DOCUMENT_BYTES",
    "Kind",
    "RevocationCheck",
    "RevocationList",
    "parse_document",
]
