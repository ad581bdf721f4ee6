"""Workload identity federation (SEP-1933, checklist X07): a workload's token from its platform
(a Kubernetes service-account token, a GitHub Actions OIDC token, a SPIFFE JWT-SVID) is both
its client authentication and its authorization grant (RFC 7523 §2.1, §3).

The ``[[workload_identities]]`` rules say which tokens are accepted and as which pre-registered
machine client: the issuer (whose keys verify the token, from ``jwks_uri`` or the issuer's
OpenID Connect discovery document), the audience, the subject (exact or a pattern) and other
claims that must be equal. The keys come through the SSRF guard, cached as HTTP says
(:class:`bastion.authserver.client_jwks.ClientJwks`); the discovery document for an hour.

Errors: a request without client credentials whose token is from no configured issuer, or
matches no rule, is ``invalid_client`` (no client could be identified); a token from a
configured issuer that does not verify (signature, audience, expiry, a token used before) is
``invalid_grant`` (RFC 7523 §3.1).
"""

from __future__ import annotations

from bastion.authserver import assertions
from bastion.authserver.context import AuthServer
from bastion.config import WorkloadIdentityRule
from bastion.logs import get_logger
from bastion.oauth import jose
from bastion.oauth.errors import InvalidClient, InvalidGrant
from bastion.store.clients import Client

log = get_logger("bastion.workload")

# Explicit types a workload's token may have (RFC 8725 §3.11): none, or a plain JWT. Anything
# else (an ID-JAG, a DPoP proof, an access token) is another kind of token, never a workload's.
PLAIN_TYPES = frozenset({"jwt", "jose", "application/jwt"})


def rules_of_issuer(bastion: AuthServer, issuer: object) -> list[WorkloadIdentityRule]:
    """The rules that trust ``issuer``."""
    return [r for r in bastion.settings.workload_identities if r.issuer == issuer]


async def verified(
    bastion: AuthServer, assertion: str, rules: list[WorkloadIdentityRule]
) -> tuple[jose.JsonObject, list[WorkloadIdentityRule]]:
    """The token's claims, verified with the keys of the issuer of ``rules`` (all of one
    issuer), and the rules whose audience, subject and claims it matches (maybe none)."""
    header = assertions.header(assertion)
    kind = header.get("typ")
    if kind is not None and (not isinstance(kind, str) or kind.lower() not in PLAIN_TYPES):
        raise InvalidGrant(f"a token of typ {kind!r} is not a workload's token")
    kid = header.get("kid")
    first = rules[0]
    assert bastion.workload_keys is not None  # made with the app when rules exist
    keys = await bastion.workload_keys.keys(first, kid if isinstance(kid, str) else None)
    try:
        claims = assertions.verify(assertion, keys, first.issuer)
    except jose.UnknownKey:
        raise InvalidGrant(
            f"the token is signed with a key {first.issuer} does not publish"
        ) from None
    for_us = [r for r in rules if assertions.names_audience(claims, r.audience or "")]
    if not for_us:
        wanted = " or ".join(sorted({r.audience or "" for r in rules}))
        raise InvalidGrant(f"the token's aud must be {wanted}")
    now = bastion.clock()
    longest = max(r.max_lifetime for r in for_us)
    exp = assertions.check_times(claims, now=now, max_lifetime=longest, require_iat=False)
    return claims, [r for r in for_us if r.matches(claims) and exp <= now + r.max_lifetime]


async def authenticate(bastion: AuthServer, assertion: str, client_id: str | None) -> Client:
    """The machine client a request without client credentials authenticates as: the client of
    the rule its workload token matches (a ``client_id`` sent must be that client)."""
    rules = rules_of_issuer(bastion, assertions.unverified_claims(assertion).get("iss"))
    if not rules:
        raise InvalidClient(
            "client authentication is required: the assertion is not from a configured "
            "workload issuer ([[workload_identities]]) and the request has no client credentials"
        )
    claims, matching = await verified(bastion, assertion, rules)
    clients = sorted({r.client for r in matching})
    if client_id is not None:
        clients = [c for c in clients if c == client_id]
    if len(clients) != 1:
        log.info(
            "workload token of %s matches %s",
            rules[0].issuer,
            "no rule" if not clients else f"rules of several clients {clients}",
            extra={"subject": claims.get("sub")},
        )
        raise InvalidClient(
            "no [[workload_identities]] rule of this issuer matches the token's subject and "
            "claims" + (f" for client {client_id}" if client_id else "")
            if not clients
            else "the token matches rules of several clients; send client_id"
        )
    return await bastion.clients.find(clients[0])


__all__ = ["PLAIN_TYPES", "authenticate", "rules_of_issuer", "verified"]
