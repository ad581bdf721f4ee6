"""Checks shared by the two kinds of JWT authorization grants (RFC 7523 §3): ID-JAGs from an
enterprise identity provider and workloads' tokens. Every failure is ``invalid_grant``
(RFC 7523 §3.1); what went wrong is said in the description."""

from __future__ import annotations

from collections.abc import Sequence

from bastion.authserver.context import AuthServer
from bastion.oauth import jose
from bastion.oauth.errors import InvalidGrant
from bastion.store.replays import DatabaseReplayGuard
from bastion.tokens import secrets as opaque

ID_JAG_TYP = "oauth-id-jag+jwt"
"""The ``typ`` header of an Identity Assertion JWT Authorization Grant (RFC 8725 §3.11)."""
ALGORITHMS = jose.SUPPORTED_ALGORITHMS
"""Asymmetric signature algorithms only: never ``none`` nor HMAC (RFC 8725 §3.1)."""
LEEWAY = 60
"""Seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat``."""
MAX_LENGTH = 16 * 1024


def header(assertion: str) -> jose.JsonObject:
    """The JWS header of ``assertion``; invalid_grant when it is not a JWS."""
    if len(assertion) > MAX_LENGTH:
        raise InvalidGrant(f"the assertion is longer than {MAX_LENGTH} characters")
    try:
        return jose.read_header(assertion)
    except jose.JoseError:
        raise InvalidGrant("the assertion is not a signed JWT (RFC 7523 section 3)") from None


def unverified_claims(assertion: str) -> jose.JsonObject:
    """The claims before the signature is checked: only to pick the issuer whose keys check
    it."""
    try:
        return jose.read_claims(assertion)
    except jose.JoseError:
        raise InvalidGrant("the assertion is not a signed JWT (RFC 7523 section 3)") from None


def typ(assertion: str) -> str | None:
    """The ``typ`` header, or None (also for something that is not a JWS)."""
    try:
        found = jose.read_header(assertion).get("typ")
    except jose.JoseError:
        return None
    return found if isinstance(found, str) else None


def verify(assertion: str, keys: jose.UsableKeys, issuer: str) -> jose.JsonObject:
    """The claims once the signature verifies with ``keys`` (RFC 7523 §3 item 9) and ``iss`` is
    ``issuer`` (item 1). Raises :class:`bastion.oauth.jose.UnknownKey` for a kid ``keys``
    lacks, so the caller may fetch the keys again once."""
    try:
        claims = jose.verify(assertion, keys, ALGORITHMS).claims
    except jose.AlgorithmNotAllowed as exc:
        raise InvalidGrant(
            f"the assertion's alg {exc.alg!r} is not accepted; use one of {', '.join(ALGORITHMS)}"
        ) from None
    except jose.UnknownKey as exc:
        if exc.kid is not None:
            raise
        raise InvalidGrant(
            f"the assertion's signature does not verify with {issuer}'s keys"
        ) from None
    except jose.JoseError:
        raise InvalidGrant(
            f"the assertion's signature does not verify with {issuer}'s keys"
        ) from None
    if claims.get("iss") != issuer:
        raise InvalidGrant(f"the assertion's iss is not {issuer}")
    return claims


def names_audience(claims: jose.JsonObject, wanted: str) -> bool:
    """Whether ``aud`` (a string, or a list of them) names ``wanted``, exactly."""
    aud = claims.get("aud")
    audiences: Sequence[object] = aud if isinstance(aud, list) else [aud]
    return bool(wanted) and wanted in [a for a in audiences if isinstance(a, str)]


def check_audience(claims: jose.JsonObject, wanted: str) -> None:
    """RFC 7523 §3 item 3: the assertion names ``wanted`` as its audience."""
    if not names_audience(claims, wanted):
        raise InvalidGrant(f"the assertion's aud must be {wanted}")


def check_times(claims: jose.JsonObject, *, now: int, max_lifetime: int, require_iat: bool) -> int:
    """RFC 7523 §3 items 4 to 6: ``exp`` present and not passed, ``nbf`` passed, ``iat`` not in
    the future; and ``exp`` at most ``max_lifetime`` ahead. The ``exp`` (whole seconds)."""
    try:
        exp = jose.check_times(
            claims, now=now, leeway=LEEWAY, require_iat=require_iat, max_lifetime=max_lifetime
        )
    except jose.TimeClaimError as exc:
        if exc.problem == "too_long":
            raise InvalidGrant(
                f"the assertion lives too long: it may expire at most {max_lifetime} s from now"
            ) from None
        if exc.problem == "missing":
            raise InvalidGrant(f"the assertion has no {exc.claim} claim") from None
        if exc.problem == "expired":
            raise InvalidGrant("the assertion has expired") from None
        if exc.problem == "not_yet_valid":
            raise InvalidGrant("the assertion is not valid yet (nbf)") from None
        if exc.problem == "not_a_number":
            raise InvalidGrant(f"the assertion's {exc.claim} is not a number") from None
        raise InvalidGrant(f"the assertion's {exc.claim} is in the future") from None
    assert exp is not None  # required above
    return int(exp)


async def use_once(bastion: AuthServer, purpose: str, key: str, exp: int) -> None:
    """RFC 7523 §3 item 7: refuse an assertion seen before, in any process on this database;
    it is remembered for as long as it would be accepted."""
    guard = DatabaseReplayGuard(bastion.db, purpose)
    if not await guard.first_use(key, exp + LEEWAY, bastion.clock()):
        raise InvalidGrant("the assertion was already used; each one is good for one token")


def token_digest(assertion: str) -> str:
    """A key for an assertion without ``jti``: the token itself, hashed."""
    return "token:" + opaque.digest(assertion)


__all__ = [
    "ALGORITHMS",
    "ID_JAG_TYP",
    "LEEWAY",
    "check_audience",
    "check_times",
    "header",
    "names_audience",
    "token_digest",
    "typ",
    "unverified_claims",
    "use_once",
    "verify",
]
