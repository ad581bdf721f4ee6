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

import asyncio
import time

import httpx

from bastion import safe_json
from bastion.authserver import assertions
from bastion.authserver.client_jwks import MAX_BYTES, ClientJwks
from bastion.authserver.context import AuthServer
from bastion.clock import Clock
from bastion.config import WorkloadIdentityRule
from bastion.logs import get_logger
from bastion.net.ssrf import BlockedAddressError, guarded_transport
from bastion.oauth import jose
from bastion.oauth.client_metadata import jwks_uri_problem
from bastion.oauth.errors import InvalidClient, InvalidGrant, OAuthError
from bastion.store.clients import Client

log = get_logger("bastion.workload")

DISCOVERY_TTL = 3600.0
# Explicit types a workload's token may have (RFC 8725 §3.11): none, or a plain JWT. Anything
# else (an ID-JAG, a DPoP proof, an access token) is another kind of token, never a workload's.
PLAIN_TYPES = frozenset({"jwt", "jose", "application/jwt"})


class WorkloadKeys:
    """The signing keys of the configured workload issuers; made once per app."""

    def __init__(self, rules: list[WorkloadIdentityRule], *, clock: Clock) -> None:
        self._jwks = {
            rule.name: ClientJwks(
                allow_private=rule.allow_private_addresses, timeout=rule.timeout, clock=clock
            )
            for rule in rules
        }
        self._http = {
            rule.name: httpx.AsyncClient(
                transport=guarded_transport(
                    allow_private=rule.allow_private_addresses, timeout=rule.timeout
                ),
                timeout=rule.timeout,
                follow_redirects=False,
                headers={"Accept": "application/json", "User-Agent": "mcp-bastion"},
            )
            for rule in rules
            if rule.jwks_uri is None
        }
        self._discovered: dict[str, tuple[str, float]] = {}
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        for jwks in self._jwks.values():
            await jwks.aclose()
        for http in self._http.values():
            await http.aclose()

    async def keys(self, rule: WorkloadIdentityRule, kid: str | None) -> jose.UsableKeys:
        """The issuer's keys (fetched again when ``kid`` is new); invalid_grant when they
        cannot be had, the cause in the log."""
        uri = rule.jwks_uri or await self._jwks_uri(rule)
        try:
            return await self._jwks[rule.name].keys(uri, kid=kid)
        except InvalidClient as exc:
            log.warning("workload_identities[%s]: keys at %s: %s", rule.name, uri, exc.detail)
            raise InvalidGrant(
                f"the signing keys of {rule.issuer} could not be fetched", detail=exc.detail
            ) from None

    async def _jwks_uri(self, rule: WorkloadIdentityRule) -> str:
        found = self._discovered.get(rule.issuer)
        if found is not None and time.monotonic() - found[1] < DISCOVERY_TTL:
            return found[0]
        async with self._lock:
            uri = await self._discover(rule)
            self._discovered[rule.issuer] = (uri, time.monotonic())
            return uri

    async def _discover(self, rule: WorkloadIdentityRule) -> str:
        """``jwks_uri`` from the issuer's discovery document (OpenID Connect Discovery 1.0 §4),
        whose ``issuer`` must be the configured one (§4.3)."""
        url = rule.issuer.rstrip("/") + "/.well-known/openid-configuration"
        problem = "its discovery document could not be read"
        try:
            async with self._http[rule.name].stream("GET", url) as response:
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise ValueError(f"more than {MAX_BYTES} bytes")
            if response.status_code != 200:
                raise ValueError(f"answered HTTP {response.status_code}")
            doc = safe_json.loads(bytes(body))
            if not isinstance(doc, dict) or doc.get("issuer") != rule.issuer:
                problem = "its discovery document names another issuer"
                raise ValueError(f"issuer {doc.get('issuer') if isinstance(doc, dict) else doc!r}")
            uri = doc.get("jwks_uri")
            if not isinstance(uri, str) or jwks_uri_problem(uri):
                problem = "its discovery document has no usable jwks_uri"
                raise ValueError(f"jwks_uri {uri!r}")
        except (httpx.HTTPError, BlockedAddressError, ValueError) as exc:
            log.warning("workload_identities[%s]: %s: %s: %s", rule.name, url, problem, exc)
            raise InvalidGrant(f"{rule.issuer}: {problem}", detail=f"{url}: {exc}") from None
        return uri


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
    audiences = {r.audience for r in rules}
    for audience in sorted(a for a in audiences if a):
        try:
            assertions.check_audience(claims, audience)
            break
        except InvalidGrant:
            continue
    else:
        raise InvalidGrant(
            f"the token's aud must be {' or '.join(sorted(a for a in audiences if a))}"
        )
    lifetime = max(r.max_lifetime for r in rules)
    assertions.check_times(claims, now=bastion.clock(), max_lifetime=lifetime, require_iat=False)
    matching = [
        r
        for r in rules
        if r.matches(claims)
        and r.audience is not None
        and _has_audience(claims, r.audience)
        and _within(claims, r.max_lifetime, bastion.clock())
    ]
    return claims, matching


def _has_audience(claims: jose.JsonObject, audience: str) -> bool:
    try:
        assertions.check_audience(claims, audience)
    except OAuthError:
        return False
    return True


def _within(claims: jose.JsonObject, max_lifetime: int, now: int) -> bool:
    exp = claims.get("exp")
    return isinstance(exp, int | float) and exp <= now + max_lifetime


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


__all__ = ["PLAIN_TYPES", "WorkloadKeys", "authenticate", "rules_of_issuer", "verified"]
