"""One upstream's OAuth, as bastion sees it as a client (``auth = "oauth"`` upstreams).

- Discovery: the upstream's Protected Resource Metadata (RFC 9728; skipped when both
  ``authorization_server`` and ``resource`` are configured), then its authorization server's
  metadata (RFC 8414 / OpenID Connect; ``issuer`` identical to the one asked for, RFC 8414
  §3.3; PKCE S256 advertised), read with :mod:`bastion.oauth`'s models (the server side never
  imports :mod:`bastion.client`). Cached for an hour.
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
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from bastion.config import Settings
from bastion.config.gateway import UpstreamSettings
from bastion.identity.upstream_client import basic_credentials
from bastion.logs import get_logger
from bastion.net.ssrf import BlockedAddressError, guarded_transport
from bastion.oauth import token_response
from bastion.oauth.endpoint_url import EndpointUrlPolicy
from bastion.oauth.metadata import MetadataError, url_reason
from bastion.oauth.protected_resource import ResourceMetadata
from bastion.oauth.resource import canonical
from bastion.oauth.server_metadata import ServerMetadata
from bastion.oauth.token_response import (
    MalformedTokenResponse,
    TokenErrorResponse,
    TokenResponse,
)
from bastion.oauth.well_known import (
    AS_METADATA,
    OPENID_CONFIGURATION,
    PROTECTED_RESOURCE,
    appended,
    inserted,
)
from bastion.oauth.www_authenticate import parse_challenges
from bastion.store import upstream_connections as repo
from bastion.store.database import Database
from bastion.store.upstream_connections import UpstreamClient
from bastion.tokens.cipher import Cipher
from bastion.vault.errors import ConnectionNeeded, UpstreamMisconfigured, UpstreamUnavailable

log = get_logger("bastion.vault")

METADATA_TTL = 3600.0
MAX_BODY_BYTES = 256 * 1024
USER_AGENT = "bastion-vault"
CALLBACK_PATH = "/connect/callback"
CLIENT_METADATA_PATH = "/connect/client-metadata.json"
# Upstream names a connect URL cannot carry: the connect pages' own fixed paths.
RESERVED_NAMES = ("callback", "client-metadata.json")
Registration = Literal["pre-registered", "cimd", "dcr"]
AuthMethod = Literal["none", "client_secret_basic", "client_secret_post"]
_SECRET_METHODS: tuple[AuthMethod, ...] = ("client_secret_basic", "client_secret_post")
_PROBE = {"jsonrpc": "2.0", "id": "bastion-probe", "method": "tools/list", "params": {}}


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

    def authenticate(self, form: dict[str, str], headers: dict[str, str]) -> None:
        """Add bastion's client authentication to a token or revocation request (OAuth 2.1
        §2.4.1: HTTP Basic or the form; a public client sends its client_id)."""
        if self.token_endpoint_auth_method == "client_secret_basic" and self.client_secret:
            headers["Authorization"] = basic_credentials(self.client_id, self.client_secret)
            return
        form["client_id"] = self.client_id
        if self.token_endpoint_auth_method == "client_secret_post" and self.client_secret:
            form["client_secret"] = self.client_secret


@dataclass(frozen=True)
class _Discovered:
    metadata: ServerMetadata
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
    def _policy(self) -> EndpointUrlPolicy:
        """https; http on loopback only with allow_private_addresses."""
        return EndpointUrlPolicy(
            http="loopback" if self.settings.allow_private_addresses else "never"
        )

    def _check(self, url: str, what: str) -> str:
        problem = self._policy.problem(url)
        if problem == "http" or (problem == "scheme" and url.startswith("http:")):
            if self.settings.allow_private_addresses:
                raise self._misconfigured(
                    f"{what} {url} uses http on a host that is not loopback; upstream OAuth "
                    "endpoints must be https"
                )
            raise self._misconfigured(
                f"{what} {url} is not https. Upstream OAuth endpoints must be https; for a "
                f"development server on loopback over http, set "
                f"{self._setting('allow_private_addresses')} = true"
            )
        if problem is not None:
            raise self._misconfigured(f"{what} {url!r} {url_reason(problem)}")
        return url

    async def _get_json(
        self, method: str, url: str, what: str, **kwargs: Any
    ) -> tuple[httpx.Response, object]:
        """One request whose answer should be JSON (None when it is not), redirects not
        followed, the body bounded."""
        self._check(url, what)
        try:
            async with self._http.stream(method, url, **kwargs) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        raise self._misconfigured(
                            f"{what} {url}: the answer is larger than {MAX_BODY_BYTES} bytes"
                        )
        except httpx.HTTPError as exc:
            raise self._transport_failed(exc, what, url) from None
        try:
            data: object = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            data = None
        return response, data

    async def _resource_metadata(self, url: str) -> ResourceMetadata:
        """The upstream's RFC 9728 metadata: at the well-known URL with its path inserted, then
        the root one, then where a 401's ``WWW-Authenticate`` says (RFC 9728 §5.1). Its
        ``resource`` must be the URL it describes (§3.3)."""
        key = _server_key(url)
        parts = urlsplit(key)
        root = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        candidates = [(inserted(key, PROTECTED_RESOURCE), key)]
        if parts.path not in ("", "/"):
            candidates.append((inserted(root, PROTECTED_RESOURCE), root))
        tried: list[str] = []
        for index in range(3):
            if index == 2:  # the well-known URLs had nothing: ask the server itself
                named = await self._challenge_metadata_url(url)
                if named is None:
                    break
                candidates.append((named, key))
            if index >= len(candidates):
                continue
            where, expected = candidates[index]
            tried.append(where)
            response, doc = await self._get_json(
                "GET", where, "protected resource metadata", headers={"Accept": "application/json"}
            )
            if response.status_code != 200 or not isinstance(doc, dict):
                continue
            try:
                prm = ResourceMetadata.parse(doc)
            except MetadataError as exc:
                raise self._misconfigured(f"the metadata at {where} is malformed: {exc}") from None
            if canonical(prm.resource) != canonical(expected):
                raise self._misconfigured(
                    f"the metadata at {where} describes resource {prm.resource!r}, not "
                    f"{expected!r}; RFC 9728 §3.3 forbids using it"
                )
            if not prm.authorization_servers:
                raise self._misconfigured(f"the metadata at {where} names no authorization_servers")
            return prm
        raise self._misconfigured(
            f"{url} publishes no protected resource metadata (RFC 9728; tried "
            f"{', '.join(tried)}); set {self._setting('authorization_server')} and "
            f"{self._setting('resource')}"
        )

    async def _challenge_metadata_url(self, url: str) -> str | None:
        """The ``resource_metadata`` of the Bearer challenge an unauthenticated MCP request
        gets (MCP authorization: the first request gets 401 with ``WWW-Authenticate``)."""
        response, _ = await self._get_json(
            "POST",
            url,
            "the upstream url",
            json=_PROBE,
            headers={"Accept": "application/json, text/event-stream"},
        )
        for challenge in parse_challenges(", ".join(response.headers.get_list("www-authenticate"))):
            named = challenge.get("resource_metadata") if challenge.scheme == "bearer" else None
            if named:
                return named
        return None

    async def _server_metadata(self, issuer: str) -> ServerMetadata:
        """The authorization server's metadata from MCP's URLs in order (RFC 8414 §3.1, OpenID
        Connect Discovery §4): ``issuer`` identical to the one asked for (RFC 8414 §3.3), the
        token and authorization endpoints present, PKCE S256 advertised."""
        self._check(issuer, "authorization server")
        urls = [inserted(issuer, AS_METADATA), inserted(issuer, OPENID_CONFIGURATION)]
        if urlsplit(issuer).path.rstrip("/"):
            urls.append(appended(issuer, OPENID_CONFIGURATION))
        problems: list[str] = []
        for url in urls:
            response, doc = await self._get_json(
                "GET", url, "authorization server metadata", headers={"Accept": "application/json"}
            )
            if response.status_code != 200 or not isinstance(doc, dict):
                continue
            if doc.get("issuer") != issuer:
                problems.append(
                    f"the metadata at {url} says issuer {doc.get('issuer')!r}, not {issuer!r}; "
                    "RFC 8414 §3.3 forbids using it"
                )
                continue
            try:
                metadata = ServerMetadata.parse(doc)
            except MetadataError as exc:
                raise self._misconfigured(f"the metadata at {url} is malformed: {exc}") from None
            if metadata.token_endpoint is None or metadata.authorization_endpoint is None:
                raise self._misconfigured(
                    f"the metadata at {url} lacks the token_endpoint or authorization_endpoint"
                )
            if not metadata.supports_s256:
                raise self._misconfigured(
                    f"authorization server {issuer} does not advertise PKCE S256 "
                    "(code_challenge_methods_supported); bastion requires it"
                )
            for name in ("token_endpoint", "authorization_endpoint", "registration_endpoint"):
                value = getattr(metadata, name)
                if value is not None:
                    self._check(value, name)
            return metadata
        raise self._misconfigured(
            "; ".join(problems)
            or f"authorization server {issuer} publishes no metadata at {', '.join(urls)}"
        )

    async def _discover(self) -> _Discovered:
        cached = self._discovered
        if cached is not None and time.monotonic() - cached.at < METADATA_TTL:
            return cached
        assert self.upstream.url is not None
        oauth = self.settings
        prm = None
        if oauth.authorization_server is None or oauth.resource is None:
            prm = await self._resource_metadata(self.upstream.url)
        issuer = oauth.authorization_server or (
            prm.authorization_servers[0] if prm and prm.authorization_servers else ""
        )
        metadata = await self._server_metadata(issuer)
        revocation = (
            self._check(metadata.revocation_endpoint, "revocation_endpoint")
            if metadata.revocation_endpoint
            else None
        )
        resource = oauth.resource or (prm.resource if prm else _server_key(self.upstream.url))
        scopes = tuple(
            oauth.scopes
            if oauth.scopes is not None
            else (prm.scopes_supported if prm and prm.scopes_supported else ())
        )
        found = _Discovered(metadata, resource, scopes, revocation, time.monotonic())
        self._discovered = found
        log.info(
            "upstream %s: authorization server %s, resource %s",
            self.name,
            metadata.issuer,
            resource,
        )
        return found

    # -- registration --------------------------------------------------------------------------

    def _route(self, metadata: ServerMetadata) -> Registration:
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
            if route == "pre-registered":
                secret = self.settings.client_secret
                assert self.settings.client_id is not None
                client_id = self.settings.client_id
                method: AuthMethod = _secret_method(metadata) if secret else "none"
                plain = secret.get_secret_value() if secret else None
            elif route == "cimd":
                client_id, method, plain = client_metadata_url(self.issuer), "none", None
            else:
                stored = await self._registered(metadata)
                client_id = stored.client_id
                method = _auth_method(stored.token_endpoint_auth_method)
                plain = self._open_secret(stored)
            info = UpstreamClientInfo(
                issuer=metadata.issuer,
                client_id=client_id,
                authorization_endpoint=metadata.authorization_endpoint or "",
                token_endpoint=metadata.token_endpoint or "",
                revocation_endpoint=found.revocation_endpoint,
                resource=found.resource,
                scopes=found.scopes,
                registration=route,
                token_endpoint_auth_method=method,
                iss_parameter_supported=(
                    metadata.authorization_response_iss_parameter_supported is True
                ),
                client_secret=plain,
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

    async def _registered(self, metadata: ServerMetadata) -> UpstreamClient:
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

    def registration_request(self, metadata: ServerMetadata) -> dict[str, object]:
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

    async def _register(self, metadata: ServerMetadata) -> UpstreamClient:
        endpoint = metadata.registration_endpoint
        assert endpoint is not None
        body = self.registration_request(metadata)
        response, answer = await self._get_json(
            "POST", endpoint, "registration", json=body, headers={"Accept": "application/json"}
        )
        data = answer if isinstance(answer, dict) else None
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
        """POST a token request (OAuth 2.1 §3.2) and read the answer
        (:func:`bastion.oauth.token_response.read`)."""
        headers = {"Accept": "application/json"}
        client.authenticate(form, headers)
        response, body = await self._get_json(
            "POST", client.token_endpoint, what, data=form, headers=headers
        )
        try:
            answer = token_response.read(response.status_code, body)
        except MalformedTokenResponse as exc:
            if response.status_code >= 500:
                raise self._unavailable(
                    f"{what} at {client.token_endpoint} answered {response.status_code}"
                ) from None
            raise self._misconfigured(
                f"{what} at {client.token_endpoint} answered {response.status_code}, which "
                f"bastion cannot use: the answer {exc.reason}"
            ) from None
        if isinstance(answer, TokenResponse):
            return answer
        return await self._token_error(client, answer, response.status_code, what)

    async def _token_error(
        self, client: UpstreamClientInfo, error: TokenErrorResponse, status: int, what: str
    ) -> TokenResponse:
        said = f"{what} at {client.token_endpoint} answered {status} {error.error}" + (
            f": {error.error_description}" if error.error_description else ""
        )
        if error.error == "invalid_grant":
            raise ConnectionNeeded(
                f"upstream {self.name!r} no longer accepts the sign-in; sign in there again",
                detail=f"upstream {self.name!r}: {said}",
            )
        if status >= 500 or error.error == "temporarily_unavailable":
            raise self._unavailable(said)
        if error.error in ("invalid_client", "unauthorized_client") and (
            client.registration == "dcr"
        ):
            # The server may have forgotten bastion's registration: register again next time.
            async with self._db.transaction() as conn:
                await repo.delete_client(conn, self.name, client.issuer)
            self._client = None
        raise self._misconfigured(said)

    async def revoke(self, token: str, *, hint: str) -> bool:
        """Revoke ``token`` upstream (RFC 7009 §2.1; ``hint``: "access_token" or
        "refresh_token"): True when revoked, False when the server has no revocation endpoint
        or does not revoke that type of token (``unsupported_token_type``, §2.2.1)."""
        client = await self.client()
        endpoint = client.revocation_endpoint
        if endpoint is None:
            return False
        form = {"token": token, "token_type_hint": hint}
        headers = {"Accept": "application/json"}
        client.authenticate(form, headers)
        response, body = await self._get_json(
            "POST", endpoint, "revocation", data=form, headers=headers
        )
        if response.status_code == 200:
            return True
        error = TokenErrorResponse.parse(body)
        if error is not None and error.error == "unsupported_token_type":
            return False
        if response.status_code >= 500 or (
            error is not None and error.error == "temporarily_unavailable"
        ):
            raise self._unavailable(f"revocation at {endpoint} answered {response.status_code}")
        raise self._misconfigured(
            f"revocation at {endpoint} answered {response.status_code}"
            + (f" {error.error}" if error else "")
        )

    def _transport_failed(self, exc: httpx.HTTPError, what: str, url: str) -> Exception:
        if isinstance(exc, BlockedAddressError):
            return self._misconfigured(
                f"{what} at {url}: {exc.host} resolves to {exc.address}, which is not a public "
                "address (SSRF protection); for a server on loopback or a private network set "
                f"{self._setting('allow_private_addresses')} = true"
            )
        return self._unavailable(f"{what} at {url} failed: {type(exc).__name__}: {exc}")


def _server_key(url: str) -> str:
    """The canonical URL of an MCP endpoint, without query or fragment (MCP "Canonical Server
    URI")."""
    parts = urlsplit(url)
    return canonical(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))


def _secret_method(
    metadata: ServerMetadata, fallback: AuthMethod = "client_secret_basic"
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


def connect_url(issuer: str, upstream: str, elicitation: str | None = None) -> str:
    """The connect page of ``upstream``, for the elicitation ``elicitation`` if given (the URL
    the gateway puts in a URL elicitation: it carries no credential, MCP elicitation)."""
    url = f"{issuer.rstrip('/')}/connect/{upstream}"
    return f"{url}?{urlencode({'elicitation': elicitation})}" if elicitation else url


__all__ = [
    "CALLBACK_PATH",
    "CLIENT_METADATA_PATH",
    "RESERVED_NAMES",
    "UpstreamClientInfo",
    "UpstreamServer",
    "client_metadata_document",
    "client_metadata_url",
    "connect_url",
    "oauth_upstreams",
    "redirect_uri_for",
]
