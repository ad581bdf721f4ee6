"""JWT access tokens in the profile of RFC 9068.

Header ``typ: at+jwt`` (§2.1); claims iss, exp, aud, sub, client_id, iat, jti and scope (§2.2);
``aud`` is the RFC 8707 resource the token was requested for.
"""

from __future__ import annotations

import secrets
import warnings
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import KeySet

from bastion.tokens.keys import ALGORITHMS, SigningKey

TYP = "at+jwt"


@dataclass(frozen=True)
class IssuedToken:
    """An access token and the facts the caller must remember about it."""

    token: str
    jti: str
    expires_at: int


def issue(
    key: SigningKey,
    *,
    issuer: str,
    subject: str,
    audience: str,
    client_id: str,
    scope: str,
    now: int,
    ttl: int,
    extra: dict[str, Any] | None = None,
) -> IssuedToken:
    """Sign a new access token."""
    jti = secrets.token_urlsafe(16)
    claims: dict[str, Any] = dict(extra or {})
    claims.update(
        iss=issuer,
        sub=subject,
        aud=audience,
        client_id=client_id,
        iat=now,
        exp=now + ttl,
        jti=jti,
    )
    if scope:
        claims["scope"] = scope
    header = {"alg": key.alg, "kid": key.kid, "typ": TYP}
    if key.alg == "EdDSA":
        with warnings.catch_warnings():
            # joserfc warns that RFC 9864 deprecates the polymorphic name; the operator chose it.
            warnings.simplefilter("ignore", SecurityWarning)
            token = jwt.encode(header, claims, key.key, algorithms=[key.alg])
    else:
        token = jwt.encode(header, claims, key.key, algorithms=[key.alg])
    return IssuedToken(token, jti, now + ttl)


def decode_own(token: str, keys: KeySet, *, issuer: str, now: int) -> dict[str, Any] | None:
    """Verify a token this AS issued (signature, typ, iss, exp); None when it is not valid.

    Used by introspection and revocation; resource servers use ``bastion.resource``.
    """
    if token.count(".") != 2 or len(token) > 8192:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)
            decoded = jwt.decode(token, keys, algorithms=list(ALGORITHMS))
    except (JoseError, ValueError, TypeError):
        return None
    if decoded.header.get("typ") != TYP:
        return None
    claims = dict(decoded.claims)
    if claims.get("iss") != issuer:
        return None
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= now:
        return None
    return claims


__all__ = ["TYP", "IssuedToken", "decode_own", "issue"]
