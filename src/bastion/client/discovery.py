"""From a 401 to a trusted authorization server: MCP "Authorization Server Discovery".

1. The ``WWW-Authenticate`` header is parsed (RFC 9110 §11.6.1, several challenges, quoted
   strings) and its Bearer challenge read (RFC 6750 §3, RFC 9728 §5.1) [C02].
2. Protected Resource Metadata (RFC 9728 §3) is fetched from the challenge's
   ``resource_metadata`` URL; without one, from the path-inserted well-known URL, then the root
   one [C01]. Its ``resource`` must be the resource it was fetched for (RFC 9728 §3.3).
3. For each authorization server it lists, by preference (RFC 9728 §7.6), its metadata is
   fetched from the URLs of MCP's order (RFC 8414 §3.1 path-inserted, OpenID Connect path-inserted,
   OpenID Connect path-appended; the two root forms for an issuer without a path) [C04]; the
   ``issuer`` must be identical to the one used to build the URL (RFC 8414 §3.3) [C05] and PKCE
   S256 must be advertised (MCP security considerations) [C10]. The first that validates wins.

Every request and verdict is recorded in a :class:`Trace` (for ``bastion doctor``), returned on
success and attached to the :class:`~bastion.client.errors.DiscoveryError` on failure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from bastion.client.errors import (
    AuthorizationServerMetadataNotFound,
    DiscoveryError,
    InsecureUrl,
    IssuerMismatch,
    MalformedMetadata,
    PkceNotSupported,
    ProtectedResourceMetadataNotFound,
    ResourceMismatch,
)
from bastion.client.models import AuthorizationServerMetadata, ProtectedResourceMetadata
from bastion.client.trace import Trace, TraceStep
from bastion.oauth.endpoint_url import EndpointUrlPolicy, HttpPolicy
from bastion.oauth.metadata import (
    INVALID_URL,
    MetadataError,
    check_url,
    required_string,
    string,
    strings,
    url_reason,
)
from bastion.oauth.protected_resource import ResourceMetadata
from bastion.oauth.resource import canonical
from bastion.oauth.server_metadata import ServerMetadata, advertises_s256
from bastion.oauth.well_known import (
    AS_METADATA,
    OPENID_CONFIGURATION,
    PROTECTED_RESOURCE,
    appended,
    inserted,
)
from bastion.oauth.www_authenticate import parse_challenges

MAX_METADATA_BYTES = 256 * 1024
PrmSource = Literal["header", "path", "root", "legacy"]


# --------------------------------------------------------------------------- WWW-Authenticate
@dataclass(frozen=True)
class BearerChallenge:
    """The Bearer challenge of a 401 or 403 (RFC 6750 §3, RFC 9728 §5.1)."""

    resource_metadata: str | None = None
    scope: tuple[str, ...] | None = None
    error: str | None = None
    error_description: str | None = None
    realm: str | None = None
    # RFC 9449 §7.1: the resource also (or only) offers the DPoP scheme, with these algs.
    dpop_algs: tuple[str, ...] | None = None


def bearer_challenge(values: Sequence[str]) -> BearerChallenge | None:
    """The Bearer challenge among ``WWW-Authenticate`` field values (the first with parameters,
    else the first), or None; without one, the DPoP challenge read the same way (RFC 9449
    §7.1: its ``resource_metadata``, ``scope`` and ``error`` mean the same).

    Several fields are combined as RFC 9110 §5.3 allows; each may hold several challenges
    (e.g. ``Basic realm="x", Bearer scope="a b"``). Scheme names are case-insensitive; empty
    parameter values count as absent. ``dpop_algs`` says whether a DPoP challenge was offered
    (its ``algs``, possibly none).
    """
    challenges = parse_challenges(", ".join(values))
    dpops = [c for c in challenges if c.scheme == "dpop"]
    dpop_algs = tuple(a for a in (dpops[0].get("algs") or "").split(" ") if a) if dpops else None
    bearers = [c for c in challenges if c.scheme == "bearer"] or dpops
    if not bearers:
        return None
    # A bare "Bearer" (or one with a token68) says less than one with parameters.
    challenge = next((c for c in bearers if c.params), bearers[0])
    scope = challenge.get("scope")
    tokens = tuple(dict.fromkeys(t for t in (scope or "").split(" ") if t))
    return BearerChallenge(
        resource_metadata=challenge.get("resource_metadata") or None,
        scope=tokens or None,
        error=challenge.get("error") or None,
        error_description=challenge.get("error_description") or None,
        realm=challenge.get("realm") or None,
        dpop_algs=dpop_algs,
    )


# ------------------------------------------------------------------------------- URL helpers
def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def server_key(url: str) -> str:
    """The canonical URL of an MCP endpoint: no query, no fragment, lowercase scheme and host,
    no default port, no trailing slash (MCP "Canonical Server URI")."""
    parts = urlsplit(url)
    return canonical(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))


def check_endpoint(
    url: str, what: str, *, allow_insecure_http: bool = False, https_only: bool = False
) -> str:
    """An endpoint must be an absolute https URL without a fragment; http only on loopback
    (OAuth 2.1 §1.5, MCP "Communication Security"), and not even there with ``https_only`` (a
    client running on a server, checklist C19). Raises :class:`InsecureUrl`."""
    http: HttpPolicy = "never" if https_only else "any" if allow_insecure_http else "loopback"
    problem = EndpointUrlPolicy(http=http).problem(url)
    if problem == "http" and https_only:
        raise InsecureUrl(
            f"{what} {url} is not https, and this client only uses https (ssrf_guard)"
        )
    if problem == "http":
        raise InsecureUrl(
            f"{what} {url} uses http on a non-loopback host; MCP requires https. If this is a "
            "test network, set allow_insecure_http"
        )
    if problem is not None:
        raise _malformed_url(what, url, url_reason(problem))
    return url


def _malformed_url(what: str, url: str, problem: str) -> InsecureUrl:
    if problem == INVALID_URL:
        return InsecureUrl(f"{what} {url!r} {problem}")
    return InsecureUrl(f"{what} {problem}; got {url!r}")


@dataclass(frozen=True)
class PrmCandidate:
    """A URL that may hold the resource's metadata, and the resource it must then describe."""

    url: str
    expected_resource: str
    source: PrmSource


