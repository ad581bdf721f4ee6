"""DPoP proofs for tests (RFC 9449 §4.2), made independently of the code under test: a P-256
key from ``cryptography`` and a compact JWS (RFC 7515 §3.1) signed here with ES256."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key (the ES256 proof key of a test client)."""
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """The public JWK of ``key`` (RFC 7518 §6.2.1)."""
    numbers = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64(numbers.x.to_bytes(32, "big")),
        "y": _b64(numbers.y.to_bytes(32, "big")),
    }


def thumbprint(key: ec.EllipticCurvePrivateKey) -> str:
    """The RFC 7638 SHA-256 thumbprint of ``key``'s public JWK: what ``cnf.jkt`` holds."""
    jwk = public_jwk(key)
    canonical = json.dumps(
        {name: jwk[name] for name in ("crv", "kty", "x", "y")}, separators=(",", ":")
    )
    return _b64(hashlib.sha256(canonical.encode()).digest())


def make_proof(
    key: ec.EllipticCurvePrivateKey,
    htm: str,
    htu: str,
    *,
    nonce: str | None = None,
    ath: str | None = None,
    iat: int | None = None,
    jti: str | None = None,
    token: str | None = None,
    **overrides: object,
) -> str:
    """A DPoP proof JWT for ``htm`` ``htu`` signed by ``key`` (ES256), issued now unless
    ``iat`` is given, with a random ``jti`` unless given; ``token`` sets ``ath`` to its hash
    (or give ``ath`` itself); ``header`` overrides members of the JOSE header."""
    header: dict[str, object] = {"typ": "dpop+jwt", "alg": "ES256", "jwk": public_jwk(key)}
    header.update(overrides)
    if token is not None:
        ath = _b64(hashlib.sha256(token.encode("ascii")).digest())
    claims: dict[str, object] = {
        "jti": jti or secrets.token_urlsafe(16),
        "htm": htm,
        "htu": htu,
        "iat": int(time.time()) if iat is None else iat,
    }
    if nonce is not None:
        claims["nonce"] = nonce
    if ath is not None:
        claims["ath"] = ath
    signing_input = ".".join(
        _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input}.{_b64(signature)}"


__all__ = ["make_proof", "new_key", "public_jwk", "thumbprint"]
