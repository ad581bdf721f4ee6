"""The authorization endpoint (OAuth 2.1 §4.1.1, RFC 6749 §3.1).

A chain of checks, in the order the RFCs dictate: first the client and its redirect URI (failures
are shown on a page, never redirected: RFC 6749 §4.1.2.1, no open redirects); then everything else
(failures go back to the client as an error response with ``state`` and ``iss``, RFC 9207 §2).
A valid request is stored and the browser continues at the interaction (log-in, consent) pages.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bastion.authserver.context import AuthServer, server
from bastion.authserver.errors import (
    UNKNOWN_APPLICATION,
    error_page,
    redirect_error,
    too_many_page,
)
from bastion.authserver.http import NO_STORE, query_params, read_form, single
from bastion.authserver.quotas import requester
from bastion.oauth import pkce
from bastion.oauth import scopes as scope_syntax
from bastion.oauth.errors import (
    InvalidClient,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    OAuthError,
    TooManyRequests,
    UnauthorizedClient,
    UnsupportedResponseType,
)
from bastion.oauth.redirect_uri import is_loopback_uri
from bastion.oauth.resource import canonical, check_indicator
from bastion.store.clients import Client
from bastion.store.grant_records import AuthorizationRequest, RequestRecord

REQUEST_TTL = 900
# RFC 9449 §10: dpop_jkt is a JWK SHA-256 thumbprint (RFC 7638), base64url without padding.
THUMBPRINT = re.compile(r"[A-Za-z0-9_-]{43}")


def may_redirect_errors(client: Client, redirect_uri: str) -> bool:
    """Whether an error found before any user interaction may be sent to ``redirect_uri``.

    RFC 9700 §4.11.2: redirecting errors to any address a client registered for itself makes
    the authorization server an open redirector (a link on this server's domain that lands on
    the attacker's page). Errors of clients an operator made are redirected as RFC 6749 §4.1.2.1
    says; for a client that registered itself only to loopback or private-use URIs (which stay
    on the user's device), and otherwise shown on an error page."""
    if client.operator_approved or client.origin == "preregistered":
        return True
    scheme = urlsplit(redirect_uri).scheme.lower()
    return is_loopback_uri(redirect_uri) or scheme not in ("http", "https")


def select_resource(bastion: AuthServer, values: Sequence[str]) -> str:
    """The audience of the tokens (RFC 8707 §2): one configured resource, compared canonically."""
    if len(values) > 1:
        raise InvalidTarget("send one resource per request; each token has a single audience")
    if not values:
        if bastion.settings.default_resource:
            return bastion.settings.default_resource
        raise InvalidTarget(
            "the resource parameter is required: send the canonical URI of the MCP server "
            "(RFC 8707)"
        )
    known = {r.uri for r in bastion.settings.resources}
    if bastion.settings.default_resource:
        known.add(bastion.settings.default_resource)
    if values[0] in known:
        return values[0]  # already canonical (the common case): nothing to parse
    wanted = canonical(check_indicator(values[0]))
    if wanted not in known:
        raise InvalidTarget(f"resource {values[0]} is not served by this authorization server")
    return wanted


def known_scopes(bastion: AuthServer, requested: Iterable[str], resource: str | None) -> set[str]:
    """The scopes asked for, the registry's old names renamed when about the registry
    (``resource`` None: any resource); invalid_scope (RFC 6749 §5.2) naming those the AS does
    not know."""
    asked = set(bastion.settings.upgrade_scopes(requested, resource))
    unknown = asked - set(bastion.settings.all_scopes)
    if unknown:
        raise InvalidScope(f"unknown scope: {' '.join(sorted(unknown))}")
    return asked


def select_scope(
    bastion: AuthServer, client: Client, requested: str | None, resource: str | None = None
) -> str:
    """The granted scope: what was asked, if the AS knows it and the client may ask for it.

    With ``resource`` (a user's authorization request, shown on the consent page), a client that
    registered itself (DCR or CIMD) may also ask for the scopes that resource lists: MCP step-up
    authorization (RFC 6750 §3.1, MCP "Step-Up Authorization Flow") re-authorizes with scopes the
    server challenges for later, beyond what the client registered with its first challenge.
    Pre-registered clients stay within the scope their operator gave them. The registry's old
    scope names, asked for or registered, are granted under their new names (G03)."""
    asked = known_scopes(bastion, scope_syntax.parse(requested), resource)
    upgrade = bastion.settings.upgrade_scopes
    allowed_for_client = set(upgrade(scope_syntax.parse(client.metadata.scope), resource))
    if not asked:
        return scope_syntax.join(allowed_for_client)
    if allowed_for_client and resource is not None and client.origin != "preregistered":
        allowed_for_client |= {
            s for r in bastion.settings.resources if r.uri == resource for s in r.scopes
        }
    if allowed_for_client and not asked <= allowed_for_client:
        extra = " ".join(sorted(asked - allowed_for_client))
        raise InvalidScope(f"client {client.client_id} is not registered for scope {extra}")
    return scope_syntax.join(asked)


def validate(
    bastion: AuthServer, client: Client, params: dict[str, list[str]], redirect_uri: str
) -> AuthorizationRequest:
    """Check everything after the client and redirect URI; raise the OAuth error to redirect."""
    response_type = single(params, "response_type")
    if response_type is None:
        raise InvalidRequest("response_type is required")
    if response_type != "code":
        raise UnsupportedResponseType(f"response_type {response_type} is not supported; use code")
    if "authorization_code" not in client.metadata.grant_types:
        raise UnauthorizedClient("this client is not registered for the authorization_code grant")
    challenge = pkce.check_challenge(
        single(params, "code_challenge"), single(params, "code_challenge_method")
    )
    for unsupported in ("request", "request_uri"):
        if unsupported in params:
            raise InvalidRequest(f"the {unsupported} parameter is not supported")
    scope = single(params, "scope")
    resource = select_resource(bastion, params.get("resource", []))
    dpop_jkt = single(params, "dpop_jkt")
    if dpop_jkt is not None and not THUMBPRINT.fullmatch(dpop_jkt):
        raise InvalidRequest(
            "dpop_jkt must be the base64url SHA-256 JWK thumbprint of the DPoP key "
            "(RFC 9449 section 10)"
        )
    return AuthorizationRequest(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        redirect_uri_sent=single(params, "redirect_uri") is not None,
        scope=select_scope(bastion, client, scope, resource),
        resource=resource,
        state=single(params, "state"),
        code_challenge=challenge,
        dpop_jkt=dpop_jkt,
    )


async def authorize(request: Request) -> Response:
    """GET or POST /authorize."""
    bastion = server(request)
    try:
        if request.method == "POST":
            params = await read_form(request, bastion.settings.max_body_bytes)
        else:
            params = query_params(request)
    except OAuthError as exc:
        return error_page(request, "Invalid authorization request", exc.description)
    client_id = single(params, "client_id")
    if not client_id:
        return error_page(request, "Invalid authorization request", "The request has no client_id.")
    who = requester(request.scope)
    try:
        client = await bastion.clients.find(client_id, requester=who)
    except InvalidClient as exc:
        return error_page(request, "Unknown application", UNKNOWN_APPLICATION, hint=exc.description)
    except TooManyRequests as exc:
        return too_many_page(request, exc)
    redirect_uri = single(params, "redirect_uri")
    registered = client.metadata.redirect_uris
    if redirect_uri is None and len(registered) == 1:
        redirect_uri = registered[0]
    if redirect_uri is None:
        return error_page(
            request, "Invalid authorization request", "The request has no redirect_uri."
        )
    if not bastion.clients.redirect_allowed(client, redirect_uri):
        return error_page(
            request,
            "Invalid redirect URI",
            f"The redirect URI {redirect_uri} is not registered for {client.name}. The request "
            "was stopped so that the authorization cannot be sent to an unknown address.",
        )
    try:
        valid = validate(bastion, client, params, redirect_uri)
    except OAuthError as exc:
        if not may_redirect_errors(client, redirect_uri):
            return error_page(
                request,
                "Invalid authorization request",
                f"{exc.description} ({exc.error}). The error was not sent to "
                f"{urlsplit(redirect_uri).hostname}: that address was chosen by the application "
                "itself, not by an administrator.",
            )
        return redirect_error(exc, redirect_uri, single(params, "state"), bastion.issuer)
    request_id = secrets.token_urlsafe(24)
    now = bastion.clock()
    try:
        async with bastion.db.transaction() as conn:
            pending = RequestRecord(
                **asdict(valid), id=request_id, created_at=now, expires_at=now + REQUEST_TTL
            )
            await bastion.quotas.save_pending_authorization(conn, who, now, pending)
    except TooManyRequests as exc:  # nothing was stored
        return too_many_page(request, exc)
    return RedirectResponse(
        bastion.url(f"/interaction/{request_id}"), status_code=303, headers=NO_STORE
    )


__all__ = [
    "AuthorizationRequest",
    "authorize",
    "may_redirect_errors",
    "select_resource",
    "select_scope",
    "validate",
]
