"""``bastion doctor URL``: the MCP authorization discovery chain of a server or registry, step by
step, each step a :class:`Check` with a verdict and, when it fails, what to change.

The steps follow MCP 2026-07-28 "Authorization" as a client walks them:

1. the request without a token (MCP: ``POST tools/list``; registry: ``GET /v0.1/servers``) must
   get 401 with a ``WWW-Authenticate`` Bearer challenge naming ``resource_metadata`` and ``scope``
   (RFC 6750 §3, RFC 9728 §5.1) [C02, R02, G01];
2. Protected Resource Metadata at the challenge's URL, else the path-inserted and root well-known
   URLs; its ``resource`` is the URL it describes and it lists ``authorization_servers``
   (RFC 9728 §3.3) [C01];
3. for each authorization server: its metadata in MCP's order of URLs (RFC 8414 §3.1, OpenID
   Connect Discovery §4) [C04], the issuer identical to the listed one (RFC 8414 §3.3) [C05],
   PKCE S256 advertised [C10];
4. the registration routes open to this client: pre-registered credentials for exactly that
   issuer, a Client ID Metadata Document, Dynamic Client Registration (RFC 7591) [C06];
5. an authorization request with the RFC 8707 ``resource`` (redirects are not followed: only the
   authorization server's first answer is read) and a token request with a made-up code (or, for
   a pre-registered ``client_credentials`` client, a real token request): the token endpoint must
   answer with an OAuth error (RFC 6749 §5.2), and neither may refuse the resource with
   ``invalid_target`` [C12].

Nothing changes at the authorization server except in one case: when Dynamic Client
Registration is the only way to a client_id, a temporary client is registered for step 5 and
deleted again (RFC 7592 §2.3) when the server gives a registration access token
(``register_client=False`` skips this). The fixes name the known causes of VS Code's
"mcp oauth: disabled" and of failed sign-ins.

Steps 1 to 3 are here; 4 and 5 in :mod:`bastion.client.doctor_endpoints`; the check records in
:mod:`bastion.client.doctor_checks`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import httpx

from bastion.client.authorizer import USER_AGENT
from bastion.client.discovery import (
    BearerChallenge,
    PrmCandidate,
    Probe,
    Trace,
    as_metadata_urls,
    check_endpoint,
    fetch_json,
    order_issuers,
    prm_candidates,
    probe,
    probe_registry,
    registry_probe_url,
    validate_as_metadata,
    validate_prm,
)
from bastion.client.doctor_checks import VSCODE, Check, CheckList, Status
from bastion.client.doctor_endpoints import ClientSideChecks
from bastion.client.errors import (
    DiscoveryError,
    InsecureUrl,
    IssuerMismatch,
    MalformedMetadata,
    ResourceMismatch,
)
from bastion.client.models import AuthorizationServerMetadata
from bastion.client.scope_selection import initial_scopes
from bastion.client.settings import ClientSettings
from bastion.net.ssrf import guarded_transport

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
PKCE_FIX = (
    "Enable PKCE with S256 at the authorization server and publish "
    'code_challenge_methods_supported: ["S256"] in its metadata. MCP clients must refuse an '
    "authorization server that does not advertise it (MCP security considerations; checklist "
    f"C10): {VSCODE}."
)
UNREACHABLE_FIX = (
    "Check the issuer in the resource metadata's authorization_servers: it must be the "
    "authorization server's public URL, reachable from the client (not an internal host name, "
    f"not a port bound to localhost elsewhere); {VSCODE}."
)


# ------------------------------------------------------------------------------------ results
@dataclass
class Diagnosis:
    """The checks of one ``bastion doctor URL`` run, in the order they were made."""

    url: str
    kind: Literal["mcp", "registry"]
    checks: list[Check] = field(default_factory=list)
    resource: str | None = None

    @property
    def failed(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if c.status == "fail"]

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return not self.failed

    def counts(self) -> dict[str, int]:
        """How many checks ended in each status."""
        found = Counter(c.status for c in self.checks)
        return {status: found[status] for status in get_args(Status)}

    def to_json(self) -> dict[str, Any]:
        """The diagnosis as a JSON object (``bastion doctor URL --json``)."""
        return {
            "url": self.url,
            "kind": self.kind,
            "resource": self.resource,
            "ok": self.ok,
            "counts": self.counts(),
            "checks": [c.to_json() for c in self.checks],
        }


# ------------------------------------------------------------------------------------ helpers
@dataclass(frozen=True)
class _Fetched:
    """What a metadata URL answered: a JSON object, or why not."""

    url: str
    document: dict[str, Any] | None
    outcome: str
    reachable: bool


async def _fetch(http: httpx.AsyncClient, url: str) -> _Fetched:
    trace = Trace()
    document = await fetch_json(http, url, trace, "fetch")
    if document is not None:
        return _Fetched(url, document, "HTTP 200, a JSON document", True)
    outcome = trace.steps[-1].detail
    return _Fetched(url, None, outcome, not outcome.startswith("request failed"))


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


# ------------------------------------------------------------------------------------- doctor
class _Doctor:
    """Runs the steps, appending one :class:`Check` per verdict."""

    def __init__(
        self, http: httpx.AsyncClient, settings: ClientSettings, register_client: bool
    ) -> None:
        self.http = http
        self.settings = settings
        self.register_client = register_client
        self.checks = CheckList()
        self.add = self.checks.add

    def _endpoint(self, url: str, what: str) -> str:
        return check_endpoint(
            url,
            what,
            allow_insecure_http=self.settings.allow_insecure_http,
            https_only=self.settings.ssrf_guard,
        )

    def _refused(self, url: str, what: str, name: str, fix: str) -> bool:
        """Record a failed check when ``url`` is not one this client may use (https, loopback
        http excepted: OAuth 2.1 §1.5)."""
        try:
            self._endpoint(url, what)
        except InsecureUrl as exc:
            self.add(name, "fail", str(exc), url, fix)
            return True
        return False

    # -------------------------------------------------------------------------- the request
    async def run(self, url: str, kind: Kind) -> Diagnosis:
        fix = (
            "Give the full URL of the MCP endpoint or registry: https, or http on "
            "127.0.0.1/localhost only (allow_insecure_http for a test network)."
        )
        if self._refused(url, "the URL to diagnose", "url", fix):
            return Diagnosis(url, "registry" if kind == "registry" else "mcp", self.checks.items)
        chosen, answer = await self._probe(url, kind)
        diagnosis = Diagnosis(url, chosen, self.checks.items)
        if chosen == "mcp" and answer.status == 404 and await self._answers_like_registry(url):
            return diagnosis
        if not self._request_checks(url, chosen, answer):
            return diagnosis
        if chosen == "registry" and await self._answers_like_mcp(url, answer):
            return diagnosis
        found = await self._protected_resource(url, answer)
        if found is None:
            return diagnosis
        servers, diagnosis.resource, scopes = found
        await self._authorization_servers(servers, diagnosis.resource, scopes)
        return diagnosis

    async def _probe(self, url: str, kind: Kind) -> tuple[Literal["mcp", "registry"], Probe]:
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

    async def _answers_like_registry(self, url: str) -> bool:
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

    async def _answers_like_mcp(self, url: str, answer: Probe) -> bool:
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

    def _request_checks(self, url: str, kind: Literal["mcp", "registry"], answer: Probe) -> bool:
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
    async def _protected_resource(
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
                self._endpoint(candidate.url, "resource_metadata")
            except InsecureUrl as exc:
                misses.append((candidate, str(exc)))
                continue
            fetched = await _fetch(self.http, candidate.url)
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

    # -------------------------------------------------------------------- authorization servers
    async def _authorization_servers(
        self, servers: Sequence[str], resource: str, scopes: Sequence[str]
    ) -> None:
        spans: list[tuple[int, int]] = []
        for issuer in order_issuers(servers, self.settings.preferred_issuers):
            start = len(self.checks.items)
            await self._issuer(issuer, resource, scopes)
            spans.append((start, len(self.checks.items)))
        if len(spans) < 2 or not any(self.checks.span_ok(*span) for span in spans):
            return
        # A client moves on to the next authorization server when one fails: those faults warn.
        for start, end in spans:
            for i in range(start, end):
                check = self.checks.items[i]
                if check.status == "fail":
                    detail = f"{check.detail} (another authorization server of the resource works)"
                    self.checks.amend(i, status="warn", detail=detail)

    async def _issuer(self, issuer: str, resource: str, scopes: Sequence[str]) -> None:
        fix = "List the authorization server by its https issuer in authorization_servers."
        if self._refused(issuer, "issuer", "as-metadata", fix):
            return
        metadata = await self._as_metadata(issuer)
        if metadata is None:
            return
        if metadata.supports_s256:
            self.add("pkce", "ok", "code_challenge_methods_supported lists S256", metadata.url)
        else:
            methods = metadata.code_challenge_methods_supported
            shown = "absent" if methods is None else repr(list(methods))
            self.add(
                "pkce",
                "fail",
                f"code_challenge_methods_supported is {shown}: PKCE S256 is not advertised",
                metadata.url,
                PKCE_FIX,
            )
        await ClientSideChecks(
            self.checks,
            self.http,
            self.settings,
            metadata,
            resource,
            tuple(scopes),
            self.register_client,
        ).run()

    async def _as_metadata(self, issuer: str) -> AuthorizationServerMetadata | None:
        """Its metadata from the first URL of MCP's order that has a valid document (C04, C05);
        one check per URL tried, then the issuer check."""
        tried: list[tuple[_Fetched, DiscoveryError | None]] = []
        found: AuthorizationServerMetadata | None = None
        for url in as_metadata_urls(issuer):
            fetched = await _fetch(self.http, url)
            if fetched.document is None:
                tried.append((fetched, None))
                continue
            try:
                found = validate_as_metadata(
                    fetched.document,
                    issuer,
                    url,
                    require_pkce=False,
                    allow_insecure_http=self.settings.allow_insecure_http,
                    https_only=self.settings.ssrf_guard,
                )
            except DiscoveryError as exc:
                tried.append((fetched, exc))
                continue
            break
        for fetched, problem in tried:
            if problem is None:
                status: Status = "skip" if found else "fail"
                detail = fetched.outcome + ("; the next URL is tried" if found else "")
            else:
                status = "warn" if found else "fail"
                detail = f"{fetched.outcome}, not usable: {problem}"
            self.add("as-metadata-url", status, detail, fetched.url)
        if found is not None:
            self.add("as-metadata-url", "ok", "HTTP 200, valid metadata", found.url)
            self.add(
                "issuer",
                "ok",
                f"the metadata's issuer is {issuer!r}, identical to the listed one (RFC 8414 §3.3)",
                found.url,
            )
            return found
        self._no_metadata(issuer, tried)
        return None

    def _no_metadata(
        self, issuer: str, tried: list[tuple[_Fetched, DiscoveryError | None]]
    ) -> None:
        problems: list[tuple[_Fetched, DiscoveryError]] = [
            (f, p) for f, p in tried if p is not None
        ]
        mismatches = [(f, p) for f, p in problems if isinstance(p, IssuerMismatch)]
        if mismatches:
            fetched, problem = mismatches[0]
            seen = (fetched.document or {}).get("issuer")
            self.add(
                "issuer",
                "fail",
                str(problem),
                fetched.url,
                f"The metadata's issuer ({seen!r}) must be the very string listed in "
                f"authorization_servers ({issuer!r}): same scheme, host, port, path and trailing "
                "slash (RFC 8414 §3.3; checklist C05). Fix the issuer the authorization server "
                "publishes (behind a proxy: its public URL) or list its exact issuer in the "
                f"resource metadata: {VSCODE}.",
            )
        elif problems:
            fetched, other = problems[0]
            self.add(
                "as-metadata",
                "fail",
                str(other),
                fetched.url,
                "Publish complete RFC 8414 metadata: issuer, authorization_endpoint, "
                "token_endpoint (https), code_challenge_methods_supported.",
            )
        elif not any(f.reachable for f, _ in tried):
            self.add(
                "as-metadata",
                "fail",
                f"authorization server {issuer} is unreachable: {tried[0][0].outcome}",
                issuer,
                UNREACHABLE_FIX,
            )
        else:
            urls = as_metadata_urls(issuer)
            self.add(
                "as-metadata",
                "fail",
                f"authorization server {issuer} publishes no metadata at any URL MCP clients try",
                issuer,
                f"Publish RFC 8414 metadata at {urls[0]} or OpenID Connect discovery at "
                f"{urls[1]} (checklist C04); a resource's authorization_servers must list the "
                f"issuer, not the authorization or token endpoint: {VSCODE}.",
            )


# ------------------------------------------------------------------------------------- entry
async def diagnose(
    url: str,
    settings: ClientSettings,
    *,
    kind: Kind = "auto",
    http: httpx.AsyncClient | None = None,
    register_client: bool = True,
) -> Diagnosis:
    """Walk the authorization discovery chain of the MCP server or registry at ``url``.

    ``kind`` ``auto`` probes as an MCP server first and as a registry when the URL answers like
    one (or challenges with the registry realm). ``http`` defaults to a client of this module's
    own (no redirects followed; with ``settings.ssrf_guard``, public addresses only). Never
    raises for what the server does wrong: every problem is a failed :class:`Check`.
    """
    if http is not None:
        return await _Doctor(http, settings, register_client).run(url, kind)
    transport = (
        guarded_transport(allow_private=False, timeout=settings.http_timeout)
        if settings.ssrf_guard
        else None
    )
    async with httpx.AsyncClient(
        timeout=settings.http_timeout,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
        transport=transport,
    ) as own:
        return await _Doctor(own, settings, register_client).run(url, kind)


__all__ = ["Check", "Diagnosis", "Kind", "Status", "diagnose"]
