"""DPoP proofs for tests (RFC 9449 §4.2), made with joserfc, independently of bastion's own
client code."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from joserfc import jws
from joserfc.jwk import ECKey

from bastion.oauth.dpop import access_token_hash, jwk_thumbprint


def new_key() -> ECKey:
    """A fresh P-256 key (ES256)."""
    return ECKey.generate_key("P-256")


def thumbprint(key: ECKey) -> str:
    """The RFC 7638 thumbprint of ``key``'s public half: what ``cnf.jkt`` holds."""
    return jwk_thumbprint(key.as_dict(private=False))


def make_proof(
    key: ECKey,
    htm: str,
    htu: str,
    *,
    nonce: str | None = None,
    ath: str | None = None,
    iat: int | None = None,
    jti: str | None = None,
    token: str | None = None,
    **header: Any,
) -> str:
    """A DPoP proof signed with ``key`` for ``htm`` ``htu``; ``token`` sets ``ath`` to its hash
    (or give ``ath`` itself); ``header`` overrides members of the JOSE header."""
    public = {k: v for k, v in key.as_dict(private=False).items() if k in ("kty", "crv", "x", "y")}
    head: dict[str, Any] = {"typ": "dpop+jwt", "alg": "ES256", "jwk": public, **header}
    claims: dict[str, Any] = {
        "jti": jti or secrets.token_urlsafe(12),
        "htm": htm,
        "htu": htu,
        "iat": int(time.time()) if iat is None else iat,
    }
    if token is not None:
        claims["ath"] = access_token_hash(token)
    if ath is not None:
        claims["ath"] = ath
    if nonce is not None:
        claims["nonce"] = nonce
    return jws.serialize_compact(head, json.dumps(claims), key, algorithms=[head["alg"]])


__all__ = ["make_proof", "new_key", "thumbprint"]