def prm_candidates(server_url: str, challenge: BearerChallenge | None) -> list[PrmCandidate]:
    """Where to look for Protected Resource Metadata, in MCP's order (checklist C01).

    The challenge's ``resource_metadata`` when present (then it must describe the server URL
    itself, RFC 9728 §3.3); otherwise the well-known URL with the server's path inserted (for a
    server with a path), then the root one, each describing the URL it was built from.
    """
    key = server_key(server_url)
    if challenge is not None and challenge.resource_metadata:
        return [PrmCandidate(challenge.resource_metadata, key, "header")]
    out: list[PrmCandidate] = []
    if urlsplit(key).path not in ("", "/"):
        out.append(PrmCandidate(inserted(key, PROTECTED_RESOURCE), key, "path"))
    root = origin(key)
    out.append(PrmCandidate(inserted(root, PROTECTED_RESOURCE), root, "root"))
    return out


def as_metadata_urls(issuer: str) -> list[str]:
    """The metadata URLs of an issuer in MCP's priority order (checklist C04)."""
    if urlsplit(issuer).path.rstrip("/"):
        return [
            inserted(issuer, AS_METADATA),
            inserted(issuer, OPENID_CONFIGURATION),
            appended(issuer, OPENID_CONFIGURATION),
        ]
    return [inserted(issuer, AS_METADATA), inserted(issuer, OPENID_CONFIGURATION)]


# ------------------------------------------------------------------------------- validation
def _malformed(error: MetadataError, url: str) -> MalformedMetadata:
    """The client's words for a malformed metadata member (RFC 8414 §2, RFC 9728 §2)."""
    if error.problem == "not_a_string_list":
        return MalformedMetadata(
            f"metadata field {error.field} must be a list of strings; got {error.value!r}"
        )
    shown = f"{error.value!r} {error.reason}" if error.problem == "not_a_url" else repr(error.value)
    return MalformedMetadata(f"the metadata at {url} has an invalid {error.field}: {shown}")


