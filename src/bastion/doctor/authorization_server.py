"""Step 3 of ``bastion doctor URL``, for each authorization server a resource lists: its
metadata in MCP's order of URLs (RFC 8414 §3.1, OpenID Connect Discovery §4) [C04], the issuer
identical to the listed one (RFC 8414 §3.3) [C05] and PKCE S256 advertised [C10]; then the
client-side checks of :mod:`bastion.doctor.endpoints`.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from bastion.client.discovery import as_metadata_urls, order_issuers, validate_as_metadata
from bastion.client.errors import DiscoveryError, IssuerMismatch
from bastion.client.models import AuthorizationServerMetadata
from bastion.client.settings import ClientSettings
from bastion.doctor.checks import VSCODE, CheckList, Status
from bastion.doctor.endpoints import ClientSideChecks
from bastion.doctor.step import Fetched, Step

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


class AuthorizationServerSteps(Step):
    """The authorization servers of one resource, in the order a client tries them."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: ClientSettings,
        checks: CheckList,
        register_client: bool,
    ) -> None:
        super().__init__(http, settings, checks)
        self.register_client = register_client

    async def run(self, servers: Sequence[str], resource: str, scopes: Sequence[str]) -> None:
        """Check each of ``servers`` for ``resource``; when one works, the faults of the others
        are warnings, as a client moves on to the next."""
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
        if self.refused(issuer, "issuer", "as-metadata", fix):
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
        tried: list[tuple[Fetched, DiscoveryError | None]] = []
        found: AuthorizationServerMetadata | None = None
        for url in as_metadata_urls(issuer):
            fetched = await self.fetch(url)
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

    def _no_metadata(self, issuer: str, tried: list[tuple[Fetched, DiscoveryError | None]]) -> None:
        problems: list[tuple[Fetched, DiscoveryError]] = [(f, p) for f, p in tried if p is not None]
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


__all__ = ["PKCE_FIX", "UNREACHABLE_FIX", "AuthorizationServerSteps"]
