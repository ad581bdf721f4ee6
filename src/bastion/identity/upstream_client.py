"""HTTP towards one upstream identity provider: discovery, JWKS, token and user-info requests.

Every request goes through the SSRF-guarded transport of ``bastion.net.ssrf`` (the discovery
document names URLs bastion then fetches), unless the provider has ``allow_private_addresses``
(a development provider on loopback, or one on the operator's own network). Redirects are never
followed, bodies are bounded, and each failure becomes a :mod:`bastion.identity.errors`
exception that names the provider, the URL and the setting to check.

The discovery document (OpenID Connect Discovery 1.0 §4) and the JWKS are cached for an hour; the
JWKS is fetched again when an id_token names a key it does not hold (a key rotation), at most
once per ``JWKS_REFETCH_INTERVAL`` seconds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit

import httpx

from bastion.identity.errors import (
    UpstreamInvalidResponse,
    UpstreamRefused,
    UpstreamUnreachable,
)
from bastion.identity.id_token import ALGORITHMS
from bastion.identity.providers import ENTRA_TENANT_PLACEHOLDER, ProviderSpec
from bastion.logs import get_logger
from bastion.net.ssrf import BlockedAddressError, guarded_transport
from bastion.oauth import jose, token_response
from bastion.oauth.endpoint_url import EndpointUrlPolicy
from bastion.oauth.metadata import MetadataError
from bastion.oauth.redirect_uri import is_loopback_host
from bastion.oauth.server_metadata import ServerMetadata
from bastion.oauth.token_response import MalformedTokenResponse, TokenErrorResponse, TokenResponse

log = get_logger("bastion.federation")

MAX_BODY_BYTES = 1024 * 1024
METADATA_TTL = 3600.0
JWKS_TTL = 3600.0
JWKS_REFETCH_INTERVAL = 10.0
USER_AGENT = "bastion-federation"
_ENTRA_ISSUER = re.compile(
    r"^https://[^/]+/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\{tenantid\})"
    r"/v2\.0$"
)
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class Endpoints:
    """Where a provider's endpoints are, from discovery and configuration."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str | None = None
    jwks_uri: str | None = None
    id_token_algorithms: tuple[str, ...] = ("RS256",)
    iss_parameter_supported: bool = False
    code_challenge_methods: tuple[str, ...] | None = None
    scopes_supported: tuple[str, ...] | None = None