def validate_prm(doc: dict[str, Any], candidate: PrmCandidate) -> ProtectedResourceMetadata:
    """Check an RFC 9728 §2 document fetched for ``candidate``; raise on any defect.

    ``resource`` must be the resource the URL was built from or, for a URL from the
    challenge, the URL the client called (RFC 9728 §3.3), compared in canonical form (MCP:
    lowercase scheme and host, no trailing slash); that is checked before any other member.
    ``authorization_servers`` must name at least one server (MCP authorization-server location).
    """
    try:
        resource = check_url("resource", required_string(doc, "resource"))
    except MetadataError as exc:
        if exc.problem == "not_a_url":
            raise ResourceMismatch(
                f"the metadata at {candidate.url} names resource {exc.value!r}, which is not an "
                "absolute http(s) URI without a fragment (RFC 8707 §2)"
            ) from None
        raise DiscoveryError(
            f"the metadata at {candidate.url} has no resource (RFC 9728 §2)"
        ) from None
    if canonical(resource) != canonical(candidate.expected_resource):
        raise ResourceMismatch(
            f"the metadata at {candidate.url} describes resource {resource!r}, not "
            f"{candidate.expected_resource!r}; RFC 9728 §3.3 forbids using it. The server's "
            "metadata is misconfigured (or not its own): its `resource` must be its own URL"
        )
    try:
        servers = strings(doc, "authorization_servers")
        if not servers:
            raise DiscoveryError(
                f"the metadata at {candidate.url} lists no authorization_servers (MCP requires one)"
            )
        parsed = ResourceMetadata.parse(doc)
    except MetadataError as exc:
        raise _malformed(exc, candidate.url) from None
    return ProtectedResourceMetadata(
        resource=resource,
        authorization_servers=servers,
        scopes_supported=parsed.scopes_supported,
        url=candidate.url,
        raw=doc,
    )


def validate_as_metadata(
    doc: dict[str, Any],
    issuer: str,
    url: str,
    *,
    require_pkce: bool = True,
    allow_insecure_http: bool = False,
    https_only: bool = False,
) -> AuthorizationServerMetadata:
    """Check an RFC 8414 §2 document fetched for ``issuer``; raise on any defect.

    ``issuer`` must be identical, by simple string comparison, to the issuer the URL was built
    from (RFC 8414 §3.3, checklist C05), checked before any other member; every member must
    have its RFC 8414 §2 form; ``code_challenge_methods_supported`` must include S256 when the
    authorization code grant is to be used (checklist C10); endpoints must be https (loopback
    http excepted).
    """
    seen = doc.get("issuer")
    if seen != issuer:
        raise IssuerMismatch(
            f"the metadata at {url} says issuer {seen!r}, not {issuer!r}; RFC 8414 §3.3 forbids "
            "using it (a mix-up or misconfiguration at the authorization server)"
        )
    # The members the client relies on first, in this order, so that a document with several
    # defects is reported by the one that matters most; then every member's form.
    try:
        token_endpoint = string(doc, "token_endpoint")
    except MetadataError:
        token_endpoint = None
    if token_endpoint is None:
        raise DiscoveryError(f"the metadata at {url} has no token_endpoint (RFC 8414 §2)")
    check_endpoint(
        token_endpoint,
        "token_endpoint",
        allow_insecure_http=allow_insecure_http,
        https_only=https_only,
    )
    try:
        for name in ("authorization_endpoint", "registration_endpoint"):
            if (value := string(doc, name)) is not None:
                check_endpoint(
                    value, name, allow_insecure_http=allow_insecure_http, https_only=https_only
                )
        methods = strings(doc, "code_challenge_methods_supported")
        if require_pkce and not advertises_s256(methods):
            shown = "absent" if methods is None else repr(list(methods))
            raise PkceNotSupported(
                f"authorization server {issuer} does not advertise PKCE with S256 "
                f"(code_challenge_methods_supported is {shown} at {url}); MCP clients must "
                "refuse to proceed. Ask its operator to enable PKCE S256 and publish it in the "
                "metadata"
            )
        parsed = ServerMetadata.parse(doc)
    except MetadataError as exc:
        raise _malformed(exc, url) from None
    return AuthorizationServerMetadata(
        issuer=issuer,
        token_endpoint=token_endpoint,
        authorization_endpoint=parsed.authorization_endpoint,
        registration_endpoint=parsed.registration_endpoint,
        scopes_supported=parsed.scopes_supported,
        code_challenge_methods_supported=parsed.code_challenge_methods_supported,
        token_endpoint_auth_methods_supported=parsed.token_endpoint_auth_methods_supported,
        grant_types_supported=parsed.grant_types_supported,
        iss_parameter_supported=parsed.authorization_response_iss_parameter_supported is True,
        client_id_metadata_document_supported=(
            parsed.client_id_metadata_document_supported is True
        ),
        url=url,
        raw=doc,
    )


