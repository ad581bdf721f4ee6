"""One upstream's OAuth, as bastion sees it as a client (``auth = "oauth"`` upstreams).

- Discovery: the upstream's Protected Resource Metadata (RFC 9728; skipped when both
  ``authorization_server`` and ``resource`` are configured), then its authorization server's
  metadata (RFC 8414 / OpenID Connect; ``issuer`` identical to the one asked for, RFC 8414
  §3.3; PKCE S256 advertised), through :mod:`bastion.client.discovery`. Cached for an hour.
- Registration (``registration``): ``pre-registered`` (``client_id``), ``cimd`` (the Client ID
  Metadata Document bastion serves at ``<issuer>/connect/client-metadata.json``), ``dcr``
  (RFC 7591, once: the result is stored in ``upstream_clients`` with its secret and registration
  access token encrypted, so every process uses the same client), or ``auto`` (in that order,
  as configured and advertised).
- The authorization URL (PKCE S256, RFC 8707 ``resource``), the code exchange, refresh and
  RFC 7009 revocation, authenticated as the registration says.

Every request goes through the SSRF guard of :mod:`bastion.net.ssrf` and must be https, unless
the upstream has ``allow_private_addresses`` (then http is allowed on loopback only). Failures
are :mod:`bastion.vault.errors` exceptions: their ``message`` is safe to show a person, their
``detail`` names the URL and the setting to check for the operator's log.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlencode, urlsplit

import httpx

from bastion.client import flow
from bastion.client.client_auth import authenticate
from bastion.client.discovery import (
    check_endpoint,
    fetch_authorization_server,
    fetch_protected_resource,
    probe,
    server_key,
)
from bastion.client.errors import DiscoveryError, InsecureUrl, TokenEndpointError
from bastion.client.models import AuthorizationServerMetadata, RegisteredClient
from bastion.client.registration import json_object
from bastion.client.settings import AuthMethod
from bastion.client.trace import Trace
from bastion.config import Settings
from bastion.config.gateway import UpstreamSettings
from bastion.logs import get_logger
from bastion.net.ssrf import BlockedAddressError, guarded_transport
from bastion.oauth.token_response import TokenResponse
from bastion.store import upstream_connections as repo
from bastion.store.database import Database
from bastion.store.upstream_connections import UpstreamClient
from bastion.tokens.cipher import Cipher
from bastion.vault.errors import ConnectionNeeded, UpstreamMisconfigured, UpstreamUnavailable

log = get_logger("bastion.vault")

METADATA_TTL = 3600.0
USER_AGENT = "bastion-vault"
CALLBACK_PATH = "/connect/callback"
CLIENT_METADATA_PATH = "/connect/client-metadata.json"
Registration = Literal["pre-registered", "cimd", "dcr"]
_SECRET_METHODS: tuple[AuthMethod, ...] = ("client_secret_basic", "client_secret_post")


def redirect_uri_for(issuer: str) -> str:
    """bastion's one redirect URI at every upstream: ``<issuer>/connect/callback``."""
    return issuer.rstrip("/") + CALLBACK_PATH


def client_metadata_url(issuer: str) -> str:
    """The URL of bastion's Client ID Metadata Document, which is also its client_id there."""
    return issuer.rstrip("/") + CLIENT_METADATA_PATH


def client_metadata_document(settings: Settings) -> dict[str, object]:
    """The Client ID Metadata Document bastion serves at ``<issuer>/connect/client-metadata.json``
    (draft-ietf-oauth-client-id-metadata-document §4: ``client_id`` is the document's URL): a
    public web client whose one redirect URI is the connect callback."""
    return {
        "client_id": client_metadata_url(settings.issuer),
        "client_name": f"bastion ({urlsplit(settings.issuer).netloc})",
        "client_uri": settings.issuer,
        "redirect_uris": [redirect_uri_for(settings.issuer)],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "web",
    }


def oauth_upstreams(settings: Settings) -> list[UpstreamSettings]:
    """The gateway's upstreams with their own OAuth (``auth = "oauth"``)."""
    return [u for u in settings.gateway.upstreams if u.auth == "oauth"]


