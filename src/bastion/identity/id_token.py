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
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from joserfc.jwk import OKPKey

from bastion.identity.errors import InvalidIdToken
from bastion.identity.providers import ENTRA_TENANT_PLACEHOLDER
from bastion.oauth import jose

MAX_ID_TOKEN_LENGTH = 32 * 1024
DEFAULT_LEEWAY = 120

# The asymmetric JWS algorithms an id_token may use: the table of bastion.oauth.jose. HS256
# (keyed with the client secret) is refused: the asymmetric algorithms every provider offers
# need no shared secret and cannot be confused with it.
ALGORITHMS = jose.SUPPORTED_ALGORITHMS
_HASH = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}


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


def _malformed(detail: str) -> InvalidIdToken:
    return InvalidIdToken("the identity provider's ID token is malformed", detail=detail)


def _signed(token: str, keys: jose.UsableKeys, algorithms: Sequence[str]) -> jose.Verified:
    """The verified id_token (RFC 7515 §5.2 with the provider's keys; RFC 8725 §3.1)."""
    if not isinstance(token, str) or len(token) > MAX_ID_TOKEN_LENGTH:
        raise _malformed("id_token is not a compact JWS of three parts (or is too long)")
    try:
        return jose.verify(token, keys, algorithms)
    except jose.MalformedJws as exc:
        if exc.part == "token":
            raise _malformed(
                "id_token is not a compact JWS of three parts (or is too long)"
            ) from None
        raise _malformed(f"id_token {exc.part} {exc.reason}") from None
    except jose.AlgorithmNotAllowed as exc:
        raise _refuse(
            "unexpected signature algorithm",
            f"id_token alg {exc.alg!r} is not allowed; allowed: {', '.join(algorithms)} "
            "(never none or HMAC)",
        ) from None
    except jose.CriticalHeader:
        raise _refuse(
            "unsupported header",
            "id_token header has crit or b64, extensions bastion does not understand "
            "(RFC 7515 section 4.1.11)",
        ) from None
    except jose.BadKeyId as exc:
        raise _refuse("malformed key id", f"id_token kid is not a string: {exc.kid!r}") from None
    except (jose.KeyDoesNotFit, jose.UnknownKey) as exc:
        if exc.kid is None:
            raise _bad_signature(exc.alg) from None
        raise UnknownKeyError(
            "the identity provider's ID token is signed with an unknown key",
            detail=f"no key with kid {exc.kid!r} for {exc.alg} in the provider's JWKS",
        ) from None
    except jose.BadSignature as exc:
        raise _bad_signature(exc.alg) from None


def _bad_signature(alg: str) -> InvalidIdToken:
    return InvalidIdToken(
        "the identity provider's ID token has an invalid signature",
        detail=f"id_token signature ({alg}) does not verify with the provider's JWKS",
        hint="If the provider rotated its keys just now, try again; otherwise check that "
        "jwks_uri (from discovery) belongs to this provider.",
    )


def _check_times(claims: jose.JsonObject, expected: Expected) -> None:
    """OpenID Connect Core 1.0 §3.1.3.7 steps 9 and 10: exp in the future, iat not in the
    future (both required), nbf passed when present; with ``expected.leeway``."""
    now = expected.now
    try:
        jose.check_times(claims, now=now, leeway=expected.leeway, require_iat=True)
    except jose.TimeClaimError as exc:
        if exc.problem == "not_a_number":
            raise _malformed(f"id_token {exc.claim} is not a number: {exc.value!r}") from None
        value = claims.get(exc.claim)
        if exc.claim == "exp":
            raise _refuse("expired", f"id_token exp {value!r} is past (now {now})") from None
        if exc.claim == "iat":
            raise _refuse("issued in the future", f"id_token iat {value!r}, now {now}") from None
        raise _refuse("not yet valid", f"id_token nbf {value}, now {now}") from None


def _half_hash(value: str, alg: str, key: jose.PublicKey) -> str:
    """at_hash/c_hash: the left half of the hash of the ASCII value, base64url (§3.1.3.8). The
    hash is the one of the signature algorithm; for EdDSA it follows the curve (OpenID Connect
    Core errata: SHA-512 for Ed25519, SHAKE256 with 114 octets for Ed448)."""
    data = value.encode("ascii")
    curve = key.curve_name if isinstance(key, OKPKey) else None
    if curve == "Ed448":
        digest = hashlib.shake_256(data).digest(114)
    elif curve == "Ed25519":
        digest = hashlib.sha512(data).digest()
    else:
        digest = _HASH[alg[-3:]](data).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def _refuse(reason: str, detail: str) -> InvalidIdToken:
    return InvalidIdToken(f"the identity provider's ID token was refused: {reason}", detail=detail)


def validate(token: str, keys: jose.UsableKeys, expected: Expected) -> jose.JsonObject:
    """The claims of a valid id_token; raise :class:`InvalidIdToken` (or UnknownKeyError)."""
    signed = _signed(token, keys, expected.algorithms)
    claims = signed.claims

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
    _check_times(claims, expected)
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
                at_hash.encode("utf-8"),
                _half_hash(expected.access_token, signed.alg, signed.key).encode("ascii"),
            )
        )
    ):
        raise _refuse("access token mismatch", "id_token at_hash does not match")
    return claims


__all__ = [
    "ALGORITHMS",
    "DEFAULT_LEEWAY",
    "MAX_ID_TOKEN_LENGTH",
    "Expected",
    "UnknownKeyError",
    "validate",
]