def legacy_metadata(server_origin: str) -> AuthorizationServerMetadata:
    """The 2025-03-26 revision's default endpoints at the server's origin (used only with
    ``legacy_2025_03_26``): ``/authorize``, ``/token``, ``/register``; PKCE S256 assumed, as that
    revision required it of every authorization server."""
    return AuthorizationServerMetadata(
        issuer=server_origin,
        token_endpoint=f"{server_origin}/token",
        authorization_endpoint=f"{server_origin}/authorize",
        registration_endpoint=f"{server_origin}/register",
        scopes_supported=None,
        code_challenge_methods_supported=("S256",),
        token_endpoint_auth_methods_supported=None,
        grant_types_supported=None,
        iss_parameter_supported=False,
        client_id_metadata_document_supported=False,
        url=f"{server_origin} (2025-03-26 default endpoints)",
        raw={},
    )


# ------------------------------------------------------------------------------------ fetching
async def fetch_json(
    http: httpx.AsyncClient, url: str, trace: Trace, step: str
) -> dict[str, Any] | None:
    """GET ``url`` expecting a JSON object; record the outcome; None unless 200 with an object.

    Redirects are not followed (a metadata document is served at its well-known URL).
    """
    try:
        response = await http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        trace.add(step, False, f"request failed: {type(exc).__name__}: {exc}", url)
        return None
    if response.status_code != 200:
        where = response.headers.get("location")
        extra = f" to {where} (redirects are not followed)" if where else ""
        trace.add(step, False, f"HTTP {response.status_code}{extra}", url)
        return None
    if len(response.content) > MAX_METADATA_BYTES:
        trace.add(step, False, f"document larger than {MAX_METADATA_BYTES} bytes", url)
        return None
    try:
        doc = json.loads(response.content)
    except ValueError:
        trace.add(step, False, "HTTP 200 but the body is not JSON", url)
        return None
    if not isinstance(doc, dict):
        trace.add(step, False, "HTTP 200 but the JSON is not an object", url)
        return None
    return doc


PROBE_BODY = {"jsonrpc": "2.0", "id": "bastion-probe", "method": "tools/list", "params": {}}


@dataclass(frozen=True)
class Probe:
    """What an unauthenticated MCP request to the server got: status, Bearer challenge and
    every ``WWW-Authenticate`` field value as sent."""

    status: int | None
    challenge: BearerChallenge | None
    detail: str
    www_authenticate: tuple[str, ...] = ()


async def _probe(
    http: httpx.AsyncClient, method: str, url: str, trace: Trace | None, **kwargs: Any
) -> Probe:
    try:
        response = await http.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        result = Probe(None, None, f"request failed: {type(exc).__name__}: {exc}")
    else:
        values = tuple(response.headers.get_list("www-authenticate"))
        header = "; ".join(values) or "no WWW-Authenticate"
        result = Probe(
            response.status_code,
            bearer_challenge(values),
            f"HTTP {response.status_code}, {header}",
            values,
        )
    if trace is not None:
        trace.add(
            "probe", result.status == 401 and result.challenge is not None, result.detail, url
        )
    return result


async def probe(http: httpx.AsyncClient, server_url: str, trace: Trace | None = None) -> Probe:
    """POST an unauthenticated ``tools/list`` to the MCP endpoint to read its 401 challenge
    (MCP "Authorization Flow Steps": the first request gets 401 with ``WWW-Authenticate``)."""
    return await _probe(
        http,
        "POST",
        server_url,
        trace,
        json=PROBE_BODY,
        headers={"Accept": "application/json, text/event-stream"},
    )


def registry_probe_url(registry_url: str) -> str:
    """The request VS Code makes first to a registry: ``GET {url}/v0.1/servers?limit=1``."""
    return f"{server_key(registry_url)}/v0.1/servers?limit=1"


async def probe_registry(
    http: httpx.AsyncClient, registry_url: str, trace: Trace | None = None
) -> Probe:
    """GET the registry's server list without a token to read its 401 challenge (registry
    authorization: a registry that needs auth answers like an MCP server, checklist G01)."""
    url = registry_probe_url(registry_url)
    return await _probe(http, "GET", url, trace, headers={"Accept": "application/json"})


