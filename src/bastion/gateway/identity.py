"""Signed identity headers: how the gateway tells an upstream who called, without the token.

The client's access token never reaches an upstream (MCP authorization, "Token Passthrough";
checklist R05). With ``forward_identity`` the gateway instead adds::

    X-Bastion-Subject     the token's ``sub``
    X-Bastion-Client-Id   the token's ``client_id``
    X-Bastion-Scopes      the granted scopes, space-separated
    X-Bastion-Groups      the subject's groups (the token's ``groups`` claim), space-separated
    X-Bastion-Audience    the upstream's resource URI (the token's audience)
    X-Bastion-Timestamp   seconds since the epoch when the gateway signed
    X-Bastion-Signature   ``v2=`` + hex HMAC-SHA256 over the canonical string

Values are percent-encoded (RFC 3986 §2.1) where they are not visible ASCII (spaces included) or
contain ``%``; scopes are therefore separated by ``%20``. Groups may contain any character: each
is percent-encoded on its own (``,`` included) and they are joined with ``,``.
The canonical string is ``bastion-identity-v2`` and the seven header values before the signature,
each on its own line (``\\n``), exactly as sent. An upstream checks them with
:func:`verify_identity_headers`, which needs nothing but the standard library and this module.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

SUBJECT = "X-Bastion-Subject"
CLIENT_ID = "X-Bastion-Client-Id"
SCOPES = "X-Bastion-Scopes"
GROUPS = "X-Bastion-Groups"
AUDIENCE = "X-Bastion-Audience"
TIMESTAMP = "X-Bastion-Timestamp"
SIGNATURE = "X-Bastion-Signature"
HEADER_PREFIX = "x-bastion-"
VERSION = "bastion-identity-v2"
# Visible ASCII except "%" is left as is, so plain identifiers stay readable. Spaces are encoded:
# HTTP strips them at the ends of a field value, which would break the signature.
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")
_SAFE_IN_LIST = _SAFE.replace(",", "")


class IdentityError(ValueError):
    """The identity headers are missing, malformed, stale or not signed with the shared key."""


@dataclass(frozen=True)
class ForwardedIdentity:
    """The caller as the gateway verified it."""

    subject: str
    client_id: str
    scopes: frozenset[str]
    audience: str
    timestamp: int
    groups: frozenset[str] = frozenset()


def _encode(value: str) -> str:
    return quote(value, safe=_SAFE)


def _canonical(values: Iterable[str]) -> bytes:
    return "\n".join([VERSION, *values]).encode()


def _mac(secret: bytes, message: bytes) -> str:
    return "v2=" + hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign_identity_headers(
    secret: bytes,
    *,
    subject: str,
    client_id: str,
    scopes: Iterable[str],
    audience: str,
    groups: Iterable[str] = (),
    now: Callable[[], float] = time.time,
) -> dict[str, str]:
    """The X-Bastion-* headers for one upstream request."""
    values = {
        SUBJECT: _encode(subject),
        CLIENT_ID: _encode(client_id),
        SCOPES: _encode(" ".join(sorted(set(scopes)))),
        GROUPS: ",".join(quote(g, safe=_SAFE_IN_LIST) for g in sorted(set(groups))),
        AUDIENCE: _encode(audience),
        TIMESTAMP: str(int(now())),
    }
    return {**values, SIGNATURE: _mac(secret, _canonical(values.values()))}


def verify_identity_headers(
    headers: Mapping[str, str],
    secret: bytes | str,
    max_age: float = 60,
    *,
    audience: str | None = None,
    now: Callable[[], float] = time.time,
) -> ForwardedIdentity:
    """Check the gateway's signature on a request's identity headers and return the caller.

    ``headers`` may be any mapping (names are matched case-insensitively). ``max_age`` bounds how
    old (and how far in the future, for clock skew) the timestamp may be, in seconds. Pass
    ``audience`` (this server's resource URI) so headers signed for another upstream that
    shares the key are refused. Raises :class:`IdentityError`.
    """
    key = secret.encode() if isinstance(secret, str) else secret
    lowered = {k.lower(): v for k, v in headers.items()}
    # An empty field may be dropped on the way; the signature still covers it.
    lowered.setdefault(GROUPS.lower(), "")
    names = (SUBJECT, CLIENT_ID, SCOPES, GROUPS, AUDIENCE, TIMESTAMP)
    missing = [n for n in (*names, SIGNATURE) if n.lower() not in lowered]
    if missing:
        raise IdentityError(f"identity headers missing: {', '.join(missing)}")
    values = [lowered[n.lower()] for n in names]
    expected = _mac(key, _canonical(values))
    if not hmac.compare_digest(expected.encode(), lowered[SIGNATURE.lower()].encode()):
        raise IdentityError("the identity signature does not match (wrong key or altered header)")
    try:
        timestamp = int(lowered[TIMESTAMP.lower()])
    except ValueError:
        raise IdentityError("X-Bastion-Timestamp is not an integer") from None
    if abs(now() - timestamp) > max_age:
        raise IdentityError(f"the identity headers are older than {max_age} s (or in the future)")
    subject, client_id, scopes = (unquote(v) for v in values[:3])
    groups = frozenset(unquote(g) for g in values[3].split(",") if g)
    signed_audience = unquote(values[4])
    if audience is not None and signed_audience != audience:
        raise IdentityError(
            f"the identity headers were signed for {signed_audience!r}, not {audience!r}"
        )
    return ForwardedIdentity(
        subject=subject,
        client_id=client_id,
        scopes=frozenset(scopes.split()),
        audience=signed_audience,
        timestamp=timestamp,
        groups=groups,
    )


__all__ = [
    "AUDIENCE",
    "CLIENT_ID",
    "GROUPS",
    "HEADER_PREFIX",
    "SCOPES",
    "SIGNATURE",
    "SUBJECT",
    "TIMESTAMP",
    "ForwardedIdentity",
    "IdentityError",
    "sign_identity_headers",
    "verify_identity_headers",
]
