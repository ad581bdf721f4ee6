"""The browser steps between /authorize and the redirect back: log-in and consent.

- The pending request lives in the database (any process can continue it) and is finished with one
  atomic delete, so a consent form can be submitted only once.
- CSRF: a double-submit token, a random cookie whose value every form must repeat; the cookies are
  HttpOnly, SameSite=Lax, and under https carry the ``__Host-`` prefix (no Domain, Secure, Path=/).
- Consent is remembered per user, client, resource and scope set; a request for scopes not yet
  granted asks again.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from bastion.authserver.audit import audited
from bastion.authserver.context import AuthServer, server
from bastion.authserver.errors import (
    PAGE_HEADERS,
    UNKNOWN_APPLICATION,
    error_page,
    redirect_error,
    too_many_page,
    with_query,
)
from bastion.authserver.http import NO_STORE, is_vschar, read_form, single
from bastion.authserver.password_sign_in import sign_in_with_password
from bastion.authserver.quotas import requester
from bastion.config import REGISTRY_SCOPES
from bastion.oauth.errors import (
    AccessDenied,
    InvalidClient,
    InvalidScope,
    OAuthError,
    TooManyRequests,
)
from bastion.oauth.redirect_uri import is_loopback_uri
from bastion.ops import metrics
from bastion.store import auth_audit, grants
from bastion.store import users as user_rows
from bastion.store.auth_audit import AuditRecord, Event
from bastion.store.clients import Client
from bastion.store.grant_records import CodeRecord, RequestRecord
from bastion.store.users import User
from bastion.tokens import secrets as opaque

EXPIRED = (
    "This sign-in request has expired or was already completed. Go back to the application and "
    "start again."
)

SCOPE_DESCRIPTIONS = {
    "mcp:tools": "List and call the server's tools",
    "mcp:resources": "Read the server's resources",
    "mcp:prompts": "Use the server's prompts",
}
# By role (the default names); shown for the configured names of the registry's scopes.
REGISTRY_SCOPE_DESCRIPTIONS = dict(
    zip(
        REGISTRY_SCOPES,
        (
            "List and read entries of the MCP registry",
            "Publish, update and delete your entries in the MCP registry",
            "Administer every entry of the MCP registry",
        ),
        strict=True,
    )
)


def cookie_name(bastion: AuthServer, name: str) -> str:
    """``__Host-bastion-<name>`` under https, ``bastion-<name>`` on plain-http development."""
    return f"__Host-bastion-{name}" if bastion.settings.is_https else f"bastion-{name}"


def set_cookie(
    bastion: AuthServer, response: Response, name: str, value: str, max_age: int
) -> None:
    """Set one of bastion's cookies with the strict attributes."""
    response.set_cookie(
        cookie_name(bastion, name),
        value,
        max_age=max_age,
        path="/",
        secure=bastion.settings.is_https,
        httponly=True,
        samesite="lax",
    )


async def current_user(bastion: AuthServer, request: Request) -> User | None:
    """The logged-in user of this browser, if any."""
    sid = request.cookies.get(cookie_name(bastion, "session"))
    if not sid:
        return None
    async with bastion.db.connect() as conn:
        return await user_rows.session_user(conn, opaque.digest(sid), bastion.clock())


def csrf_token(bastion: AuthServer, request: Request) -> tuple[str, bool]:
    """The browser's double-submit token (its cookie's value) and whether it is new (the
    response must set the cookie)."""
    existing = request.cookies.get(cookie_name(bastion, "csrf"))
    if existing and len(existing) >= 32:
        return existing, False
    return secrets.token_urlsafe(32), True


def csrf_matches(bastion: AuthServer, request: Request, form: dict[str, list[str]]) -> bool:
    """Whether the form repeats the browser's double-submit token."""
    cookie = request.cookies.get(cookie_name(bastion, "csrf")) or ""
    sent = single(form, "csrf") or ""
    # As bytes: compare_digest refuses str with non-ASCII characters (TypeError).
    return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode())