@dataclass(frozen=True)
class Discovery:
    """The outcome of discovery: the resource, its metadata, the chosen authorization server."""

    server_url: str
    resource: str
    protected_resource: ProtectedResourceMetadata | None
    authorization_server: AuthorizationServerMetadata
    challenge: BearerChallenge | None
    trace: Trace

    @property
    def issuer(self) -> str:
        """The validated issuer of the chosen authorization server."""
        return self.authorization_server.issuer


async def fetch_protected_resource(
    http: httpx.AsyncClient,
    server_url: str,
    challenge: BearerChallenge | None,
    trace: Trace,
    *,
    allow_insecure_http: bool = False,
    https_only: bool = False,
) -> ProtectedResourceMetadata | None:
    """The server's validated Protected Resource Metadata, or None when no candidate URL has
    a document. A document that is there but wrong (resource mismatch, no authorization
    servers) raises: its data must not be used (RFC 9728 §3.3)."""
    for candidate in prm_candidates(server_url, challenge):
        try:
            check_endpoint(
                candidate.url,
                "resource_metadata",
                allow_insecure_http=allow_insecure_http,
                https_only=https_only,
            )
        except InsecureUrl as exc:
            trace.add("protected-resource-metadata", False, str(exc), candidate.url)
            exc.trace = trace
            raise
        doc = await fetch_json(http, candidate.url, trace, "protected-resource-metadata")
        if doc is None:
            continue
        try:
            prm = validate_prm(doc, candidate)
        except DiscoveryError as exc:
            trace.add("protected-resource-metadata", False, str(exc), candidate.url)
            exc.trace = trace
            raise
        trace.add(
            "protected-resource-metadata",
            True,
            f"resource {prm.resource}, authorization servers {', '.join(prm.authorization_servers)}"
            + (f", scopes {' '.join(prm.scopes_supported)}" if prm.scopes_supported else ""),
            candidate.url,
        )
        return prm
    return None


async def fetch_authorization_server(
    http: httpx.AsyncClient,
    issuer: str,
    trace: Trace,
    *,
    require_pkce: bool = True,
    allow_insecure_http: bool = False,
    https_only: bool = False,
) -> AuthorizationServerMetadata:
    """The validated metadata of ``issuer``, trying MCP's URLs in order (checklist C04, C05).

    A document whose issuer differs is discarded (never used) and the next URL tried; a document
    that validates but lacks PKCE S256 raises :class:`PkceNotSupported` when ``require_pkce``.
    """
    check_endpoint(issuer, "issuer", allow_insecure_http=allow_insecure_http, https_only=https_only)
    problems: list[DiscoveryError] = []
    for url in as_metadata_urls(issuer):
        doc = await fetch_json(http, url, trace, "authorization-server-metadata")
        if doc is None:
            continue
        try:
            metadata = validate_as_metadata(
                doc,
                issuer,
                url,
                require_pkce=require_pkce,
                allow_insecure_http=allow_insecure_http,
                https_only=https_only,
            )
        except DiscoveryError as exc:
            trace.add("authorization-server-metadata", False, str(exc), url)
            problems.append(exc)
            continue
        trace.add("issuer", True, f"issuer {issuer} is identical to the metadata's", url)
        trace.add(
            "pkce",
            metadata.supports_s256,
            "S256 advertised" if metadata.supports_s256 else "S256 not advertised",
            url,
        )
        return metadata
    if problems:
        # The most telling problem: a wrong issuer or missing PKCE beats "not found".
        error = problems[0]
        error.trace = trace
        raise error
    raise AuthorizationServerMetadataNotFound(
        f"authorization server {issuer} publishes no metadata at "
        f"{', '.join(as_metadata_urls(issuer))} (RFC 8414 §3.1, OpenID Connect Discovery §4)",
        trace=trace,
    )


