"""Getting a client identity at an authorization server: MCP "Client Registration".

Priority (checklist C06):

1. pre-registered credentials configured for exactly this issuer (C03, C09);
2. a Client ID Metadata Document, when the authorization server advertises
   ``client_id_metadata_document_supported`` and this client's document URL is configured (the
   URL is the client_id, draft-ietf-oauth-client-id-metadata-document §3, C07);
3. a client registered earlier by DCR with this issuer, from the token store;
4. Dynamic Client Registration (RFC 7591 §3.1) when a ``registration_endpoint`` exists:
   ``application_type`` ``native``, loopback ``redirect_uris``, ``grant_types``
   authorization_code and refresh_token, the auth method the server supports (``none``
   preferred) (C08); the result is stored under the issuer;
5. otherwise :class:`~bastion.client.errors.NoRegistrationRoute`, naming what to configure.

Credentials are looked up by the issuer string and never used with another authorization server
(MCP client registration, "Authorization Server Binding").
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from bastion.client.errors import NoRegistrationRoute, RegistrationRejected
from bastion.client.models import AuthorizationServerMetadata, RegisteredClient
from bastion.client.settings import AuthMethod, ClientSettings, PreRegisteredClient
from bastion.client.storage import TokenStorage

SECRET_METHODS: tuple[AuthMethod, ...] = ("client_secret_basic", "client_secret_post")


def _pre_registered_method(
    client: PreRegisteredClient, metadata: AuthorizationServerMetadata
) -> AuthMethod:
    if client.token_endpoint_auth_method is not None:
        return client.token_endpoint_auth_method
    if client.private_key_pem is not None:
        return "private_key_jwt"
    if client.client_secret is not None:
        for method in SECRET_METHODS:
            if method in metadata.auth_methods:
                return method
        return "client_secret_basic"
    return "none"


def from_pre_registered(
    client: PreRegisteredClient, metadata: AuthorizationServerMetadata
) -> RegisteredClient:
    """The :class:`RegisteredClient` of a configured pre-registered client."""
    return RegisteredClient(
        issuer=client.issuer,
        client_id=client.client_id,
        source="pre-registered",
        token_endpoint_auth_method=_pre_registered_method(client, metadata),
        client_secret=client.client_secret.get_secret_value() if client.client_secret else None,
        private_key_pem=(
            client.private_key_pem.get_secret_value() if client.private_key_pem else None
        ),
        signing_alg=client.signing_alg,
        key_id=client.key_id,
        grant_type=client.grant_type,
        redirect_uris=(client.redirect_uri,) if client.redirect_uri else (),
    )


async def existing_client(
    settings: ClientSettings,
    storage: TokenStorage,
    metadata: AuthorizationServerMetadata,
    *,
    now: Callable[[], float] = time.time,
) -> RegisteredClient | None:
    """A client identity usable with this authorization server without registering now
    (steps 1 to 3 above), or None."""
    pre = settings.pre_registered_for(metadata.issuer)
    if pre is not None:
        return from_pre_registered(pre, metadata)
    if settings.client_metadata_url and metadata.client_id_metadata_document_supported:
        return RegisteredClient(
            issuer=metadata.issuer,
            client_id=settings.client_metadata_url,
            source="cimd",
            token_endpoint_auth_method="none",
        )
    stored = await storage.get_client(metadata.issuer)
    if stored is None or stored.issuer != metadata.issuer:
        return None
    expires = stored.client_secret_expires_at
    if expires and expires <= now():
        return None
    return stored


def client_for_refresh(
    settings: ClientSettings,
    stored: RegisteredClient | None,
    issuer: str,
    client_id: str,
    auth_method: AuthMethod,
) -> RegisteredClient | None:
    """The identity that obtained a token (same issuer, client_id and auth method), for
    refreshing it; None when it is no longer configured or stored."""
    pre = settings.pre_registered_for(issuer)
    if pre is not None and pre.client_id == client_id:
        return RegisteredClient(
            issuer=issuer,
            client_id=client_id,
            source="pre-registered",
            token_endpoint_auth_method=auth_method,
            client_secret=pre.client_secret.get_secret_value() if pre.client_secret else None,
            private_key_pem=pre.private_key_pem.get_secret_value() if pre.private_key_pem else None,
            signing_alg=pre.signing_alg,
            key_id=pre.key_id,
            grant_type=pre.grant_type,
        )
    if settings.client_metadata_url == client_id:
        return RegisteredClient(issuer=issuer, client_id=client_id, source="cimd")
    if stored is not None and stored.issuer == issuer and stored.client_id == client_id:
        return stored
    return None


def dcr_auth_method(metadata: AuthorizationServerMetadata) -> AuthMethod:
    """The auth method to ask for at registration: ``none`` (a native public client) unless the
    server lists methods without it, then the first secret method it lists."""
    listed = metadata.token_endpoint_auth_methods_supported
    if listed is None or "none" in listed:
        return "none"
    for method in SECRET_METHODS:
        if method in listed:
            return method
    return "none"


def registration_request(
    settings: ClientSettings, metadata: AuthorizationServerMetadata, redirect_uri: str
) -> dict[str, object]:
    """The RFC 7591 §2 metadata this client registers with (checklist C08)."""
    return {
        "client_name": settings.client_name,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": dcr_auth_method(metadata),
        "application_type": "native",
    }


def client_metadata_document(settings: ClientSettings) -> dict[str, object]:
    """The Client ID Metadata Document to host at ``settings.client_metadata_url``
    (draft-ietf-oauth-client-id-metadata-document §4; MCP: client_id equal to the document URL,
    client_name, redirect_uris; checklist C07). The loopback redirect URI has no port: the
    authorization server matches loopback ports loosely (RFC 8252 §7.3)."""
    if settings.client_metadata_url is None:
        raise ValueError("client_metadata_url is not configured")
    return {
        "client_id": settings.client_metadata_url,
        "client_name": settings.client_name,
        "redirect_uris": [f"http://{settings.redirect_host}{settings.redirect_path}"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    }


def no_route(settings: ClientSettings, metadata: AuthorizationServerMetadata) -> str:
    """Why no registration route applies, and what to configure."""
    if metadata.client_id_metadata_document_supported:
        cimd = "it supports Client ID Metadata Documents but no client_metadata_url is configured"
    else:
        cimd = "it does not advertise client_id_metadata_document_supported"
    others = [c.issuer for c in settings.pre_registered if c.issuer != metadata.issuer]
    elsewhere = (
        f" (pre-registered clients exist for {', '.join(others)}, but credentials are never "
        "used with another authorization server)"
        if others
        else ""
    )
    return (
        f"cannot obtain a client_id at authorization server {metadata.issuer}: no pre-registered "
        f"client is configured for this issuer{elsewhere}, {cimd}, and it has no "
        "registration_endpoint. Register a client with its operator (redirect URI "
        f"http://127.0.0.1{settings.redirect_path}, any port) and add it to pre_registered with "
        f"issuer {metadata.issuer!r}, or configure client_metadata_url if it supports CIMD"
    )


async def register(
    http: httpx.AsyncClient,
    settings: ClientSettings,
    storage: TokenStorage,
    metadata: AuthorizationServerMetadata,
    redirect_uri: str,
) -> RegisteredClient:
    """Dynamic Client Registration (RFC 7591 §3); the result is stored under the issuer."""
    if metadata.registration_endpoint is None:
        raise NoRegistrationRoute(no_route(settings, metadata))
    body = registration_request(settings, metadata, redirect_uri)
    try:
        response = await http.post(
            metadata.registration_endpoint, json=body, headers={"Accept": "application/json"}
        )
    except httpx.HTTPError as exc:
        raise RegistrationRejected(
            f"registration at {metadata.registration_endpoint} failed: {exc}"
        ) from exc
    data = _json_object(response)
    if response.status_code not in (200, 201):
        error = data.get("error") if data else None
        description = data.get("error_description") if data else None
        raise RegistrationRejected(
            f"{metadata.registration_endpoint} refused the registration with HTTP "
            f"{response.status_code}"
            + (f" {error}" if error else "")
            + (f": {description}" if description else "")
            + (
                " (an OpenID Connect server may refuse native loopback redirect URIs; "
                "pre-register a client instead)"
                if error == "invalid_redirect_uri"
                else ""
            )
        )
    if data is None or not isinstance(data.get("client_id"), str) or not data["client_id"]:
        raise RegistrationRejected(
            f"{metadata.registration_endpoint} answered without a client_id (RFC 7591 §3.2.1)"
        )
    method = data.get("token_endpoint_auth_method") or body["token_endpoint_auth_method"]
    if method not in ("none", *SECRET_METHODS):
        raise RegistrationRejected(
            f"{metadata.registration_endpoint} registered the client with auth method {method!r}, "
            "which a native client cannot use; pre-register a client instead"
        )
    secret = data.get("client_secret") if isinstance(data.get("client_secret"), str) else None
    if method in SECRET_METHODS and not secret:
        raise RegistrationRejected(
            f"{metadata.registration_endpoint} registered method {method} but sent no client_secret"
        )
    expires = data.get("client_secret_expires_at")
    uris = data.get("redirect_uris")
    client = RegisteredClient(
        issuer=metadata.issuer,
        client_id=data["client_id"],
        source="dcr",
        token_endpoint_auth_method=method,
        client_secret=secret if method != "none" else None,
        redirect_uris=tuple(uris) if isinstance(uris, list) else (redirect_uri,),
        client_secret_expires_at=expires if isinstance(expires, int) else None,
    )
    await storage.set_client(metadata.issuer, client)
    return client


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = json.loads(response.content)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


__all__ = [
    "client_for_refresh",
    "client_metadata_document",
    "dcr_auth_method",
    "existing_client",
    "from_pre_registered",
    "no_route",
    "register",
    "registration_request",
]