def _page(bastion: AuthServer, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    # The log-in page offers the upstream identity providers and, if enabled, the local form.
    context.setdefault("local_users", bastion.settings.login.local_users)
    context.setdefault("providers", bastion.federation.providers if bastion.federation else [])
    html = bastion.templates.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def _client_view(client: Client, redirect_uri: str) -> dict[str, Any]:
    host = urlsplit(redirect_uri).hostname or redirect_uri
    return {
        "name": client.name,
        "client_id": client.client_id,
        "origin": client.origin,
        "client_uri": client.metadata.client_uri,
        "redirect_host": host,
        "redirect_uri": redirect_uri,
        "loopback": is_loopback_uri(redirect_uri),
        "document_host": urlsplit(client.client_id).hostname
        if client.origin == "metadata_document"
        else None,
    }


async def _load(
    bastion: AuthServer, request: Request, request_id: str
) -> tuple[RequestRecord, Client] | None:
    if not is_vschar(request_id):  # from the URL path; ids are URL-safe base64
        return None
    async with bastion.db.connect() as conn:
        row = await grants.get_request(conn, request_id, bastion.clock())
    if row is None:
        return None
    client = await bastion.clients.find(row.client_id, requester=requester(request.scope))
    return row, client


@audited
async def show(request: Request) -> Response:
    """GET /interaction/{id}: the log-in form, the consent form, or straight back to the client."""
    bastion = server(request)
    request_id = request.path_params["request_id"]
    try:
        loaded = await _load(bastion, request, request_id)
    except InvalidClient as exc:
        return error_page(request, "Unknown application", UNKNOWN_APPLICATION, hint=exc.description)
    except TooManyRequests as exc:
        return too_many_page(request, exc)
    if loaded is None:
        return error_page(request, "Sign-in expired", EXPIRED)
    row, client = loaded
    csrf, fresh = csrf_token(bastion, request)
    user = await current_user(bastion, request)
    if user is None:
        response: Response = _page(
            bastion,
            "login.html",
            csrf=csrf,
            request_id=request_id,
            client=_client_view(client, row.redirect_uri),
            error=None,
        )
    else:
        asked = set(row.scope.split())
        async with bastion.db.connect() as conn:
            decision = await bastion.access.for_user(conn, user, row.resource, asked)
            granted = await user_rows.consented_scope(
                conn, user.id, client.client_id, row.resource, since=_consents_since(bastion)
            )
        if not decision.allowed:
            response = _page(
                bastion,
                "denied.html",
                status=403,
                csrf=csrf,
                request_id=request_id,
                user=user,
                client=_client_view(client, row.redirect_uri),
                resource=_resource_view(bastion, row.resource),
                scopes=_describe(bastion, asked),
                contact=bastion.settings.access_contact,
            )
        elif asked and not decision.scopes:
            return await _refuse(bastion, request_id, _nothing_left(user, row.resource, asked))
        else:
            # RFC 8252 §8.6: any local program can present a public client's id (with its own
            # loopback port or private-use URI scheme), so public clients always ask.
            may_skip = not client.is_public
            if granted is not None:  # a consent given under the registry's old scope names
                granted = set(bastion.settings.upgrade_scopes(granted, row.resource))
            remembered = granted is not None and decision.scopes <= granted
            if bastion.settings.login.remember_consent and may_skip and remembered:
                return await _approve(bastion, request_id, user)
            response = _page(
                bastion,
                "consent.html",
                csrf=csrf,
                request_id=request_id,
                user=user,
                client=_client_view(client, row.redirect_uri),
                resource=_resource_view(bastion, row.resource),
                scopes=_describe(bastion, decision.scopes, granted),
                withheld=_describe(bastion, decision.withheld),
            )
    if fresh:
        set_cookie(bastion, response, "csrf", csrf, bastion.settings.login.session_ttl)
    return response


@audited
async def login(request: Request) -> Response:
    """POST /interaction/{id}/login: check the user name and password, start a session."""
    bastion = server(request)
    request_id = request.path_params["request_id"]
    try:
        form = await read_form(request, 8192)
        loaded = await _load(bastion, request, request_id)
    except TooManyRequests as exc:
        return too_many_page(request, exc)
    except OAuthError as exc:
        return error_page(request, "Invalid sign-in request", exc.description)
    if loaded is None:
        return error_page(request, "Sign-in expired", EXPIRED)
    if not csrf_matches(bastion, request, form):
        return error_page(
            request,
            "Sign-in refused",
            "The form's security token does not match. Reload the page and try again.",
            status=403,
        )
    row, client = loaded
    username = single(form, "username") or ""
    outcome = await sign_in_with_password(
        bastion,
        request,
        username,
        single(form, "password") or "",
        client_id=client.client_id,
        previous_session=request.cookies.get(cookie_name(bastion, "session")),
    )
    if outcome.session is None:
        again = _page(
            bastion,
            "login.html",
            status=outcome.status,
            csrf=single(form, "csrf"),
            request_id=request_id,
            client=_client_view(client, row.redirect_uri),
            error=outcome.error,
            username=username,
        )
        again.headers.update(outcome.refusal_headers())
        return again
    response = RedirectResponse(
        bastion.url(f"/interaction/{request_id}"), status_code=303, headers=NO_STORE
    )
    set_cookie(bastion, response, "session", outcome.session, bastion.settings.login.session_ttl)
    return response


@audited
async def consent(request: Request) -> Response:
    """POST /interaction/{id}/consent: the user allows or denies the request."""
    bastion = server(request)
    request_id = request.path_params["request_id"]
    try:
        form = await read_form(request, 8192)
    except OAuthError as exc:
        return error_page(request, "Invalid consent request", exc.description)
    if not csrf_matches(bastion, request, form):
        return error_page(
            request,
            "Consent refused",
            "The form's security token does not match. Reload the page and try again.",
            status=403,
        )
    user = await current_user(bastion, request)
    if user is None:
        return error_page(
            request, "Not signed in", "Your session has ended. " + EXPIRED, status=401
        )
    metrics.consent(allowed=single(form, "decision") == "allow")
    if single(form, "decision") == "allow":
        return await _approve(bastion, request_id, user)
    async with bastion.db.transaction() as conn:
        row = await grants.finish_request(conn, request_id, bastion.clock())
        if row is not None:
            await auth_audit.add(
                conn, _consent(Event.CONSENT_DENIED, user.id, row, bastion.clock())
            )
    if row is None:
        return error_page(request, "Sign-in expired", EXPIRED)
    return redirect_error(
        AccessDenied("the user denied the request"), row.redirect_uri, row.state, bastion.issuer
    )


def _consent(
    kind: Event, user_id: str, row: RequestRecord, now: int, scope: str | None = None
) -> AuditRecord:
    return AuditRecord(
        kind,
        auth_audit.millis(now),
        subject=user_id,
        client_id=row.client_id,
        detail={"resource": row.resource, "scope": row.scope if scope is None else scope},
    )


def _consents_since(bastion: AuthServer) -> int:
    """Consents given before this time have expired (``login.consent_ttl``)."""
    ttl = bastion.settings.login.consent_ttl
    return bastion.clock() - ttl if ttl else bastion.clock()


def _describe(
    bastion: AuthServer,
    scopes: set[str] | frozenset[str],
    granted: set[str] | frozenset[str] | None = None,
) -> list[tuple[str, str, bool]]:
    """(scope, what it lets the application do or "", whether it is new): new when the person
    had consented before, but not to this scope (a step-up)."""
    return [
        (s, _description(bastion, s), granted is not None and s not in granted)
        for s in sorted(scopes)
    ]


def _description(bastion: AuthServer, scope: str) -> str:
    told = bastion.settings.scope_descriptions.get(scope)
    if told:
        return told
    registry = bastion.settings.registry
    role = registry.scope_names.role(scope) if registry.enabled else None
    if role is None:
        return SCOPE_DESCRIPTIONS.get(scope, "")
    group = role.removeprefix(REGISTRY_SCOPES[0] + ":")
    if group != role:
        return f"Read the MCP registry's entries for group {group}"
    return REGISTRY_SCOPE_DESCRIPTIONS[role]


def _resource_view(bastion: AuthServer, uri: str) -> dict[str, str]:
    names = {r.uri: r.name for r in bastion.settings.resources if r.name}
    return {"uri": uri, "name": names.get(uri) or uri}


def _nothing_left(user: User, resource: str, asked: set[str]) -> OAuthError:
    return InvalidScope(
        f"{user.username} may not have scope {' '.join(sorted(asked))} for {resource}"
    )


async def _refuse(bastion: AuthServer, request_id: str, error: OAuthError) -> Response:
    """Finish the request with an error for the client (with state and iss, RFC 9207)."""
    async with bastion.db.transaction() as conn:
        row = await grants.finish_request(conn, request_id, bastion.clock())
    if row is None:
        return _expired(bastion)
    return redirect_error(error, row.redirect_uri, row.state, bastion.issuer)


def _expired(bastion: AuthServer) -> Response:
    return HTMLResponse(
        bastion.templates.get_template("error.html").render(
            title="Sign-in expired", message=EXPIRED
        ),
        status_code=400,
        headers=PAGE_HEADERS,
    )


async def _approve(bastion: AuthServer, request_id: str, user: User) -> Response:
    """Finish the request: check the rules once more, remember consent, issue the code for the
    scopes the person may have, redirect with code, state, iss."""
    now = bastion.clock()
    code = opaque.new_token()
    refused: OAuthError | None = None
    async with bastion.db.transaction() as conn:
        row = await grants.finish_request(conn, request_id, now)
        if row is not None:
            asked = set(row.scope.split())
            decision = await bastion.access.for_user(conn, user, row.resource, asked)
            if not decision.allowed:
                refused = AccessDenied(f"{user.username} may not use {row.resource}")
            elif asked and not decision.scopes:
                refused = _nothing_left(user, row.resource, asked)
        if row is not None and refused is None:
            scope = " ".join(sorted(decision.scopes))
            await user_rows.remember_consent(
                conn,
                user.id,
                row.client_id,
                row.resource,
                set(decision.scopes),
                now,
                since=_consents_since(bastion),
            )
            consented = _consent(Event.CONSENT_GIVEN, user.id, row, now, scope)
            await auth_audit.add(conn, consented)
            await grants.save_code(
                conn,
                CodeRecord(
                    code_hash=opaque.digest(code),
                    client_id=row.client_id,
                    subject=user.id,
                    redirect_uri=row.redirect_uri,
                    redirect_uri_sent=row.redirect_uri_sent,
                    scope=scope,
                    resource=row.resource,
                    code_challenge=row.code_challenge,
                    dpop_jkt=row.dpop_jkt,
                    family_id=secrets.token_hex(16),
                    auth_time=now,
                    expires_at=now + bastion.settings.tokens.code_ttl,
                ),
            )
    if row is None:
        return _expired(bastion)
    if refused is not None:
        return redirect_error(refused, row.redirect_uri, row.state, bastion.issuer)
    params = {"code": code}
    if row.state is not None:
        params["state"] = row.state
    params["iss"] = bastion.issuer
    return RedirectResponse(with_query(row.redirect_uri, params), status_code=303, headers=NO_STORE)


async def logout(request: Request) -> Response:
    """GET shows a confirmation form; POST ends the browser session."""
    bastion = server(request)
    if request.method == "GET":
        csrf, fresh = csrf_token(bastion, request)
        user = await current_user(bastion, request)
        stayed = request.query_params.get("stay") == "1"
        response: Response = _page(
            bastion, "logout.html", csrf=csrf, done=False, user=user, stayed=stayed
        )
        if fresh:
            set_cookie(bastion, response, "csrf", csrf, bastion.settings.login.session_ttl)
        return response
    try:
        form = await read_form(request, 4096)
    except OAuthError as exc:
        return error_page(request, "Invalid request", exc.description)
    if not csrf_matches(bastion, request, form):
        return error_page(request, "Sign-out refused", "Reload the page and try again.", status=403)
    sid = request.cookies.get(cookie_name(bastion, "session"))
    if sid:
        async with bastion.db.transaction() as conn:
            await user_rows.end_session(conn, opaque.digest(sid))
    response = _page(bastion, "logout.html", csrf=None, done=True)
    response.delete_cookie(
        cookie_name(bastion, "session"),
        path="/",
        secure=bastion.settings.is_https,
        httponly=True,
        samesite="lax",
    )
    return response


__all__ = [
    "consent",
    "cookie_name",
    "csrf_matches",
    "csrf_token",
    "current_user",
    "login",
    "logout",
    "set_cookie",
    "show",
]