def order_issuers(listed: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """The resource's authorization servers, the preferred ones first in preference order
    (RFC 9728 §7.6: the choice is the client's)."""
    first = [issuer for issuer in preferred if issuer in listed]
    return first + [issuer for issuer in listed if issuer not in first]


async def discover(
    http: httpx.AsyncClient,
    server_url: str,
    *,
    challenge: BearerChallenge | None = None,
    preferred_issuers: Sequence[str] = (),
    require_pkce: bool = True,
    allow_insecure_http: bool = False,
    https_only: bool = False,
    legacy_2025_03_26: bool = False,
) -> Discovery:
    """Find and validate the resource's metadata and an authorization server for it.

    Raises a :class:`~bastion.client.errors.DiscoveryError` (with ``.trace``) when the chain
    breaks; with ``legacy_2025_03_26`` a server without resource metadata is treated the way
    the 2025-03-26 revision described (its origin is its authorization server).
    """
    trace = Trace()
    if challenge is not None:
        trace.add(
            "www-authenticate",
            True,
            "Bearer challenge"
            + (
                f", resource_metadata {challenge.resource_metadata}"
                if challenge.resource_metadata
                else ""
            )
            + (f", scope {' '.join(challenge.scope)}" if challenge.scope else "")
            + (f", error {challenge.error}" if challenge.error else "")
            + (
                f", DPoP offered (algs {' '.join(challenge.dpop_algs) or 'not listed'})"
                if challenge.dpop_algs is not None
                else ""
            ),
        )
    prm = await fetch_protected_resource(
        http,
        server_url,
        challenge,
        trace,
        allow_insecure_http=allow_insecure_http,
        https_only=https_only,
    )
    if prm is None:
        if legacy_2025_03_26:
            return await _legacy(http, server_url, challenge, trace, allow_insecure_http)
        tried = ", ".join(c.url for c in prm_candidates(server_url, challenge))
        raise ProtectedResourceMetadataNotFound(
            f"{server_url} publishes no Protected Resource Metadata (tried {tried}); MCP servers "
            "must serve it (RFC 9728) and name it in the 401's WWW-Authenticate resource_metadata",
            trace=trace,
        )
    problems: list[DiscoveryError] = []
    for issuer in order_issuers(prm.authorization_servers, preferred_issuers):
        try:
            metadata = await fetch_authorization_server(
                http,
                issuer,
                trace,
                require_pkce=require_pkce,
                allow_insecure_http=allow_insecure_http,
                https_only=https_only,
            )
        except DiscoveryError as exc:
            problems.append(exc)
            continue
        trace.add("authorization-server", True, f"using {issuer}")
        return Discovery(server_url, prm.resource, prm, metadata, challenge, trace)
    if len(problems) == 1:
        problems[0].trace = trace
        raise problems[0]
    raise AuthorizationServerMetadataNotFound(
        f"none of the authorization servers of {prm.resource} can be used: "
        + "; ".join(str(p) for p in problems),
        trace=trace,
    )


async def _legacy(
    http: httpx.AsyncClient,
    server_url: str,
    challenge: BearerChallenge | None,
    trace: Trace,
    allow_insecure_http: bool,
) -> Discovery:
    """2025-03-26: the MCP server's origin is the authorization server."""
    issuer = origin(server_key(server_url))
    trace.add("legacy-2025-03-26", True, f"no resource metadata: using {issuer} as the AS")
    url = inserted(issuer, AS_METADATA)
    doc = await fetch_json(http, url, trace, "authorization-server-metadata")
    if doc is None:
        metadata = legacy_metadata(issuer)
        trace.add("legacy-2025-03-26", True, "no AS metadata: default endpoints", issuer)
    else:
        try:
            metadata = validate_as_metadata(
                doc, issuer, url, allow_insecure_http=allow_insecure_http
            )
        except DiscoveryError as exc:
            trace.add("authorization-server-metadata", False, str(exc), url)
            exc.trace = trace
            raise
        trace.add("issuer", True, f"issuer {issuer} is identical to the metadata's", url)
    return Discovery(server_url, server_key(server_url), None, metadata, challenge, trace)


__all__ = [
    "BearerChallenge",
    "Discovery",
    "PrmCandidate",
    "Probe",
    "Trace",
    "TraceStep",
    "as_metadata_urls",
    "bearer_challenge",
    "check_endpoint",
    "discover",
    "fetch_authorization_server",
    "fetch_json",
    "fetch_protected_resource",
    "legacy_metadata",
    "order_issuers",
    "origin",
    "prm_candidates",
    "probe",
    "probe_registry",
    "registry_probe_url",
    "server_key",
    "validate_as_metadata",
    "validate_prm",
]
