"""ID Token validation (OpenID Connect Core 1.0 §3.1.3.7), without I/O: the caller fetches the
provider's JWKS and passes its keys in.

Checked, in order: the JWS header (an allow-listed asymmetric ``alg``: never ``none`` nor HMAC,
RFC 8725 §3.1), the signature with the provider's keys (the key named by ``kid``, else every key
that fits the algorithm), ``iss`` identical to the provider's issuer (step 2), ``aud`` containing
bastion's client_id (step 3), ``azp`` present when there are several audiences and then equal to
the client_id (steps 4 and 5), ``exp`` in the future and ``iat`` not in the future, with a small
leeway (steps 9 and 10), ``nonce`` equal to the one sent (step 11), a non-empty ``sub``, and
``at_hash`` when present (§3.1.3.8).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

from bastion.identity.errors import InvalidIdToken
from bastion.identity.providers import ENTRA_TENANT_PLACEHOLDER

MAX_ID_TOKEN_LENGTH = 32 * 1024
DEFAULT_LEEWAY = 120

# The asymmetric JWS algorithms an id_token may use, with the key type each needs (RFC 7518 §3.1,
# RFC 8037, RFC 9864). HS256 (keyed with the client secret) is refused: the asymmetric
# algorithms every provider offers need no shared secret and cannot be confused with it.
_KEY_TYPE = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "PS384": "RSA",
    "PS512": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "ES512": "EC",
    "EdDSA": "OKP",
    "Ed25519": "OKP",
}
_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521", "Ed25519": "Ed25519"}
ALGORITHMS = tuple(_KEY_TYPE)
_HASH = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
_PRIVATE = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")

PublicKey = ECKey | OKPKey | RSAKey


class UnknownKeyError(InvalidIdToken):
    """The id_token names a ``kid`` the JWKS does not hold (the caller may refetch once)."""


@dataclass(frozen=True)
class Expected:
    """What the id_token must say."""

    issuer: str
    client_id: str
    nonce: str
    now: int
    algorithms: Sequence[str] = ("RS256",)
    leeway: int = DEFAULT_LEEWAY
    access_token: str | None = None


def _segment(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidIdToken(
            "the identity provider's ID token is malformed",
            detail=f"id_token {what} is not base64url JSON",
        ) from None
    if not isinstance(value, dict):
        raise InvalidIdToken(
            "the identity provider's ID token is malformed",
            detail=f"id_token {what} is not a JSON object",
        )
    return value


def header(token: str) -> dict[str, Any]:
    """The JWS protected header of a compact token, unverified."""
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > MAX_ID_TOKEN_LENGTH:
        raise InvalidIdToken(
            "the identity provider's ID token is malformed",
            detail="id_token is not a compact JWS of three parts (or is too long)",
        )
    return _segment(token.split(".", 1)[0], "header")


def public_keys(jwks: Mapping[str, Any]) -> list[PublicKey]:
    """The usable signature keys of a JWK Set (RFC 7517 §5); others are skipped."""
    found: list[PublicKey] = []
    raw = jwks.get("keys")
    if not isinstance(raw, list):
        return found
    for data in raw[:100]:
        if not isinstance(data, dict) or data.get("use") not in (None, "sig"):
            continue
        public = {k: v for k, v in data.items() if k not in _PRIVATE}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SecurityWarning)
                kty = public.get("kty")
                if kty == "RSA":
                    rsa = RSAKey.import_key(public)
                    if rsa.raw_value.key_size >= 2048:  # RFC 7518 §3.3
                        found.append(rsa)
                elif kty == "EC":
                    found.append(ECKey.import_key(public))
                elif kty == "OKP":
                    okp = OKPKey.import_key(public)
                    if okp.curve_name == "Ed25519":
                        found.append(okp)
        except (JoseError, ValueError, TypeError, KeyError):
            continue
    return found


def _fits(key: PublicKey, alg: str) -> bool:
    if key.key_type != _KEY_TYPE[alg]:
        return False
    curve = _CURVE.get(alg)
    if curve is not None and isinstance(key, ECKey | OKPKey) and key.curve_name != curve:
        return False
    designed = key.get("alg")
    return designed is None or designed == alg or {designed, alg} == {"EdDSA", "Ed25519"}


def _verify_signature(token: str, alg: str, candidates: list[PublicKey]) -> dict[str, Any]:
    registry = jws.JWSRegistry(algorithms=[alg], strict_check_header=False)
    for key in candidates:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SecurityWarning)
                verified = jws.deserialize_compact(token, key, registry=registry)
        except (JoseError, ValueError, TypeError):
            continue
        try:
            claims = json.loads(verified.payload or b"")
        except (ValueError, UnicodeDecodeError):
            claims = None
        if not isinstance(claims, dict):
            raise InvalidIdToken(
                "the identity provider's ID token is malformed",
                detail="id_token payload is not a JSON object",
            )
        return claims
    raise InvalidIdToken(
        "the identity provider's ID token has an invalid signature",
        detail=f"id_token signature ({alg}) does not verify with the provider's JWKS",
        hint="If the provider rotated its keys just now, try again; otherwise check that "
        "jwks_uri (from discovery) belongs to this provider.",
    )


def _number(claims: Mapping[str, Any], name: str) -> int | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidIdToken(
            "the identity provider's ID token is malformed",
            detail=f"id_token {name} is not a number: {value!r}",
        )
    return int(value)


def _half_hash(value: str, alg: str) -> str:
    """at_hash/c_hash: the left half of the hash of the ASCII value, base64url (§3.1.3.8)."""
    digest = (hashlib.sha512 if alg in ("EdDSA", "Ed25519") else _HASH[alg[-3:]])(
        value.encode("ascii")
    ).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def _refuse(reason: str, detail: str) -> InvalidIdToken:
    return InvalidIdToken(f"the identity provider's ID token was refused: {reason}", detail=detail)


def validate(token: str, keys: Sequence[PublicKey], expected: Expected) -> dict[str, Any]:
    """The claims of a valid id_token; raise :class:`InvalidIdToken` (or UnknownKeyError)."""
    head = header(token)
    alg = head.get("alg")
    if not isinstance(alg, str) or alg not in _KEY_TYPE or alg not in expected.algorithms:
        raise _refuse(
            "unexpected signature algorithm",
            f"id_token alg {alg!r} is not allowed; allowed: {', '.join(expected.algorithms)} "
            "(never none or HMAC)",
        )
    kid = head.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _refuse("malformed key id", f"id_token kid is not a string: {kid!r}")
    if kid is not None:
        candidates = [k for k in keys if k.kid == kid and _fits(k, alg)]
        if not candidates:
            raise UnknownKeyError(
                "the identity provider's ID token is signed with an unknown key",
                detail=f"no key with kid {kid!r} for {alg} in the provider's JWKS",
            )
    else:
        candidates = [k for k in keys if _fits(k, alg)]
    claims = _verify_signature(token, alg, candidates)

    issuer = expected.issuer
    if ENTRA_TENANT_PLACEHOLDER in issuer:
        tid = claims.get("tid")
        if not isinstance(tid, str) or not tid or "/" in tid:
            raise _refuse("no tenant", "multi-tenant Entra id_token has no usable tid claim")
        issuer = issuer.replace(ENTRA_TENANT_PLACEHOLDER, tid)
    if claims.get("iss") != issuer:
        raise _refuse(
            "wrong issuer", f"id_token iss {claims.get('iss')!r} is not the provider's {issuer!r}"
        )
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if (
        not isinstance(audiences, list)
        or not all(isinstance(a, str) for a in audiences)
        or expected.client_id not in audiences
    ):
        raise _refuse(
            "issued to another application",
            f"id_token aud {aud!r} does not contain client_id {expected.client_id!r}",
        )
    azp = claims.get("azp")
    if len(audiences) > 1 and azp is None:
        raise _refuse("no authorized party", "id_token has several audiences and no azp")
    if azp is not None and azp != expected.client_id:
        raise _refuse(
            "issued to another application",
            f"id_token azp {azp!r} is not client_id {expected.client_id!r}",
        )
    exp = _number(claims, "exp")
    if exp is None or exp <= expected.now - expected.leeway:
        raise _refuse("expired", f"id_token exp {exp!r} is past (now {expected.now})")
    iat = _number(claims, "iat")
    if iat is None or iat > expected.now + expected.leeway:
        raise _refuse("issued in the future", f"id_token iat {iat!r}, now {expected.now}")
    nbf = _number(claims, "nbf")
    if nbf is not None and nbf > expected.now + expected.leeway:
        raise _refuse("not yet valid", f"id_token nbf {nbf}, now {expected.now}")
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not hmac.compare_digest(
        nonce.encode("utf-8"), expected.nonce.encode("utf-8")
    ):
        raise _refuse(
            "it does not belong to this sign-in (nonce mismatch)",
            "id_token nonce differs from the one sent in the authorization request "
            "(OpenID Connect Core 1.0 section 3.1.3.7 step 11)",
        )
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 255:
        raise _refuse("no subject", f"id_token sub is missing or longer than 255: {sub!r}")
    at_hash = claims.get("at_hash")
    if (
        at_hash is not None
        and expected.access_token is not None
        and not (
            isinstance(at_hash, str)
            and hmac.compare_digest(
                at_hash.encode("utf-8"), _half_hash(expected.access_token, alg).encode("ascii")
            )
        )
    ):
        raise _refuse("access token mismatch", "id_token at_hash does not match")
    return claims


__all__ = [
    "ALGORITHMS",
    "DEFAULT_LEEWAY",
    "Expected",
    "PublicKey",
    "UnknownKeyError",
    "header",
    "public_keys",
    "validate",
]
