"""The signing keys of the ``[[workload_identities]]`` issuers: from ``jwks_uri``, or from the
``jwks_uri`` of the issuer's OpenID Connect discovery document (cached for an hour, its
``issuer`` checked, OpenID Connect Discovery 1.0 §4.3); fetched through the SSRF guard unless the
rule has ``allow_private_addresses``, and cached as HTTP says
(:class:`bastion.authserver.client_jwks.ClientJwks`, which also fetches again for a new kid)."""

from __future__ import annotations

import asyncio
import time

import httpx

from bastion import safe_json
from bastion.authserver.client_jwks import MAX_BYTES, ClientJwks
from bastion.clock import Clock
from bastion.config import WorkloadIdentityRule
from bastion.logs import get_logger
from bastion.net.ssrf import BlockedAddressError, guarded_transport
from bastion.oauth import jose
from bastion.oauth.client_metadata import jwks_uri_problem
from bastion.oauth.errors import InvalidClient, InvalidGrant

log = get_logger("bastion.workload")

DISCOVERY_TTL = 3600.0


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


__all__ = ["DISCOVERY_TTL", "WorkloadKeys"]