def basic_credentials(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: form-encode id and secret, then HTTP Basic (RFC 7617)."""
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


def _malformed(error: MetadataError) -> str:
    """Federation's words for a malformed discovery member (Discovery 1.0 §3, RFC 8414 §2)."""
    if error.problem == "not_a_string_list":
        return f"{error.field} is not a list of strings: {_short(error.value)}"
    if error.problem == "not_a_url":
        return f"{error.field} is not a URL ({error.reason}): {_short(error.value)}"
    return f"{error.field} is not a URL: {_short(error.value)}"


def _short(value: object, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


class ProviderClient:
    """The HTTP side of one provider; made once per app (lifespan) and closed with it."""

    def __init__(
        self, spec: ProviderSpec, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.spec = spec
        self._http = httpx.AsyncClient(
            transport=transport
            or guarded_transport(allow_private=spec.allow_private_addresses, timeout=spec.timeout),
            timeout=spec.timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
        )
        self._endpoints: Endpoints | None = None
        self._endpoints_at = 0.0
        self._keys = jose.UsableKeys()
        self._keys_at: float | None = None
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- requests ------------------------------------------------------------------------------

    def _check_url(self, url: str, what: str) -> None:
        """The endpoint URL rule (:mod:`bastion.oauth.endpoint_url`): https, or http on
        loopback for a provider with ``allow_private_addresses``."""
        policy = EndpointUrlPolicy(
            http="loopback" if self.spec.allow_private_addresses else "never"
        )
        problem = policy.problem(url)
        if problem in ("scheme", "http"):
            parts = urlsplit(url)
            loopback = parts.scheme == "http" and is_loopback_host(parts.hostname)
            raise UpstreamInvalidResponse(
                f"bastion will not use {self.spec.label}'s {what}",
                detail=f"{self.spec.describe()}: {what} {url!r} is not an https URL",
                hint=f"For a development provider on loopback over http, set "
                f"upstreams[{self.spec.name}].allow_private_addresses = true."
                if loopback
                else "The provider's endpoints must use https.",
            )
        if problem is not None:
            raise UpstreamInvalidResponse(
                f"bastion will not use {self.spec.label}'s {what}",
                detail=f"{self.spec.describe()}: {what} {url!r} is not a valid URL ({problem})",
            )

    async def request(
        self,
        method: str,
        url: str,
        what: str,
        *,
        headers: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
    ) -> tuple[httpx.Response, bytes]:
        """Send a request; the response and its body (bounded). Network failures raise
        :class:`UpstreamUnreachable` naming the provider and the URL."""
        self._check_url(url, what)
        try:
            async with self._http.stream(method, url, headers=headers, data=data) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        raise UpstreamInvalidResponse(
                            f"{self.spec.label} sent an answer that is too large",
                            detail=f"{what} {url}: more than {MAX_BODY_BYTES} bytes",
                        )
        except BlockedAddressError as exc:
            raise UpstreamUnreachable(
                f"bastion will not connect to {self.spec.label}: its address is not public",
                detail=f"{self.spec.describe()}: {what} {url}: {exc}",
                hint=f"For a provider on loopback or a private network, set "
                f"upstreams[{self.spec.name}].allow_private_addresses = true.",
            ) from None
        except httpx.TimeoutException as exc:
            raise UpstreamUnreachable(
                f"{self.spec.label} did not answer in time",
                detail=f"{self.spec.describe()}: {what} {url}: timeout ({exc})",
                hint=f"Check that this server can reach {urlsplit(url).netloc}, or raise "
                f"upstreams[{self.spec.name}].timeout.",
            ) from None
        except httpx.HTTPError as exc:
            raise UpstreamUnreachable(
                f"bastion could not reach {self.spec.label}",
                detail=f"{self.spec.describe()}: {what} {url}: {type(exc).__name__}: {exc}",
                hint=f"Check that this server can reach {urlsplit(url).netloc} and the "
                f"provider's address in upstreams[{self.spec.name}].",
            ) from None
        return response, bytes(body)

    def json_body(self, response: httpx.Response, body: bytes, url: str, what: str) -> object:
        """The parsed JSON of a response body; UpstreamInvalidResponse when it is not JSON."""
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise UpstreamInvalidResponse(
                f"{self.spec.label} answered something that is not JSON",
                detail=f"{self.spec.describe()}: {what} {url} answered {response.status_code} "
                f"{response.headers.get('content-type', '')!r}, not JSON: {_short(body)}",
            ) from None

    async def get_json(self, url: str, what: str, headers: dict[str, str] | None = None) -> object:
        """GET a JSON document that must answer 200."""
        response, body = await self.request("GET", url, what, headers=headers or {})
        if response.status_code != 200:
            raise UpstreamInvalidResponse(
                f"{self.spec.label} could not provide its {what}",
                detail=f"{self.spec.describe()}: GET {url} answered {response.status_code}: "
                f"{_short(body)}",
                hint=f"Check upstreams[{self.spec.name}] (the URL is derived from it).",
            )
        return self.json_body(response, body, url, what)

    # -- discovery -----------------------------------------------------------------------------

    async def endpoints(self) -> Endpoints:
        """The provider's endpoints: configured (oauth2, github) or discovered (OpenID Connect)."""
        spec = self.spec
        if spec.protocol != "oidc":
            return Endpoints(
                issuer=spec.issuer,
                authorization_endpoint=spec.authorization_endpoint or "",
                token_endpoint=spec.token_endpoint or "",
                userinfo_endpoint=spec.userinfo_endpoint,
            )
        now = time.monotonic()
        if self._endpoints is not None and now - self._endpoints_at < METADATA_TTL:
            return self._endpoints
        async with self._lock:
            if self._endpoints is None or time.monotonic() - self._endpoints_at >= METADATA_TTL:
                self._endpoints = await self.discover()
                self._endpoints_at = time.monotonic()
            return self._endpoints

    async def discover(self) -> Endpoints:
        """Fetch and check the OpenID Connect discovery document (Discovery 1.0 §4)."""
        spec = self.spec
        url = spec.discovery_url or ""
        doc = await self.get_json(url, "discovery document")
        where = f"{spec.describe()}: discovery document {url}"
        if not isinstance(doc, dict):
            raise UpstreamInvalidResponse(
                f"{spec.label}'s discovery document is not valid",
                detail=f"{where} is not a JSON object",
            )
        issuer = self._check_issuer(doc.get("issuer"), where)
        try:
            metadata = ServerMetadata.parse(doc)
        except MetadataError as exc:
            raise UpstreamInvalidResponse(
                f"{spec.label}'s discovery document is not valid",
                detail=f"{where}: {_malformed(exc)}",
            ) from None

        def url_of(name: str, found: str | None) -> str | None:
            if found is not None:
                self._check_url(found, name)
            return found

        def required(name: str, configured: str | None, found: str | None) -> str:
            value = configured or url_of(name, found)
            if value is None:
                raise UpstreamInvalidResponse(
                    f"{spec.label}'s discovery document is not valid",
                    detail=f"{where} has no {name}",
                )
            return value

        authorization = required(
            "authorization_endpoint", spec.authorization_endpoint, metadata.authorization_endpoint
        )
        token = required("token_endpoint", spec.token_endpoint, metadata.token_endpoint)
        jwks = required("jwks_uri", spec.jwks_uri, metadata.jwks_uri)
        userinfo = spec.userinfo_endpoint or url_of("userinfo_endpoint", metadata.userinfo_endpoint)
        response_types = metadata.response_types_supported
        if response_types is not None and "code" not in response_types:
            raise UpstreamInvalidResponse(
                f"{spec.label} does not offer the authorization code flow",
                detail=f"{where}: response_types_supported {list(response_types)!r} lacks code",
            )
        challenge_methods = metadata.code_challenge_methods_supported
        if challenge_methods is not None and not metadata.supports_s256:
            raise UpstreamInvalidResponse(
                f"{spec.label} does not support PKCE with S256",
                detail=f"{where}: code_challenge_methods_supported is {list(challenge_methods)!r}",
                hint="Enable PKCE (S256) for bastion's client at the provider.",
            )
        algs = metadata.id_token_signing_alg_values_supported
        allowed = tuple(a for a in algs or ("RS256",) if a in ALGORITHMS)
        if not allowed:
            raise UpstreamInvalidResponse(
                f"{spec.label} signs ID tokens in a way bastion does not accept",
                detail=f"{where}: id_token_signing_alg_values_supported "
                f"{None if algs is None else list(algs)!r} has no "
                f"asymmetric algorithm ({', '.join(ALGORITHMS)})",
                hint="Configure the provider to sign ID tokens with RS256 or ES256.",
            )
        return Endpoints(
            issuer=spec.issuer if ENTRA_TENANT_PLACEHOLDER in spec.issuer else issuer,
            authorization_endpoint=authorization,
            token_endpoint=token,
            userinfo_endpoint=userinfo,
            jwks_uri=jwks,
            id_token_algorithms=allowed,
            iss_parameter_supported=metadata.authorization_response_iss_parameter_supported is True,
            code_challenge_methods=challenge_methods,
            scopes_supported=metadata.scopes_supported,
        )

    def _check_issuer(self, issuer: object, where: str) -> str:
        """Discovery 1.0 §4.3: the document's issuer is the one the URL was built from."""
        spec = self.spec
        if spec.entra_issuer:
            # Entra names the tenant by id in its documents even when configured by domain name.
            found = _ENTRA_ISSUER.match(issuer) if isinstance(issuer, str) else None
            configured = spec.issuer
            tenant = configured.split("/")[3] if configured.count("/") >= 4 else ""
            shared = ENTRA_TENANT_PLACEHOLDER in configured
            ok = found is not None and (
                (found.group(1) == ENTRA_TENANT_PLACEHOLDER) == shared
                and (not _GUID.match(tenant) or found.group(1) == tenant)
                and urlsplit(str(issuer)).netloc == urlsplit(configured).netloc
            )
        else:
            ok = issuer == spec.issuer
        if not ok or not isinstance(issuer, str):
            raise UpstreamInvalidResponse(
                f"{spec.label}'s discovery document names another issuer",
                detail=f"{where} has issuer {issuer!r}; expected {spec.issuer!r}",
                hint=f"Set upstreams[{spec.name}] to the provider's exact issuer (including any "
                "trailing slash).",
            )
        return issuer

    # -- keys ----------------------------------------------------------------------------------

    async def keys(self, *, refresh: bool = False) -> jose.UsableKeys:
        """The provider's id_token signature keys (cached; ``refresh`` after an unknown kid)."""
        now = time.monotonic()
        fresh = self._keys_at is not None and now - self._keys_at < JWKS_TTL
        may_refetch = self._keys_at is None or now - self._keys_at >= JWKS_REFETCH_INTERVAL
        if fresh and not (refresh and may_refetch):
            return self._keys
        jwks_uri = (await self.endpoints()).jwks_uri or ""
        doc = await self.get_json(jwks_uri, "JWKS (signing keys)")
        try:
            found = jose.usable_keys(doc)
        except jose.NotAJwkSet:
            found = jose.UsableKeys()
        if not found:
            raise UpstreamInvalidResponse(
                f"{self.spec.label} publishes no usable signing key",
                detail=f"{self.spec.describe()}: JWKS {jwks_uri} has no RSA (2048+), "
                "EC, Ed25519 or Ed448 signature key",
            )
        self._keys, self._keys_at = found, time.monotonic()
        return found

    # -- token and user-info requests ----------------------------------------------------------

    def _client_auth(self, form: dict[str, str]) -> dict[str, str]:
        """Client authentication at the token endpoint (RFC 6749 §2.3.1)."""
        spec = self.spec
        headers: dict[str, str] = {}
        if spec.auth_method == "client_secret_basic" and spec.client_secret is not None:
            headers["Authorization"] = basic_credentials(spec.client_id, spec.client_secret)
        else:
            form["client_id"] = spec.client_id
            if spec.auth_method == "client_secret_post" and spec.client_secret is not None:
                form["client_secret"] = spec.client_secret
        return headers

    async def token_request(self, form: dict[str, str]) -> tuple[httpx.Response, object]:
        """POST to the token endpoint with client authentication; the response and its parsed
        body (JSON, or a form-encoded body as GitHub sends without ``Accept``)."""
        endpoints = await self.endpoints()
        body = dict(form)
        headers = self._client_auth(body)
        headers["Accept"] = "application/json"
        response, raw = await self.request(
            "POST", endpoints.token_endpoint, "token endpoint", data=body, headers=headers
        )
        media = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if media == "application/x-www-form-urlencoded":
            return response, dict(parse_qsl(raw.decode("utf-8", "replace")))
        try:
            return response, json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return response, None

    async def exchange_code(self, code: str, verifier: str, redirect_uri: str) -> TokenResponse:
        """Redeem the authorization code (RFC 6749 §4.1.3, RFC 7636 §4.5); the token response
        as :func:`bastion.oauth.token_response.read` reads it."""
        spec = self.spec
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            **spec.token_params,
        }
        response, data = await self.token_request(form)
        where = f"{spec.describe()}: token endpoint answered {response.status_code}"
        try:
            answer = token_response.read(response.status_code, data)
        except MalformedTokenResponse as exc:
            if exc.problem == "not_a_success" or exc.problem == "not_an_object":
                raise UpstreamInvalidResponse(
                    f"{spec.label} answered the code exchange with an error",
                    detail=f"{where}: {_short(data)}",
                ) from None
            raise UpstreamInvalidResponse(
                f"{spec.label}'s token response is not valid",
                detail=f"{where}: no access_token, or token_type "
                f"{_member(data, 'token_type')!r} is not Bearer"
                if exc.problem != "bad_scope"
                else f"{where}: scope is not a string (RFC 6749 §3.3): {_short(exc.value)}",
            ) from None
        if isinstance(answer, TokenErrorResponse):
            raise UpstreamRefused(
                f"{spec.label} refused to complete the sign-in ({answer.error})",
                error=answer.error,
                detail=f"{where}: {answer.error}: {_short(answer.error_description)}",
                hint=_token_error_hint(spec, answer.error, redirect_uri),
            )
        return answer

    async def userinfo(self, access_token: str) -> dict[str, object]:
        """OpenID Connect Core 1.0 §5.3 (or a plain OAuth 2.0 user-info endpoint)."""
        endpoints = await self.endpoints()
        url = endpoints.userinfo_endpoint
        if url is None:
            raise UpstreamInvalidResponse(
                f"{self.spec.label} has no user-info endpoint",
                detail=f"{self.spec.describe()}: no userinfo_endpoint configured or discovered",
                hint=f"Set upstreams[{self.spec.name}].use_userinfo = false.",
            )
        headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        response, body = await self.request("GET", url, "user-info endpoint", headers=headers)
        media = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if response.status_code != 200:
            raise UpstreamInvalidResponse(
                f"{self.spec.label} refused to tell who signed in",
                detail=f"{self.spec.describe()}: GET {url} answered {response.status_code}: "
                f"{response.headers.get('www-authenticate', '')} {_short(body)}",
            )
        if media == "application/jwt":
            raise UpstreamInvalidResponse(
                f"{self.spec.label} sends signed user-info, which bastion does not read",
                detail=f"{self.spec.describe()}: {url} answered application/jwt",
                hint="Configure the client at the provider for plain JSON user-info responses, "
                f"or set upstreams[{self.spec.name}].use_userinfo = false.",
            )
        data = self.json_body(response, body, url, "user-info")
        if not isinstance(data, dict):
            raise UpstreamInvalidResponse(
                f"{self.spec.label}'s user-info is not valid",
                detail=f"{self.spec.describe()}: {url} answered {_short(data)}",
            )
        return data


def _member(data: object, name: str) -> object:
    return data.get(name) if isinstance(data, dict) else None


def _token_error_hint(spec: ProviderSpec, error: str, redirect_uri: str) -> str:
    key = f"upstreams[{spec.name}]"
    if error in ("invalid_client", "unauthorized_client", "incorrect_client_credentials"):
        return (
            f"Check {key}.client_id, client_secret and token_endpoint_auth_method "
            f"({spec.auth_method}) against the client registered at the provider."
        )
    if error in ("redirect_uri_mismatch", "invalid_grant", "bad_verification_code"):
        return (
            f"The provider must have exactly {redirect_uri} registered as a redirect URI; "
            "if it has, start the sign-in again (codes are single-use and short-lived)."
        )
    return f"See the provider's log for this client ({spec.client_id})."


__all__ = ["Endpoints", "ProviderClient", "basic_credentials"]
