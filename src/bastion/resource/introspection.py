"""Token introspection (RFC 7662): the resource server asks the authorization server about a
token, for opaque tokens or an AS whose token format the resource should not depend on."""

from __future__ import annotations

import base64
from urllib.parse import quote

import httpx

from bastion.clock import Clock, system_clock
from bastion.oauth.endpoint_url import ANY_HTTP
from bastion.oauth.errors import InvalidToken, TemporarilyUnavailable
from bastion.oauth.resource import canonical
from bastion.resource.principal import Principal
from bastion.resource.revocation import RevocationCheck
from bastion.resource.token_claims import (
    audience_matches,
    check_times,
    number,
    principal_from_claims,
    refuse_sender_constrained,
    short,
)
from bastion.resource.verifier import CachingVerifier


class IntrospectionVerifier(CachingVerifier):
    """Verify tokens by asking the authorization server (RFC 7662 §2).

    For opaque tokens, or an AS whose token format the resource should not depend on. The
    resource authenticates as a confidential client with ``client_secret_basic`` (RFC 6749
    §2.3.1). An answer is used only if ``active`` is true, ``token_type`` (if given) is a bearer
    access token, ``iss`` equals ``issuer`` (when configured), and ``aud`` contains ``audience``.

    ``aud`` is optional in RFC 7662 §2.2. Without it the resource cannot tell whether the token
    was issued for it or for another resource of the same AS (MCP: servers MUST only accept
    tokens issued for them; checklist R04), so such answers are refused unless
    ``require_audience=False`` is passed, for an AS known to bind tokens to this resource some
    other way (for example one that only ever issues tokens for it).

    Answers are cached until the token's ``exp`` or ``cache_ttl`` seconds, whichever comes first:
    a token revoked at the AS may keep working here for up to ``cache_ttl`` seconds, unless the
    verifier is given ``revocations`` (a :class:`~bastion.resource.revocation.RevocationList`
    kept current by a feed), which is checked on every request, cached or not.
    """

    def __init__(
        self,
        *,
        introspection_endpoint: str,
        client_id: str,
        client_secret: str,
        audience: str,
        issuer: str | None = None,
        require_audience: bool = True,
        http: httpx.AsyncClient | None = None,
        cache_size: int = 10_000,
        cache_ttl: int = 60,
        leeway: int = 30,
        clock: Clock = system_clock,
        revocations: RevocationCheck | None = None,
    ) -> None:
        if ANY_HTTP.problem(introspection_endpoint) is not None:
            raise ValueError(
                f"introspection_endpoint must be an absolute http(s) URL; "
                f"got {introspection_endpoint!r}"
            )
        if cache_ttl < 0 or cache_size < 0 or leeway < 0:
            raise ValueError("cache_ttl, cache_size and leeway must not be negative")
        self.introspection_endpoint = introspection_endpoint
        self.client_id = client_id
        self._client_secret = client_secret
        self.audience = canonical(audience)
        self.issuer = issuer
        self.require_audience = require_audience
        self.cache_ttl = cache_ttl
        self.leeway = leeway
        super().__init__(http=http, cache_size=cache_size, clock=clock, revocations=revocations)
        self.introspections = 0

    def __repr__(self) -> str:
        # The client secret is never shown (STYLE rule 11).
        return (
            f"IntrospectionVerifier(introspection_endpoint={self.introspection_endpoint!r}, "
            f"client_id={self.client_id!r}, client_secret='***', audience={self.audience!r})"
        )

    async def _verify_uncached(self, token: str) -> tuple[Principal, int]:
        """Introspect ``token`` (RFC 7662 §2.1): the principal, cached until its exp or for
        ``cache_ttl`` seconds, whichever comes first."""
        answer = await self._introspect(token)
        now = self.clock()
        principal = self._check(answer, now)
        until = now + self.cache_ttl
        exp = number(answer, "exp")
        if exp is not None:
            until = min(until, int(exp))
        return principal, until

    async def _introspect(self, token: str) -> dict[str, object]:
        # RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined and encoded.
        credentials = f"{quote(self.client_id, safe='')}:{quote(self._client_secret, safe='')}"
        basic = base64.b64encode(credentials.encode("utf-8")).decode("ascii")
        self.introspections += 1
        try:
            response = await self._http.post(
                self.introspection_endpoint,
                data={"token": token, "token_type_hint": "access_token"},
                headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise self._unavailable(f"request failed: {exc}") from None
        if response.status_code != 200:
            hint = " (check client_id and client_secret)" if response.status_code == 401 else ""
            raise self._unavailable(f"HTTP {response.status_code}{hint}{_error_of(response)}")
        try:
            answer = response.json()
        except ValueError:
            raise self._unavailable("the answer is not JSON") from None
        if not isinstance(answer, dict):
            raise self._unavailable("the answer is not a JSON object")
        return answer

    def _unavailable(self, why: str) -> TemporarilyUnavailable:
        return TemporarilyUnavailable(
            "the authorization server could not be asked about the token; retry later",
            detail=f"introspection at {self.introspection_endpoint}: {why}",
        )

    def _check(self, answer: dict[str, object], now: int) -> Principal:
        if answer.get("active") is not True:
            raise InvalidToken("token is not active (expired, revoked or unknown to the AS)")
        token_type = answer.get("token_type")
        # RFC 9449 §6.2: a DPoP-bound token is introspected with token_type DPoP and its cnf.
        if token_type is not None and (
            not isinstance(token_type, str)
            or token_type.lower() not in ("bearer", "access_token", "dpop")
        ):
            raise InvalidToken(f"token_type {short(token_type)} is not an access token")
        if self.issuer is not None and answer.get("iss") != self.issuer:
            raise InvalidToken(
                f"wrong issuer: expected {self.issuer!r}, got {short(answer.get('iss'))}"
            )
        if "aud" in answer:
            if not audience_matches(answer["aud"], self.audience):
                raise InvalidToken(
                    f"wrong audience: expected {self.audience!r}, got {short(answer['aud'])}"
                )
        elif self.require_audience:
            raise InvalidToken(
                "the introspection answer names no audience, so the token may be for another "
                "resource (RFC 8707)"
            )
        exp = check_times(answer, now, self.leeway, need_exp=False)
        refuse_sender_constrained(answer)
        bound = answer.get("cnf")
        if isinstance(token_type, str) and token_type.lower() == "dpop" and bound is None:
            raise InvalidToken("token_type DPoP without cnf.jkt: the binding cannot be checked")
        sub = answer.get("sub")
        client_id = answer.get("client_id")
        subject = sub if isinstance(sub, str) and sub else client_id
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("the introspection answer names neither sub nor client_id")
        expires_at = int(exp) if exp is not None else now + self.cache_ttl
        return principal_from_claims(dict(answer), subject=subject, expires_at=expires_at)


def _error_of(response: httpx.Response) -> str:
    """The AS's own RFC 6749 error and description, for the operator's log, if it sent them."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return ""
    description = body.get("error_description")
    detail = f": {description}" if isinstance(description, str) else ""
    return f" ({body['error']}{detail})"[:300]


__all__ = ["IntrospectionVerifier"]
