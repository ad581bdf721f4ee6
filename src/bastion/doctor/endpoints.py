"""``bastion doctor URL``, the client side of one authorization server: the registration
routes open to this client (checklist C06), an authorization request and a token request with
the RFC 8707 ``resource`` (C12), and the token endpoint's reachability.

- Registration: pre-registered credentials for exactly this issuer (C03, C09), a Client ID
  Metadata Document (``client_id_metadata_document_supported`` and ``client_metadata_url``),
  Dynamic Client Registration (RFC 7591). When DCR is the only route a temporary client is
  registered, used for the requests below and deleted again (RFC 7592 §2.3) if the server gave a
  registration access token.
- The authorization request (OAuth 2.1 §4.1.1, PKCE S256, ``resource``, the scopes a client would
  ask for) is sent without following redirects: a redirect back with ``error=invalid_target``
  means the resource was refused; a log-in page means the request was accepted.
- The token endpoint gets a made-up code (it must answer an OAuth error, RFC 6749 §5.2) or, for a
  pre-registered ``client_credentials`` client, a real token request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, urlsplit

import httpx

from bastion.client.errors import PkceNotSupported, TokenEndpointError
from bastion.client.flow import build_authorization_request, token_request
from bastion.client.models import AuthorizationServerMetadata, RegisteredClient
from bastion.client.registration import (
    SECRET_METHODS,
    from_pre_registered,
    no_route,
    registration_request,
)
from bastion.client.scope_selection import scope_parameter
from bastion.client.settings import AuthMethod, ClientSettings
from bastion.doctor.checks import VSCODE, CheckList, Status
from bastion.oauth import pkce

Evidence = Literal["accepted", "refused"]
MADE_UP_CODE = "bastion-doctor-made-up-code"
PROBE_CLIENT_ID = "bastion-doctor"
ROUTES = {
    "pre-registered": "pre-registration",
    "cimd": "a Client ID Metadata Document",
    "dcr": "Dynamic Client Registration",
    "legacy": "the 2025-03-26 defaults",
}


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _same_endpoint(url: str, redirect_uri: str) -> bool:
    """Whether ``url`` goes to the redirect URI (loopback ports may differ, RFC 8252 §7.3)."""
    a, b = urlsplit(url), urlsplit(redirect_uri)
    return (a.scheme, a.hostname, a.path) == (b.scheme, b.hostname, b.path)


@dataclass
class _Temporary:
    """A client registered for the diagnosis only, and how to delete it (RFC 7592)."""

    client: RegisteredClient
    client_uri: str | None
    access_token: str | None = field(repr=False)


@dataclass
class ClientSideChecks:
    """Registration routes, the authorization request, the token endpoint and the resource
    parameter, for one authorization server whose metadata validated; :meth:`run` records them
    in ``checks``."""

    checks: CheckList
    http: httpx.AsyncClient
    settings: ClientSettings
    metadata: AuthorizationServerMetadata
    resource: str
    scopes: tuple[str, ...]
    register_client: bool = True
    evidence: list[tuple[Evidence, str]] = field(default_factory=list)

    @property
    def redirect_uri(self) -> str:
        """The pre-registered client's redirect URI, else the loopback one (any port)."""
        pre = self.settings.pre_registered_for(self.metadata.issuer)
        if pre is not None and pre.redirect_uri:
            return pre.redirect_uri
        return f"http://{self.settings.redirect_host}{self.settings.redirect_path}"

    async def run(self) -> None:
        """Record every check of this authorization server."""
        client, temporary, dcr_check = await self._registration()
        await self._authorization_request(client)
        await self._token_endpoint(client)
        self._resource_verdict(client)
        if temporary is not None and dcr_check is not None:
            outcome = await self._delete(temporary)
            detail = self.checks.items[dcr_check].detail
            self.checks.amend(dcr_check, detail=f"{detail}; {outcome}")

    # ---------------------------------------------------------------------------- registration
    async def _registration(self) -> tuple[RegisteredClient | None, _Temporary | None, int | None]:
        """One check per route (C06), then the verdict; the client_id the next steps use."""
        add, metadata, issuer = self.checks.add, self.metadata, self.metadata.issuer
        pre = self.settings.pre_registered_for(issuer)
        client: RegisteredClient | None = None
        if pre is not None:
            client = from_pre_registered(pre, metadata)
            add(
                "registration-pre-registered",
                "ok",
                f"client_id {pre.client_id} ({pre.grant_type}) is configured for this issuer",
                issuer,
            )
        else:
            others = [c.issuer for c in self.settings.pre_registered]
            add(
                "registration-pre-registered",
                "skip",
                "no pre-registered client for this issuer in the client settings"
                + (f" (only for {', '.join(others)}; never used with another)" if others else ""),
                issuer,
            )
        cimd_url = self.settings.client_metadata_url
        if metadata.client_id_metadata_document_supported and cimd_url:
            add("registration-cimd", "ok", f"supported; the client_id is {cimd_url}", metadata.url)
            client = client or RegisteredClient(issuer=issuer, client_id=cimd_url, source="cimd")
        elif metadata.client_id_metadata_document_supported:
            add(
                "registration-cimd",
                "skip",
                "supported (client_id_metadata_document_supported), but no client_metadata_url "
                "is configured",
                metadata.url,
            )
        else:
            add(
                "registration-cimd",
                "skip",
                "not supported (no client_id_metadata_document_supported in the metadata)",
                metadata.url,
            )
        temporary, dcr_check = None, None
        endpoint = metadata.registration_endpoint
        if endpoint is None:
            add(
                "registration-dcr", "skip", "no registration_endpoint in the metadata", metadata.url
            )
        elif client is None and self.register_client:
            temporary, dcr_check = await self._register(endpoint)
            client = temporary.client if temporary else None
        else:
            add("registration-dcr", "ok", "registration_endpoint is advertised", endpoint)
        self._registration_verdict(client, endpoint)
        return client, temporary, dcr_check

    def _registration_verdict(self, client: RegisteredClient | None, endpoint: str | None) -> None:
        add, metadata = self.checks.add, self.metadata
        if client is not None:
            add(
                "registration",
                "ok",
                f"client_id {client.client_id} from {ROUTES[client.source]} (priority: "
                "pre-registration, Client ID Metadata Document, DCR; checklist C06)",
                metadata.issuer,
            )
        elif endpoint is not None and not self.register_client:
            add("registration", "ok", "Dynamic Client Registration (not tried)", metadata.issuer)
        elif endpoint is None and metadata.client_id_metadata_document_supported:
            add(
                "registration",
                "warn",
                "only Client ID Metadata Documents: clients with a metadata document URL (VS Code "
                "has one) can register, this client has none",
                metadata.issuer,
                "Set client_metadata_url in the client settings to the https URL of this "
                "client's metadata document (see bastion.client.registration), or pre-register a "
                "client.",
            )
        elif endpoint is None:
            add(
                "registration",
                "fail",
                "no way to obtain a client_id: no pre-registered client, no Client ID Metadata "
                "Document support, no registration_endpoint",
                metadata.issuer,
                f"{no_route(self.settings, metadata)}. This is also {VSCODE}: enable "
                "Dynamic Client Registration or Client ID Metadata Documents at the authorization "
                "server (most hosted providers leave both off by default), or give the client a "
                "pre-registered client_id.",
            )
        else:
            add(
                "registration",
                "fail",
                "Dynamic Client Registration is the only route, and it failed",
                metadata.issuer,
                f"See registration-dcr; or pre-register a client with issuer {metadata.issuer!r}.",
            )

    async def _register(self, endpoint: str) -> tuple[_Temporary | None, int]:
        """A temporary registration (RFC 7591 §3.1) to have a client_id for the next steps."""
        body = registration_request(self.settings, self.metadata, self.redirect_uri)
        body["client_name"] = f"{self.settings.client_name} (bastion doctor, temporary)"
        try:
            response = await self.http.post(
                endpoint, json=body, headers={"Accept": "application/json"}
            )
        except httpx.HTTPError as exc:
            outcome = f"request failed: {type(exc).__name__}: {exc}"
            return None, self._dcr_failed(endpoint, outcome)
        data = _json_object(response)
        client_id = data.get("client_id")
        if (
            response.status_code not in (200, 201)
            or not isinstance(client_id, str)
            or not client_id
        ):
            error = data.get("error")
            outcome = f"HTTP {response.status_code}" + (
                f" {error}: {data.get('error_description') or ''}".rstrip(": ") if error else ""
            )
            return None, self._dcr_failed(endpoint, outcome)
        method = data.get("token_endpoint_auth_method") or body["token_endpoint_auth_method"]
        secret = data.get("client_secret")
        client = RegisteredClient(
            issuer=self.metadata.issuer,
            client_id=client_id,
            source="dcr",
            token_endpoint_auth_method=cast(
                AuthMethod, method if method in ("none", *SECRET_METHODS) else "none"
            ),
            client_secret=secret if isinstance(secret, str) else None,
        )
        uri, token = data.get("registration_client_uri"), data.get("registration_access_token")
        temporary = _Temporary(
            client,
            uri if isinstance(uri, str) else None,
            token if isinstance(token, str) else None,
        )
        index = self.checks.add(
            "registration-dcr",
            "ok",
            f"a registration was accepted (HTTP {response.status_code}, temporary client_id "
            f"{client_id})",
            endpoint,
        )
        return temporary, index

    def _dcr_failed(self, endpoint: str, outcome: str) -> int:
        return self.checks.add(
            "registration-dcr",
            "fail",
            f"registration refused: {outcome}",
            endpoint,
            "The registration endpoint must accept an unauthenticated RFC 7591 request from a "
            "native client (application_type native, loopback redirect URI "
            f"{self.redirect_uri}, any port). An initial access token requirement, a "
            "trusted-hosts policy (Keycloak) or refused loopback redirect URIs block MCP clients: "
            f"{VSCODE}. Allow them, or pre-register a client.",
        )

    async def _delete(self, temporary: _Temporary) -> str:
        """Delete the temporary client (RFC 7592 §2.3) when the server allows it."""
        client_id = temporary.client.client_id
        if not temporary.client_uri or not temporary.access_token:
            return (
                "the server gave no registration access token, so the temporary client stays "
                f"registered: remove {client_id} at the authorization server if unwanted"
            )
        try:
            response = await self.http.delete(
                temporary.client_uri,
                headers={"Authorization": f"Bearer {temporary.access_token}"},
            )
        except httpx.HTTPError as exc:
            return f"deleting it failed ({type(exc).__name__}); remove {client_id} at the server"
        if response.status_code in (200, 204):
            return "deleted again (RFC 7592 §2.3)"
        return (
            f"deleting it was refused (HTTP {response.status_code}); remove {client_id} at the "
            "authorization server"
        )

    # ----------------------------------------------------------------- authorization request
    async def _authorization_request(self, client: RegisteredClient | None) -> None:
        add, metadata = self.checks.add, self.metadata
        endpoint = metadata.authorization_endpoint
        if endpoint is None:
            interactive = client is None or client.grant_type == "authorization_code"
            add(
                "authorization-endpoint",
                "fail" if interactive else "skip",
                "the metadata has no authorization_endpoint: no interactive log-in",
                metadata.url,
                "Publish authorization_endpoint in the metadata (RFC 8414 §2)."
                if interactive
                else None,
            )
            return
        if client is None or client.grant_type != "authorization_code":
            why = "no client_id to send" if client is None else "the client uses client_credentials"
            add("authorization-endpoint", "skip", f"not tried: {why}", endpoint)
            return
        try:
            request = build_authorization_request(
                metadata,
                client_id=client.client_id,
                redirect_uri=self.redirect_uri,
                resource=self.resource,
                scopes=self.scopes,
            )
        except PkceNotSupported:
            add(
                "authorization-endpoint", "skip", "not tried: PKCE S256 is not advertised", endpoint
            )
            return
        try:
            response = await self.http.get(request.url, headers={"Accept": "text/html"})
        except httpx.HTTPError as exc:
            add(
                "authorization-endpoint",
                "fail",
                f"request failed: {type(exc).__name__}: {exc}",
                endpoint,
                "authorization_endpoint in the metadata must be reachable from the user's "
                f"browser (public host name, https): {VSCODE}.",
            )
            return
        self._authorization_answer(response, endpoint)

    def _authorization_answer(self, response: httpx.Response, endpoint: str) -> None:
        """Read the first answer to the authorization request (no redirect followed)."""
        add, status = self.checks.add, response.status_code
        location = response.headers.get("location")
        sent = f"resource={self.resource}" + (
            f", scope={scope_parameter(self.scopes)}" if self.scopes else ""
        )
        if 300 <= status < 400 and location and _same_endpoint(location, self.redirect_uri):
            params = dict(parse_qsl(urlsplit(location).query))
            error = params.get("error")
            if error is None:
                add(
                    "authorization-endpoint",
                    "ok",
                    f"redirected back with a code ({sent})",
                    endpoint,
                )
                self.evidence.append(("accepted", "the authorization request"))
                return
            said = f"redirected back with error={error}" + (
                f" ({params['error_description']})" if params.get("error_description") else ""
            )
            if error == "invalid_target":
                add("authorization-endpoint", "ok", f"{said}; see resource-parameter", endpoint)
                self.evidence.append(("refused", f"the authorization request: {said}"))
                return
            fix = (
                "The authorization server refused the scopes clients ask for (the challenge's "
                "scope, else the resource metadata's scopes_supported): define them at the "
                f"authorization server: {VSCODE}."
                if error == "invalid_scope"
                else "Check the client's registration at the authorization server."
            )
            add("authorization-endpoint", "warn", f"{said} ({sent})", endpoint, fix)
            return
        if 300 <= status < 400 or status == 200:
            where = f" to {location}" if location else ""
            add(
                "authorization-endpoint",
                "ok",
                f"HTTP {status}{where}: the request ({sent}) was accepted; the user would log in",
                endpoint,
            )
            self.evidence.append(("accepted", "the authorization request (before log-in)"))
            return
        body = response.text[:2000]
        if "invalid_target" in body:
            add(
                "authorization-endpoint",
                "ok",
                f"HTTP {status} invalid_target; see resource-parameter",
                endpoint,
            )
            self.evidence.append(
                ("refused", f"the authorization request: HTTP {status} invalid_target")
            )
            return
        if status >= 500 or status in (404, 405):
            add(
                "authorization-endpoint",
                "fail",
                f"HTTP {status} to an authorization request ({sent})",
                endpoint,
                "authorization_endpoint in the metadata must be the authorization server's "
                f"working authorization endpoint: {VSCODE}.",
            )
            return
        add(
            "authorization-endpoint",
            "warn",
            f"HTTP {status}: the authorization server refused the request before redirecting "
            "(it shows an error page, e.g. for an unknown client_id or redirect URI)",
            endpoint,
            f"Register the redirect URI {self.redirect_uri} (any loopback port, RFC 8252 §7.3) "
            "for the client at the authorization server.",
        )

    # -------------------------------------------------------------------------- token endpoint
    async def _token_endpoint(self, client: RegisteredClient | None) -> None:
        """A request that must get an OAuth error (made-up code), or a client_credentials
        token for a machine client."""
        metadata = self.metadata
        endpoint = metadata.token_endpoint
        used = client or RegisteredClient(
            issuer=metadata.issuer, client_id=PROBE_CLIENT_ID, source="pre-registered"
        )
        machine = used.grant_type == "client_credentials"
        form = {"grant_type": used.grant_type, "resource": self.resource}
        if machine:
            scope = scope_parameter(self.scopes)
            if scope:
                form["scope"] = scope
        else:
            form.update(
                code=MADE_UP_CODE,
                redirect_uri=self.redirect_uri,
                code_verifier=pkce.new_verifier(),
            )
        try:
            await token_request(self.http, metadata.issuer, endpoint, used, form)
        except TokenEndpointError as exc:
            self._token_refusal(exc, endpoint, machine)
            return
        if machine:
            self.checks.add(
                "token-endpoint",
                "ok",
                f"issued a token to {used.client_id} for resource {self.resource}",
                endpoint,
            )
            self.evidence.append(("accepted", "the token request (client_credentials)"))
        else:
            self.checks.add(
                "token-endpoint",
                "fail",
                "HTTP 200 for a made-up authorization code",
                endpoint,
                "The token endpoint must refuse unknown codes with invalid_grant "
                "(RFC 6749 §5.2); this one issues tokens for anything.",
            )

    def _token_refusal(self, exc: TokenEndpointError, endpoint: str, machine: bool) -> None:
        add, status, error = self.checks.add, exc.status, exc.error
        if status is None:
            add(
                "token-endpoint",
                "fail",
                f"unreachable: {exc}",
                endpoint,
                "token_endpoint in the metadata must be reachable from the client: check its "
                "host and port (behind a proxy, the public URL, not an internal one): "
                f"{VSCODE}.",
            )
            return
        if error == "invalid_target":
            self.evidence.append(("refused", f"the token request: HTTP {status} invalid_target"))
        if status in (400, 401) and error:
            what = "the pre-registered client's token request" if machine else "a made-up code"
            verdict: Status = "warn" if machine and error != "invalid_target" else "ok"
            add(
                "token-endpoint",
                verdict,
                f"HTTP {status} {error} for {what}: reachable, answers in OAuth terms",
                endpoint,
                "Check the pre-registered client's credentials and grant at the authorization "
                "server."
                if verdict == "warn"
                else None,
            )
        elif status in (404, 405) or status >= 500:
            add(
                "token-endpoint",
                "fail",
                f"HTTP {status}: no working token endpoint at this URL",
                endpoint,
                "token_endpoint in the metadata must name the authorization server's token "
                f"endpoint: {VSCODE}.",
            )
        else:
            add(
                "token-endpoint",
                "warn",
                f"HTTP {status} without an OAuth error object (RFC 6749 §5.2 expects "
                '{"error": …} JSON)',
                endpoint,
            )

    # --------------------------------------------------------------------- resource parameter
    def _resource_verdict(self, client: RegisteredClient | None) -> None:
        add, resource = self.checks.add, self.resource
        refused = [what for verdict, what in self.evidence if verdict == "refused"]
        accepted = [what for verdict, what in self.evidence if verdict == "accepted"]
        if refused:
            add(
                "resource-parameter",
                "fail",
                f"resource={resource} refused with invalid_target in {'; '.join(refused)}",
                self.metadata.issuer,
                f"Make the authorization server accept the resource indicator {resource} "
                "(RFC 8707) and issue tokens with that audience: register it as an API, audience "
                "or resource there (in bastion: a [[resources]] uri). MCP clients always send "
                f"it (checklist C12): {VSCODE}.",
            )
        elif accepted:
            add(
                "resource-parameter",
                "ok",
                f"resource={resource} accepted by {'; '.join(accepted)}",
                self.metadata.issuer,
            )
        else:
            why = (
                "no client_id to test with"
                if client is None
                else "no request got far enough to tell"
            )
            add(
                "resource-parameter",
                "skip",
                f"resource={resource} not tested: {why}",
                self.metadata.issuer,
            )


__all__ = ["MADE_UP_CODE", "PROBE_CLIENT_ID", "ClientSideChecks"]