@dataclass(frozen=True)
class UpstreamClientInfo:
    """bastion as a client of one upstream's authorization server: where to send people, how
    bastion is registered there, and what to ask for."""

    issuer: str
    client_id: str
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str | None
    resource: str
    scopes: tuple[str, ...]
    registration: Registration = "pre-registered"
    token_endpoint_auth_method: AuthMethod = "none"
    iss_parameter_supported: bool = False
    client_secret: str | None = field(default=None, repr=False, compare=False)

    def registered(self) -> RegisteredClient:
        """The same identity as :mod:`bastion.client` authenticates it."""
        return RegisteredClient(
            issuer=self.issuer,
            client_id=self.client_id,
            source=self.registration,
            token_endpoint_auth_method=self.token_endpoint_auth_method,
            client_secret=self.client_secret,
        )


@dataclass(frozen=True)
class _Discovered:
    metadata: AuthorizationServerMetadata
    resource: str
    scopes: tuple[str, ...]
    revocation_endpoint: str | None
    at: float


class UpstreamServer:
    """One upstream's OAuth as bastion, its client, sees it."""

    def __init__(
        self,
        upstream: UpstreamSettings,
        *,
        issuer: str,
        db: Database,
        cipher: Cipher,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if upstream.url is None or upstream.auth != "oauth":
            raise ValueError(f'upstream {upstream.name!r} is not an auth = "oauth" URL upstream')
        self.upstream = upstream
        self.settings = upstream.oauth
        self.issuer = issuer.rstrip("/")
        self._db = db
        self._cipher = cipher
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(
            transport=guarded_transport(
                allow_private=self.settings.allow_private_addresses, timeout=upstream.timeout
            ),
            timeout=upstream.timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
        )
        self._discovered: _Discovered | None = None
        self._client: UpstreamClientInfo | None = None
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        """The upstream's name in the gateway configuration."""
        return self.upstream.name

    @property
    def redirect_uri(self) -> str:
        """``<issuer>/connect/callback``: one for all upstreams (the state says which)."""
        return redirect_uri_for(self.issuer)

    async def aclose(self) -> None:
        """Close the HTTP client (when this object made it)."""
        if self._own_http:
            await self._http.aclose()

    # -- words ---------------------------------------------------------------------------------

    def _setting(self, name: str) -> str:
        return f"[gateway.upstreams.oauth] {name} of upstream {self.name!r}"

    def _misconfigured(self, detail: str) -> UpstreamMisconfigured:
        return UpstreamMisconfigured(
            f"bastion cannot sign in to upstream {self.name!r}; its operator must fix the "
            "configuration",
            detail=f"upstream {self.name!r}: {detail}",
        )

    def _unavailable(self, detail: str) -> UpstreamUnavailable:
        return UpstreamUnavailable(
            f"upstream {self.name!r} cannot be reached right now; try again later",
            detail=f"upstream {self.name!r}: {detail}",
        )

    # -- discovery -----------------------------------------------------------------------------

    @property
    def _https_only(self) -> bool:
        return not self.settings.allow_private_addresses

    def _check(self, url: str, what: str) -> str:
        try:
            return check_endpoint(url, what, https_only=self._https_only)
        except DiscoveryError as exc:
            raise self._misconfigured(self._url_hint(str(exc))) from None

    def _url_hint(self, problem: str) -> str:
        if self._https_only:
            return (
                f"{problem}. Upstream OAuth endpoints must be https; for a development server "
                f"on loopback over http, set {self._setting('allow_private_addresses')} = true"
            )
        return f"{problem} (http is allowed only on loopback addresses)"

    def _discovery_failed(self, exc: DiscoveryError, trace: Trace) -> Exception:
        failures = [s for s in trace.steps if not s.ok]
        if any("BlockedAddressError" in s.detail for s in failures):
            return self._misconfigured(
                f"{exc}; an address is not public (SSRF protection): for a server on loopback "
                f"or a private network set {self._setting('allow_private_addresses')} = true"
                f" ({'; '.join(trace.lines())})"
            )
        if failures and all(s.detail.startswith("request failed") for s in failures):
            return self._unavailable(f"{exc} ({'; '.join(trace.lines())})")
        if isinstance(exc, InsecureUrl):
            return self._misconfigured(self._url_hint(str(exc)))
        return self._misconfigured(str(exc))

    async def _discover(self) -> _Discovered:
        cached = self._discovered
        if cached is not None and time.monotonic() - cached.at < METADATA_TTL:
            return cached
        assert self.upstream.url is not None
        oauth = self.settings
        trace = Trace()
        prm = None
        try:
            if oauth.authorization_server is None or oauth.resource is None:
                self._check(self.upstream.url, "the upstream url")
                prm = await fetch_protected_resource(
                    self._http, self.upstream.url, None, trace, https_only=self._https_only
                )
                if prm is None:
                    # No well-known document: the 401's WWW-Authenticate may name one (RFC 9728 §5).
                    found = await probe(self._http, self.upstream.url, trace)
                    if found.challenge is not None and found.challenge.resource_metadata:
                        prm = await fetch_protected_resource(
                            self._http,
                            self.upstream.url,
                            found.challenge,
                            trace,
                            https_only=self._https_only,
                        )
                if prm is None:
                    raise self._discovery_failed(
                        DiscoveryError(
                            f"{self.upstream.url} publishes no protected resource metadata "
                            "(RFC 9728); set "
                            f"{self._setting('authorization_server')} and "
                            f"{self._setting('resource')}"
                        ),
                        trace,
                    )
            issuer = oauth.authorization_server or (prm.authorization_servers[0] if prm else "")
            metadata = await fetch_authorization_server(
                self._http, issuer, trace, https_only=self._https_only
            )
        except DiscoveryError as exc:
            raise self._discovery_failed(exc, trace) from None
        if metadata.authorization_endpoint is None:
            raise self._misconfigured(
                f"authorization server {metadata.issuer} has no authorization_endpoint "
                f"({metadata.url})"
            )
        raw_revocation = metadata.raw.get("revocation_endpoint")
        revocation = (
            self._check(raw_revocation, "revocation_endpoint")
            if isinstance(raw_revocation, str) and raw_revocation
            else None
        )
        resource = oauth.resource or (prm.resource if prm else server_key(self.upstream.url))
        scopes = tuple(
            oauth.scopes
            if oauth.scopes is not None
            else (prm.scopes_supported if prm and prm.scopes_supported else ())
        )
        found_at = _Discovered(metadata, resource, scopes, revocation, time.monotonic())
        self._discovered = found_at
        log.info(
            "upstream %s: authorization server %s, resource %s",
            self.name,
            metadata.issuer,
            resource,
        )
        return found_at

    # -- registration --------------------------------------------------------------------------

    def _route(self, metadata: AuthorizationServerMetadata) -> Registration:
        oauth = self.settings
        if oauth.registration == "pre-registered" or (
            oauth.registration == "auto" and oauth.client_id is not None
        ):
            return "pre-registered"
        if oauth.registration == "cimd" or (
            oauth.registration == "auto" and metadata.client_id_metadata_document_supported
        ):
            if not metadata.client_id_metadata_document_supported:
                raise self._misconfigured(
                    f'{self._setting("registration")} is "cimd" but authorization server '
                    f"{metadata.issuer} does not advertise client_id_metadata_document_supported"
                )
            return "cimd"
        if metadata.registration_endpoint is None:
            how = (
                'is "dcr"'
                if oauth.registration == "dcr"
                else 'is "auto" and no client_id is configured'
            )
            raise self._misconfigured(
                f"{self._setting('registration')} {how}, but authorization server "
                f"{metadata.issuer} offers neither Dynamic Client Registration "
                "(registration_endpoint) nor Client ID Metadata Documents. Register bastion "
                f"there with redirect URI {self.redirect_uri} and set "
                f"{self._setting('client_id')} (and client_secret)"
            )
        return "dcr"

    async def client(self) -> UpstreamClientInfo:
        """bastion's client at the upstream's authorization server: discovery (cached), then
        the registration the configuration and the server's metadata call for (a DCR
        registration is made once and stored for every process)."""
        found = await self._discover()
        cached = self._client
        if cached is not None and cached.issuer == found.metadata.issuer:
            return cached
        async with self._lock:
            if self._client is not None and self._client.issuer == found.metadata.issuer:
                return self._client
            metadata = found.metadata
            route = self._route(metadata)
            base = {
                "issuer": metadata.issuer,
                "authorization_endpoint": metadata.authorization_endpoint or "",
                "token_endpoint": metadata.token_endpoint,
                "revocation_endpoint": found.revocation_endpoint,
                "resource": found.resource,
                "scopes": found.scopes,
                "iss_parameter_supported": metadata.iss_parameter_supported,
            }
            if route == "pre-registered":
                secret = self.settings.client_secret
                assert self.settings.client_id is not None
                info = UpstreamClientInfo(
                    client_id=self.settings.client_id,
                    registration=route,
                    token_endpoint_auth_method=_secret_method(metadata) if secret else "none",
                    client_secret=secret.get_secret_value() if secret else None,
                    **base,  # type: ignore[arg-type]
                )
            elif route == "cimd":
                info = UpstreamClientInfo(
                    client_id=client_metadata_url(self.issuer),
                    registration=route,
                    **base,  # type: ignore[arg-type]
                )
            else:
                stored = await self._registered(metadata)
                info = UpstreamClientInfo(
                    client_id=stored.client_id,
                    registration=route,
                    token_endpoint_auth_method=_auth_method(stored.token_endpoint_auth_method),
                    client_secret=self._open_secret(stored),
                    **base,  # type: ignore[arg-type]
                )
            self._client = info
            return info

    def _secret_binding(self, issuer: str) -> str:
        return f"upstream-client:{self.name}|{issuer}|secret"

    def _registration_binding(self, issuer: str) -> str:
        return f"upstream-client:{self.name}|{issuer}|registration"

    def _open_secret(self, stored: UpstreamClient) -> str | None:
        if stored.client_secret_encrypted is None:
            return None
        return self._cipher.decrypt(
            stored.client_secret_encrypted, bound_to=self._secret_binding(stored.issuer)
        ).decode()

    async def _registered(self, metadata: AuthorizationServerMetadata) -> UpstreamClient:
        """The stored RFC 7591 registration for this upstream and issuer, made now if there is
        none (or it was for another redirect URI). Two processes registering at once: the first
        row stored wins, the other process deletes its own registration (RFC 7592) and uses
        the winner's."""
        async with self._db.connect() as conn:
            stored = await repo.find_client(conn, self.name, metadata.issuer)
        if stored is not None and stored.redirect_uri == self.redirect_uri:
            return stored
        if stored is not None:
            async with self._db.transaction() as conn:
                await repo.delete_client(conn, self.name, metadata.issuer)
        made = await self._register(metadata)
        async with self._db.transaction() as conn:
            first = await repo.add_client(conn, made)
        if first:
            log.info(
                "upstream %s: registered at %s as client %s",
                self.name,
                metadata.issuer,
                made.client_id,
            )
            return made
        await self._unregister(made)
        async with self._db.connect() as conn:
            winner = await repo.find_client(conn, self.name, metadata.issuer)
        if winner is None:  # removed again in between: use ours after all
            async with self._db.transaction() as conn:
                await repo.save_client(conn, made)
            return made
        return winner

    def registration_request(self, metadata: AuthorizationServerMetadata) -> dict[str, object]:
        """The RFC 7591 §2 metadata bastion registers with: a confidential web client (a
        secret method the server lists, else ``none``) whose one redirect URI is the callback."""
        body: dict[str, object] = {
            "client_name": f"bastion ({urlsplit(self.issuer).netloc})",
            "client_uri": self.issuer,
            "redirect_uris": [self.redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": _secret_method(metadata, fallback="none"),
            "application_type": "web",
        }
        return body

    async def _register(self, metadata: AuthorizationServerMetadata) -> UpstreamClient:
        endpoint = metadata.registration_endpoint
        assert endpoint is not None
        body = self.registration_request(metadata)
        try:
            response = await self._http.post(
                endpoint, json=body, headers={"Accept": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise self._transport_failed(exc, "registration", endpoint) from None
        data = json_object(response)
        if response.status_code >= 500:
            raise self._unavailable(f"registration at {endpoint} answered {response.status_code}")
        if response.status_code not in (200, 201):
            error = data.get("error") if data else None
            description = data.get("error_description") if data else None
            raise self._misconfigured(
                f"{endpoint} refused bastion's registration (RFC 7591) with HTTP "
                f"{response.status_code}"
                + (f" {error}" if error else "")
                + (f": {description}" if description else "")
                + f". Register bastion there with redirect URI {self.redirect_uri} and set "
                f"{self._setting('client_id')}"
            )
        client_id = data.get("client_id") if data else None
        if data is None or not isinstance(client_id, str) or not client_id:
            raise self._misconfigured(f"{endpoint} answered without a client_id (RFC 7591 §3.2.1)")
        method = data.get("token_endpoint_auth_method") or body["token_endpoint_auth_method"]
        secret = data.get("client_secret")
        secret = secret if isinstance(secret, str) and secret else None
        if method not in ("none", *_SECRET_METHODS) or (method != "none" and secret is None):
            raise self._misconfigured(
                f"{endpoint} registered bastion with auth method {method!r}"
                + (" but no client_secret" if method in _SECRET_METHODS else "")
                + f"; pre-register a client and set {self._setting('client_id')}"
            )
        uri = data.get("registration_client_uri")
        access = data.get("registration_access_token")
        issuer = metadata.issuer
        return UpstreamClient(
            upstream=self.name,
            issuer=issuer,
            client_id=client_id,
            client_secret_encrypted=(
                self._cipher.encrypt(secret.encode(), bound_to=self._secret_binding(issuer))
                if secret
                else None
            ),
            token_endpoint_auth_method=str(method),
            redirect_uri=self.redirect_uri,
            registration_client_uri=uri if isinstance(uri, str) and uri else None,
            registration_access_token_encrypted=(
                self._cipher.encrypt(access.encode(), bound_to=self._registration_binding(issuer))
                if isinstance(access, str) and access
                else None
            ),
            created_at=int(time.time()),
        )

    async def _unregister(self, made: UpstreamClient) -> None:
        """Delete a registration nobody will use (RFC 7592 §2.3), when the server allows."""
        if made.registration_client_uri is None or made.registration_access_token_encrypted is None:
            return
        token = self._cipher.decrypt(
            made.registration_access_token_encrypted,
            bound_to=self._registration_binding(made.issuer),
        ).decode()
        try:
            self._check(made.registration_client_uri, "registration_client_uri")
            await self._http.delete(
                made.registration_client_uri, headers={"Authorization": f"Bearer {token}"}
            )
        except (httpx.HTTPError, UpstreamMisconfigured) as exc:
            log.info("upstream %s: unused registration not deleted: %s", self.name, exc)

    # -- the authorization code flow -----------------------------------------------------------

    async def authorization_url(self, *, state: str, code_challenge: str) -> str:
        """Where to send the person: the authorization request (OAuth 2.1 §4.1.1) with PKCE
        S256, the upstream's ``resource`` (RFC 8707) and its scopes."""
        client = await self.client()
        params = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": self.redirect_uri,
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
            "resource": client.resource,
        }
        if client.scopes:
            params["scope"] = " ".join(client.scopes)
        endpoint = client.authorization_endpoint
        return f"{endpoint}{'&' if urlsplit(endpoint).query else '?'}{urlencode(params)}"

    async def exchange_code(self, code: str, verifier: str) -> TokenResponse:
        """Redeem an authorization code (OAuth 2.1 §4.1.3) with the PKCE verifier and the same
        ``resource``."""
        client = await self.client()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": verifier,
            "resource": client.resource,
        }
        return await self._token(client, form, "the code exchange")

    async def refresh(self, refresh_token: str) -> TokenResponse:
        """The refresh_token grant (OAuth 2.1 §4.3) for the upstream's resource.
        ``invalid_grant`` raises :class:`ConnectionNeeded`; a network failure or a 5xx answer
        :class:`UpstreamUnavailable`."""
        client = await self.client()
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "resource": client.resource,
        }
        return await self._token(client, form, "the refresh")

    async def _token(
        self, client: UpstreamClientInfo, form: dict[str, str], what: str
    ) -> TokenResponse:
        try:
            return await flow.token_request(
                self._http, client.issuer, client.token_endpoint, client.registered(), form
            )
        except TokenEndpointError as exc:
            cause = exc.__cause__
            if isinstance(cause, httpx.HTTPError):
                raise self._transport_failed(cause, what, client.token_endpoint) from None
            if exc.error == "invalid_grant":
                raise ConnectionNeeded(
                    f"upstream {self.name!r} no longer accepts the sign-in; sign in there again",
                    detail=f"upstream {self.name!r}: {what}: {exc}",
                ) from None
            if exc.status is not None and exc.status >= 500:
                raise self._unavailable(f"{what}: {exc}") from None
            if exc.error in ("invalid_client", "unauthorized_client") and (
                client.registration == "dcr"
            ):
                # The server forgot bastion's registration: register again next time.
                async with self._db.transaction() as conn:
                    await repo.delete_client(conn, self.name, client.issuer)
                self._client = None
            raise self._misconfigured(f"{what}: {exc}") from None

    async def revoke(self, token: str, *, hint: str) -> bool:
        """Revoke ``token`` upstream (RFC 7009 §2.1; ``hint``: "access_token" or
        "refresh_token"): True when revoked, False when the server has no revocation endpoint
        or does not revoke that type of token (``unsupported_token_type``)."""
        client = await self.client()
        endpoint = client.revocation_endpoint
        if endpoint is None:
            return False
        form = {"token": token, "token_type_hint": hint}
        headers = {"Accept": "application/json"}
        authenticate(client.registered(), form, headers, issuer=client.issuer)
        try:
            response = await self._http.post(endpoint, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise self._transport_failed(exc, "revocation", endpoint) from None
        if response.status_code == 200:
            return True
        data = json_object(response)
        error = data.get("error") if data else None
        if error == "unsupported_token_type":
            return False
        if response.status_code >= 500 or error == "temporarily_unavailable":
            raise self._unavailable(f"revocation at {endpoint} answered {response.status_code}")
        raise self._misconfigured(
            f"revocation at {endpoint} answered {response.status_code}"
            + (f" {error}" if error else "")
        )

    def _transport_failed(self, exc: httpx.HTTPError, what: str, url: str) -> Exception:
        if isinstance(exc, BlockedAddressError):
            return self._misconfigured(
                f"{what} at {url}: {exc.host} resolves to {exc.address}, which is not a public "
                "address (SSRF protection); for a server on loopback or a private network set "
                f"{self._setting('allow_private_addresses')} = true"
            )
        return self._unavailable(f"{what} at {url} failed: {type(exc).__name__}: {exc}")


def _secret_method(
    metadata: AuthorizationServerMetadata, fallback: AuthMethod = "client_secret_basic"
) -> AuthMethod:
    """The secret method the server lists (basic first); RFC 8414 §2: an absent list means
    client_secret_basic."""
    listed = metadata.token_endpoint_auth_methods_supported
    if listed is None:
        return "client_secret_basic"
    for method in _SECRET_METHODS:
        if method in listed:
            return method
    return fallback


def _auth_method(value: str) -> AuthMethod:
    return "none" if value not in _SECRET_METHODS else value


__all__ = [
    "CALLBACK_PATH",
    "CLIENT_METADATA_PATH",
    "UpstreamClientInfo",
    "UpstreamServer",
    "client_metadata_document",
    "client_metadata_url",
    "oauth_upstreams",
    "redirect_uri_for",
]
