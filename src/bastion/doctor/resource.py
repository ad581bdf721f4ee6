"""Steps 1 and 2 of ``bastion doctor URL``: the request without a token and its
``WWW-Authenticate`` Bearer challenge (RFC 6750 §3, RFC 9728 §5.1) [C02, R02, G01], then the
Protected Resource Metadata at the challenge's URL or the well-known ones (RFC 9728 §3.3) [C01].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from bastion.client.discovery import (
    BearerChallenge,
    PrmCandidate,
    Probe,
    prm_candidates,
    probe,
    probe_registry,
    registry_probe_url,
    validate_prm,
)
from bastion.client.errors import DiscoveryError, InsecureUrl, MalformedMetadata, ResourceMismatch
from bastion.client.scope_selection import initial_scopes
from bastion.doctor.checks import VSCODE
from bastion.doctor.step import Step

Kind = Literal["auto", "mcp", "registry"]

# Realms registries use: the registry project's implementations (and bastion now) say
# mcp-registry; bastion said "MCP Registry" before.
REGISTRY_REALMS = ("mcp-registry", "MCP Registry")

NO_CHALLENGE_FIX = (
    "Answer every request without a token with 401 and `WWW-Authenticate: Bearer "
    'resource_metadata="<metadata URL>", scope="<scopes>"` (RFC 9110 §11.6.1 requires the header '
    "on a 401; RFC 6750 §3, RFC 9728 §5.1). Without it clients do not recognise an OAuth "
    f"challenge: {VSCODE}. A proxy or load balancer in front of the server may be dropping it."
)


def _strings(document: dict[str, Any], name: str) -> tuple[str, ...]:
    """A list-of-strings field read leniently (for diagnosing a document that failed checks)."""
    value = document.get(name)
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str) and v)


def _names_registry(challenge: BearerChallenge) -> bool:
    """Whether a challenge says "registry": its realm, or a scope of the registry
    authorization document (``mcp-registry:read`` and the like)."""
    prefix = REGISTRY_REALMS[0] + ":"
    return challenge.realm in REGISTRY_REALMS or any(
        s.startswith(prefix) for s in challenge.scope or ()
    )


class ResourceSteps(Step):
    """The request, its challenge and the resource's metadata."""

    async def probe(self, url: str, kind: Kind) -> tuple[Literal["mcp", "registry"], Probe]:
        """MCP first; with ``auto`` the registry request too, when the MCP one got no Bearer
        challenge or one with the registry realm (G01)."""
        if kind == "registry":
            return "registry", await probe_registry(self.http, url)
        answer = await probe(self.http, url)
        if kind == "mcp" or answer.status is None:
            return "mcp", answer
        challenge = answer.challenge
        realm = challenge.realm if challenge is not None else None
        if answer.status == 401 and challenge is not None and realm not in REGISTRY_REALMS:
            return "mcp", answer
        registry = await probe_registry(self.http, url)
        if registry.status == 200 or (registry.status == 401 and registry.challenge is not None):
            return "registry", registry
        return "mcp", answer

    async def answers_like_registry(self, url: str) -> bool:
        """Whether a URL diagnosed as an MCP endpoint, where ``tools/list`` found nothing, is a
        registry's base URL instead (recorded as a failed check)."""
        registry = await probe_registry(self.http, url)
        registry_like = registry.status == 200 or (
            registry.status == 401
            and registry.challenge is not None
            and _names_registry(registry.challenge)
        )
        if not registry_like:
            return False
        self.add(
            "request",
            "fail",
            "POST tools/list without a token answered HTTP 404: this is no MCP endpoint, but a "
            f"registry's base URL (GET /v0.1/servers answered HTTP {registry.status})",
            url,
            f"Diagnose it as a registry: bastion doctor --registry {url}. An MCP server's URL is "
            "its streamable HTTP endpoint (often ending in /mcp).",
        )
        return True

    async def answers_like_mcp(self, url: str, answer: Probe) -> bool:
        """Whether a URL diagnosed as a registry is an MCP endpoint instead (recorded as a
        failed check): its challenge names neither a registry realm nor a registry scope, and an
        MCP ``tools/list`` to the URL itself gets a Bearer challenge too. An MCP server's
        authorization answers every path below its endpoint, ``/v0.1/servers`` included, so
        without this every later step would pass for the wrong kind of server."""
        challenge = answer.challenge
        if challenge is None or _names_registry(challenge):
            return False
        mcp = await probe(self.http, url)
        if mcp.status != 401 or mcp.challenge is None or _names_registry(mcp.challenge):
            return False
        scopes = " ".join(mcp.challenge.scope or ()) or "none"
        self.add(
            "registry",
            "fail",
            "this URL answers like an MCP endpoint, not a registry: POST tools/list gets HTTP "
            f"401 with a Bearer challenge (scope {scopes}), and no challenge names the realm "
            f"{REGISTRY_REALMS[0]} or an {REGISTRY_REALMS[0]}: scope. Nothing more to check",
            url,
            f"Diagnose it as an MCP server: bastion doctor {url} (without --registry). A "
            "registry's URL is its base, below which /v0.1/servers lives (bastion's is "
            "<issuer>/registry).",
        )
        return True

    def request_checks(self, url: str, kind: Literal["mcp", "registry"], answer: Probe) -> bool:
        """The unauthenticated request and its challenge; False when nothing more can be
        diagnosed."""
        target, what = (
            (registry_probe_url(url), "GET /v0.1/servers?limit=1")
            if kind == "registry"
            else (url, "POST tools/list")
        )
        status = answer.status
        if status is None:
            self.add(
                "request",
                "fail",
                f"{what} without a token: {answer.detail}",
                target,
                "Check the URL, and that the server runs and is reachable from this machine "
                "(DNS, firewall, proxy, TLS certificate).",
            )
            return False
        if 200 <= status < 300:
            self.add(
                "request",
                "warn",
                f"{what} without a token answered HTTP {status}: no authorization is required, "
                "so clients never start OAuth. Nothing more to check",
                target,
                "If it should be protected, answer requests without a token with 401 and a "
                "WWW-Authenticate Bearer challenge (RFC 6750 §3, RFC 9728 §5.1).",
            )
            return False
        if status == 404:
            self.add(
                "request",
                "fail",
                f"{what} without a token answered HTTP 404: nothing is served at this URL",
                target,
                "Give the full URL of the MCP endpoint (streamable HTTP, often ending in /mcp) "
                "or, for a registry, its base URL (below which /v0.1/servers lives).",
            )
            return False
        if status == 401:
            self.add("request", "ok", f"{what} without a token: HTTP 401", target)
        else:
            self.add(
                "request",
                "fail",
                f"{what} without a token answered HTTP {status}, not 401",
                target,
                "A request without a token must get 401 with a WWW-Authenticate Bearer "
                "challenge; clients start authorization only on a 401 (RFC 6750 §3.1, MCP "
                '"Authorization Flow Steps"). A 403 often comes from an Origin check, a firewall '
                f"or a proxy in front of the server, a 5xx from the server itself: {VSCODE}.",
            )
        self._challenge_check(target, answer)
        return True

    def _challenge_check(self, target: str, answer: Probe) -> None:
        values = answer.www_authenticate
        if not values:
            if answer.status == 401:
                self.add(
                    "www-authenticate",
                    "fail",
                    "the 401 has no WWW-Authenticate header",
                    target,
                    NO_CHALLENGE_FIX,
                )
            else:
                self.add("www-authenticate", "skip", "no WWW-Authenticate header", target)
            return
        shown = " | ".join(values)
        challenge = answer.challenge
        if challenge is None:
            self.add(
                "www-authenticate",
                "fail",
                f"no Bearer challenge in {shown}",
                target,
                'Challenge with the Bearer scheme: WWW-Authenticate: Bearer resource_metadata="…", '
                f'scope="…" (RFC 6750 §3, RFC 9728 §5.1): {VSCODE}.',
            )
            return
        parsed = (
            f"resource_metadata {challenge.resource_metadata or '(none)'}, scope "
            + (
                " ".join(challenge.scope)
                if challenge.scope
                else "(none: clients fall back to the metadata's scopes_supported)"
            )
            + (f", realm {challenge.realm}" if challenge.realm else "")
            + (f", error {challenge.error}" if challenge.error else "")
        )
        if challenge.resource_metadata:
            self.add("www-authenticate", "ok", f"{shown}; parsed: {parsed}", target)
        else:
            self.add(
                "www-authenticate",
                "warn",
                f"{shown}; parsed: {parsed}; clients must guess the metadata's well-known URL",
                target,
                'Add resource_metadata="<URL of the Protected Resource Metadata>" to the Bearer '
                "challenge (RFC 9728 §5.1, checklist R02).",
            )

    # --------------------------------------------------------------- protected resource metadata
    async def protected_resource(
        self, url: str, answer: Probe
    ) -> tuple[tuple[str, ...], str, tuple[str, ...]] | None:
        """The resource's authorization servers, its resource identifier and the scopes a
        client would ask for; None when no metadata document is found."""
        candidates = prm_candidates(url, answer.challenge)
        if candidates[0].source == "header":
            # Clients use the header's URL only; the well-known ones say where the document is.
            candidates += [c for c in prm_candidates(url, None) if c.url != candidates[0].url]
        misses: list[tuple[PrmCandidate, str]] = []
        for candidate in candidates:
            try:
                self.endpoint(candidate.url, "resource_metadata")
            except InsecureUrl as exc:
                misses.append((candidate, str(exc)))
                continue
            fetched = await self.fetch(candidate.url)
            if fetched.document is None:
                misses.append((candidate, fetched.outcome))
                continue
            self._prm_misses(misses, candidate)
            self.add("prm-url", "ok", f"{candidate.source} URL: {fetched.outcome}", candidate.url)
            challenged = answer.challenge.scope if answer.challenge else None
            return self._prm_document(fetched.document, candidate, challenged)
        self._prm_misses(misses, None)
        first = prm_candidates(url, None)[0]
        self.add(
            "prm",
            "fail",
            "no Protected Resource Metadata at any URL a client tries",
            None,
            "Serve RFC 9728 metadata, e.g. "
            f'{{"resource": "{first.expected_resource}", "authorization_servers": '
            f'["<issuer>"], "scopes_supported": [...]}} at {first.url}, and name that URL in the '
            "401's WWW-Authenticate resource_metadata. MCP clients find the authorization server "
            f"only through it (checklist C01): {VSCODE}.",
        )
        return None

    def _prm_misses(
        self, misses: list[tuple[PrmCandidate, str]], found: PrmCandidate | None
    ) -> None:
        for candidate, outcome in misses:
            detail = f"{candidate.source} URL: {outcome}"
            if found is None:
                self.add("prm-url", "fail", detail, candidate.url)
            elif candidate.source == "header":
                self.add(
                    "prm-url",
                    "fail",
                    f"{detail}; the document is at {found.url}",
                    candidate.url,
                    "Point the challenge's resource_metadata at "
                    f"{found.url}: clients fetch the metadata only from there when it is given "
                    "(RFC 9728 §5.1).",
                )
            else:
                self.add("prm-url", "skip", f"{detail}; the next URL is tried", candidate.url)

    def _prm_document(
        self,
        document: dict[str, Any],
        candidate: PrmCandidate,
        challenged: Sequence[str] | None,
    ) -> tuple[tuple[str, ...], str, tuple[str, ...]] | None:
        resource = candidate.expected_resource
        servers = _strings(document, "authorization_servers")
        try:
            prm = validate_prm(document, candidate)
        except ResourceMismatch as exc:
            self.add(
                "prm-resource",
                "fail",
                str(exc),
                candidate.url,
                f'Set "resource" in this document to {resource!r}, the URL clients call (RFC 9728 '
                "§3.3: clients must not use metadata for another resource). Behind a proxy, "
                "build it from the public URL, not the internal one.",
            )
        except DiscoveryError as exc:
            if servers:
                fix = (
                    "Send every member in its RFC 9728 §2 form: arrays of strings as JSON "
                    "arrays of strings, URLs as absolute URLs without a fragment."
                    if isinstance(exc, MalformedMetadata)
                    else f'Add "resource": {resource!r} to the document (RFC 9728 §2).'
                )
                self.add("prm-resource", "fail", str(exc), candidate.url, fix)
            else:
                self.add(
                    "authorization-servers",
                    "fail",
                    str(exc),
                    candidate.url,
                    'List the authorization server\'s issuer in "authorization_servers" '
                    f"(RFC 9728 §2; MCP requires at least one): {VSCODE}.",
                )
                return None
        else:
            resource = prm.resource
            self.add(
                "prm-resource",
                "ok",
                f"resource {prm.resource} is the URL the metadata describes (RFC 9728 §3.3)",
                candidate.url,
            )
        preferred = [i for i in self.settings.preferred_issuers if i in servers]
        self.add(
            "authorization-servers",
            "ok",
            ", ".join(servers) + (f" (preferred: {', '.join(preferred)})" if preferred else ""),
            candidate.url,
        )
        scopes = initial_scopes(challenged, _strings(document, "scopes_supported") or None)
        return servers, resource, scopes


__all__ = ["NO_CHALLENGE_FIX", "REGISTRY_REALMS", "Kind", "ResourceSteps"]
