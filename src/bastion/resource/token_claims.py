"""The claim checks both token verifiers share: times (RFC 7519 §4.1.4-§4.1.6), audience (RFC
8707, checklist R04), scopes (RFC 9068 §2.2.3, RFC 7662 §2.2), sender-constrained tokens, and
the :class:`~bastion.resource.principal.Principal` built from the claims."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from bastion.oauth import jose
from bastion.oauth.errors import InvalidToken
from bastion.oauth.resource import canonical
from bastion.resource.principal import Principal


def short(value: object, limit: int = 120) -> str:
    """``repr(value)``, cut to ``limit`` characters for error descriptions."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _refused(exc: jose.TimeClaimError) -> InvalidToken:
    """The resource's words for a time claim refused by :func:`bastion.oauth.jose.check_times`."""
    if exc.problem == "not_a_number":
        return InvalidToken(
            f"claim {exc.claim} is not a NumericDate (RFC 7519 section 2); got {short(exc.value)}"
        )
    if exc.problem == "missing" and exc.claim == "exp":
        return InvalidToken("token has no exp claim (RFC 9068 section 2.2)")
    return InvalidToken(str(exc))


def number(claims: Mapping[str, object], name: str) -> float | None:
    """The NumericDate claim ``name`` (RFC 7519 §2), or None when absent."""
    try:
        return jose.numeric_date(claims, name)
    except jose.TimeClaimError as exc:
        raise _refused(exc) from None


def check_times(
    claims: Mapping[str, object], now: int, leeway: int, *, need_exp: bool
) -> float | None:
    """Check exp, nbf and iat (RFC 7519 §4.1.4-§4.1.6) with ``leeway`` seconds of clock skew;
    return exp."""
    try:
        return jose.check_times(claims, now=now, leeway=leeway, require_exp=need_exp)
    except jose.TimeClaimError as exc:
        raise _refused(exc) from None


def audience_matches(aud: object, expected: str) -> bool:
    """Whether ``aud`` (a string or an array) holds ``expected``, compared in canonical form."""
    values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
    if values is None:
        return False
    for value in values:
        if not isinstance(value, str):
            continue
        try:
            if canonical(value) == expected:
                return True
        except ValueError:
            continue
    return False


def scopes_of(claims: Mapping[str, object]) -> frozenset[str]:
    """``scope`` (RFC 9068 §2.2.3, RFC 7662 §2.2: space-separated) or ``scp`` (a list, or a
    space-separated string as Entra ID issues it)."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(s for s in scope.split(" ") if s)
    if isinstance(scope, list) and all(isinstance(s, str) for s in scope):
        return frozenset(s for s in scope if s)
    scp = claims.get("scp")
    if isinstance(scp, str):
        return frozenset(s for s in scp.split(" ") if s)
    if isinstance(scp, list) and all(isinstance(s, str) for s in scp):
        return frozenset(s for s in scp if s)
    return frozenset()


def refuse_sender_constrained(claims: Mapping[str, object]) -> None:
    """Refuse a token bound to a key in a way this resource cannot check (a ``cnf`` that is not
    exactly a DPoP ``jkt``). A DPoP-bound token (``cnf.jkt``, RFC 9449 §6) passes: its
    :attr:`~bastion.resource.principal.Principal.jkt` is set, and whoever accepts the principal
    must check the proof of possession (the resource-server middleware does, RFC 9449 §7)."""
    # RFC 8705 §3 (cnf x5t#S256) and other confirmation methods need a proof this resource
    # cannot check; accepting such a token as a bearer token would undo the binding.
    cnf = claims.get("cnf")
    if cnf is None:
        return
    if isinstance(cnf, Mapping) and set(cnf) == {"jkt"}:
        jkt = cnf["jkt"]
        if isinstance(jkt, str) and jkt:
            return
    methods = ", ".join(sorted(str(k) for k in cnf)) if isinstance(cnf, Mapping) else short(cnf)
    raise InvalidToken(
        f"token is sender-constrained with a cnf this resource cannot check ({methods}); only "
        "DPoP-bound tokens (cnf.jkt, RFC 9449) or bearer tokens are accepted"
    )


def principal_from_claims(claims: jose.JsonObject, *, subject: str, expires_at: int) -> Principal:
    """The principal a verified token speaks for (claims kept read-only)."""
    client_id = claims.get("client_id", claims.get("azp"))
    jti = claims.get("jti")
    return Principal(
        subject=subject,
        client_id=client_id if isinstance(client_id, str) else None,
        scopes=scopes_of(claims),
        claims=MappingProxyType(claims),
        token_id=jti if isinstance(jti, str) else None,
        expires_at=expires_at,
    )


__all__ = [
    "audience_matches",
    "check_times",
    "number",
    "principal_from_claims",
    "refuse_sender_constrained",
    "scopes_of",
    "short",
]
