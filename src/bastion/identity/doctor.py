"""``bastion doctor --upstream NAME``: is a configured identity provider set up right?

Each check says ok, warn (cannot tell for sure, or works but not as recommended) or fail, with the
value seen and what to change. In order: the redirect URI to register; OpenID Connect discovery
(reachable, valid, ``issuer`` identical to the configured one: Discovery 1.0 §4.3); PKCE S256
offered; the JWKS reachable with usable keys; the user-info endpoint when it is to be read; the
authorization endpoint's reaction to bastion's request (an unregistered redirect URI or an
unknown client is refused there by most providers, before any log-in); and the client
credentials, by redeeming a made-up code: a provider that authenticates the client first
answers ``invalid_grant`` for good credentials and ``invalid_client`` for bad ones (RFC 6749
§5.2). Nothing is created at the provider.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx

from bastion.config import Settings
from bastion.identity.errors import FederationError
from bastion.identity.federation import add_query
from bastion.identity.providers import ProviderSpec, redirect_uri, resolve
from bastion.identity.upstream_client import Endpoints, ProviderClient
from bastion.oauth import pkce

Status = Literal["ok", "warn", "fail"]
_BAD_CLIENT = ("invalid_client", "unauthorized_client", "incorrect_client_credentials")
_BAD_CODE = ("invalid_grant", "bad_verification_code")


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    status: Status
    detail: str


def _failed(name: str, exc: FederationError) -> Check:
    return Check(name, "fail", f"{exc.detail}. {exc.hint}".strip().rstrip("."))


async def _discovery(client: ProviderClient, found: list[Check]) -> Endpoints | None:
    spec = client.spec
    if spec.protocol != "oidc":
        endpoints = await client.endpoints()
        found.append(
            Check(
                "endpoints",
                "ok",
                f"{spec.kind} uses configured endpoints: authorization "
                f"{endpoints.authorization_endpoint}, token {endpoints.token_endpoint}",
            )
        )
        return endpoints
    try:
        endpoints = await client.discover()
    except FederationError as exc:
        found.append(_failed("discovery", exc))
        return None
    found.append(Check("discovery", "ok", f"{spec.discovery_url} is a valid document"))
    found.append(Check("issuer", "ok", f"the document names {spec.issuer!r}, as configured"))
    if endpoints.code_challenge_methods is None:
        found.append(
            Check(
                "PKCE",
                "warn",
                "code_challenge_methods_supported is not advertised; bastion sends S256 anyway "
                "(check the provider supports it)",
            )
        )
    else:
        found.append(Check("PKCE", "ok", "S256 is supported"))
    try:
        keys = await client.keys()
        found.append(
            Check("JWKS", "ok", f"{len(keys)} usable signing key(s) at {endpoints.jwks_uri}")
        )
    except FederationError as exc:
        found.append(_failed("JWKS", exc))
    if spec.use_userinfo and endpoints.userinfo_endpoint is None:
        found.append(
            Check(
                "user-info",
                "warn",
                f"no userinfo_endpoint; claims come from the ID token only (set "
                f"upstreams[{spec.name}].use_userinfo = false to silence this)",
            )
        )
    missing = (
        [s for s in spec.scopes if s not in endpoints.scopes_supported]
        if endpoints.scopes_supported is not None
        else []
    )
    if missing:
        found.append(
            Check(
                "scopes",
                "warn",
                f"not in scopes_supported: {' '.join(missing)} (the provider may refuse them)",
            )
        )
    return endpoints


async def _authorization(client: ProviderClient, endpoints: Endpoints, callback: str) -> Check:
    spec = client.spec
    params = {
        "response_type": "code",
        "client_id": spec.client_id,
        "redirect_uri": callback,
        "state": secrets.token_urlsafe(16),
        "code_challenge": pkce.s256(pkce.new_verifier()),
        "code_challenge_method": "S256",
        **({"scope": " ".join(spec.scopes)} if spec.scopes else {}),
        **({"nonce": secrets.token_urlsafe(16)} if spec.protocol == "oidc" else {}),
        **spec.authorization_params,
    }
    url = add_query(endpoints.authorization_endpoint, params)
    try:
        response, _ = await client.request("GET", url, "authorization endpoint")
    except FederationError as exc:
        return _failed("authorization request", exc)
    status = response.status_code
    location = urljoin(url, response.headers.get("location", ""))
    if status in (301, 302, 303, 307, 308):
        if location.startswith(callback):
            answer = dict(parse_qsl(urlsplit(location).query))
            if "error" in answer:
                return Check(
                    "authorization request",
                    "fail",
                    f"the provider refused at once: {answer['error']}: "
                    f"{answer.get('error_description', '')}".strip(),
                )
        return Check(
            "authorization request",
            "ok",
            f"accepted: the browser would continue at {urlsplit(location).netloc}"
            f"{urlsplit(location).path}",
        )
    if status == 200:
        return Check(
            "authorization request",
            "warn",
            "the provider answered with a page (its log-in page, or an error page): open this "
            f"URL in a browser to see which: {url}",
        )
    return Check(
        "authorization request",
        "fail",
        f"refused with HTTP {status}: most likely {callback} is not a registered redirect URI, "
        f"or client_id {spec.client_id!r} is wrong",
    )


async def _credentials(client: ProviderClient, callback: str) -> Check:
    spec = client.spec
    if spec.auth_method == "none":
        return Check("client credentials", "ok", "public client: no secret to check")
    form = {
        "grant_type": "authorization_code",
        "code": "bastion-doctor-" + secrets.token_urlsafe(12),
        "redirect_uri": callback,
        "code_verifier": pkce.new_verifier(),
        **spec.token_params,
    }
    try:
        response, body = await client.token_request(form)
    except FederationError as exc:
        return _failed("client credentials", exc)
    error = body.get("error") if isinstance(body, dict) else None
    if error in _BAD_CLIENT or response.status_code == 401:
        return Check(
            "client credentials",
            "fail",
            f"the token endpoint refused bastion's client ({error or response.status_code}): "
            f"check upstreams[{spec.name}].client_id, client_secret and "
            f"token_endpoint_auth_method ({spec.auth_method})",
        )
    if error in _BAD_CODE:
        return Check(
            "client credentials",
            "ok",
            f"accepted ({spec.auth_method}): the provider refused only the made-up code ({error})",
        )
    return Check(
        "client credentials",
        "warn",
        f"cannot tell: the token endpoint answered {response.status_code} {error or ''}".strip(),
    )


async def check_upstream(
    settings: Settings, name: str, *, transport: httpx.AsyncBaseTransport | None = None
) -> list[Check]:
    """Run every check for the provider ``name`` of ``settings``."""
    cfg = next((u for u in settings.upstreams if u.name == name), None)
    if cfg is None:
        known = ", ".join(u.name for u in settings.upstreams) or "none"
        return [Check("configuration", "fail", f"no upstream named {name!r} (configured: {known})")]
    spec: ProviderSpec = resolve(cfg)
    callback = redirect_uri(settings.issuer, name)
    found = [
        Check("configuration", "ok", f"{spec.kind}, client_id {spec.client_id!r}"),
        Check("redirect URI", "ok", f"register exactly {callback} at the provider"),
    ]
    client = ProviderClient(spec, transport=transport)
    try:
        endpoints = await _discovery(client, found)
        if endpoints is not None:
            found.append(await _authorization(client, endpoints, callback))
            found.append(await _credentials(client, callback))
            if spec.protocol == "github":
                try:
                    await client.get_json(f"{spec.api_url}/", "REST API root")
                    found.append(Check("REST API", "ok", f"{spec.api_url} answers"))
                except FederationError as exc:
                    found.append(_failed("REST API", exc))
    finally:
        await client.aclose()
    return found


__all__ = ["Check", "Status", "check_upstream"]
