"""JWT access tokens in the profile of RFC 9068.

Header ``typ: at+jwt`` (§2.1); claims iss, exp, aud, sub, client_id, iat, jti and scope (§2.2);
``aud`` is the RFC 8707 resource the token was requested for.
"""

from __future__ import annotations

import base64
import json
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import KeySet

from bastion.tokens.keys import ALGORITHMS, SigningKey

TYP = "at+jwt"
# The grant a token belongs to (the grant_id of OAuth 2.0 Grant Management): revoking the grant
# revokes every access token carrying it.
GRANT_ID = "grant_id"


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
    extra: Mapping[str, object] | None = None,
) -> IssuedToken:
    """Sign a new access token."""
    jti = secrets.token_urlsafe(16)
    claims: dict[str, object] = dict(extra or {})
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
    fast = _sign_compact(key, header, claims)
    if fast is not None:
        return IssuedToken(fast, jti, now + ttl)
    if key.alg == "EdDSA":
        with warnings.catch_warnings():
            # joserfc warns that RFC 9864 deprecates the polymorphic name; the operator chose it.
            warnings.simplefilter("ignore", SecurityWarning)
            token = jwt.encode(header, claims, key.key, algorithms=[key.alg])
    else:
        token = jwt.encode(header, claims, key.key, algorithms=[key.alg])
    return IssuedToken(token, jti, now + ttl)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


_COMPACT = json.JSONEncoder(separators=(",", ":"))
_ES256 = ec.ECDSA(hashes.SHA256())
# Per signing key: the key object it was made for (an id is only unique while its object
# lives), the private key, and the encoded header segment, which is the same for every token.
_signers: dict[int, tuple[object, object, bytes]] = {}


def _signer(key: SigningKey, header: Mapping[str, object]) -> tuple[object, bytes]:
    """The private key of ``key`` and its token header's encoded segment, made once per key."""
    found = _signers.get(id(key.key))
    if found is None or found[0] is not key.key:
        if len(_signers) > 64:  # keys rotate rarely; never let retired ones pile up
            _signers.clear()
        segment = _b64(_COMPACT.encode(header).encode())
        found = (key.key, key.key.private_key, segment)
        _signers[id(key.key)] = found
    return found[1], found[2]


def _sign_compact(
    key: SigningKey, header: Mapping[str, object], claims: Mapping[str, object]
) -> str | None:
    """RFC 7515 §7.1 compact serialization signed with ``cryptography`` directly, for the
    algorithms bastion signs with (a third of the cost of the generic path); None for others.
    ``header`` must be the one :func:`issue` makes for ``key`` (its segment is reused).

    ES256 signatures are the raw 64-byte ``R || S`` of RFC 7518 §3.4, not DER.
    """
    private, header_segment = _signer(key, header)
    signing_input = header_segment + b"." + _b64(_COMPACT.encode(claims).encode())
    if key.alg == "ES256" and isinstance(private, ec.EllipticCurvePrivateKey):
        if not isinstance(private.curve, ec.SECP256R1):
            return None
        r, s = decode_dss_signature(private.sign(signing_input, _ES256))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif key.alg in ("Ed25519", "EdDSA") and isinstance(private, ed25519.Ed25519PrivateKey):
        signature = private.sign(signing_input)
    elif key.alg == "RS256" and isinstance(private, rsa.RSAPrivateKey):
        signature = private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        return None
    return (signing_input + b"." + _b64(signature)).decode("ascii")


def decode_own(token: str, keys: KeySet, *, issuer: str, now: int) -> dict[str, object] | None:
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


__all__ = ["GRANT_ID", "TYP", "IssuedToken", "decode_own", "issue"]
