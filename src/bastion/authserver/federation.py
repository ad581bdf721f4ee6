"""The browser's way through an upstream identity provider, between bastion's log-in page and
its consent page.

- ``POST /interaction/{id}/upstream/{name}`` (a button on the log-in page, CSRF-checked): makes
  ``state``, ``nonce`` and a PKCE verifier, remembers them with the pending authorization request
  and a hash of a browser-binding cookie, and redirects to the provider.
- ``GET /login/{name}/callback``: the provider's answer. The state is consumed once and must
  belong to this browser (the binding cookie) and to a provider of that name; then the answer's
  ``iss`` (RFC 9207), the provider's error if any, the code exchange and the identity checks of
  :class:`bastion.identity.federation.Federation`, the allow rules, and the account link. A
  bastion session starts and the browser continues the pending authorization request at its
  consent page. Every failure is a page naming the provider and what to check; nothing is
  created before all checks have passed.
- A console sign-in (``POST /signin/upstream/{name}``, :mod:`bastion.console.signin`) goes
  through :func:`send_to_provider` with a console page to return to instead of a request; its
  callback starts the session and goes back to that page, checked again to be a console page
  (:func:`bastion.console.guard.console_path`). A sign-in again before a destructive action
  asks the provider to authenticate anew and checks the ID token's ``auth_time``.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import replace
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from bastion.authserver.audit import address_of, audited
from bastion.authserver.context import AuthServer, server
from bastion.authserver.errors import PAGE_HEADERS, error_page
from bastion.authserver.http import NO_STORE, is_vschar, query_params, read_form, single
from bastion.authserver.interaction import EXPIRED, cookie_name, set_cookie
from bastion.authserver.password_sign_in import signed_in
from bastion.console.guard import console_path
from bastion.identity.claims import local_groups, refusal
from bastion.identity.errors import (
    AccountNotAllowed,
    FederationError,
    SignInStateError,
    UpstreamRefused,
)
from bastion.identity.federation import Federation
from bastion.identity.linking import link_account
from bastion.identity.providers import ProviderSpec
from bastion.logs import get_logger
from bastion.oauth import pkce
from bastion.oauth.errors import OAuthError
from bastion.ops import metrics
from bastion.store import auth_audit, grants
from bastion.store import federation as federation_rows
from bastion.store import users as user_rows
from bastion.store.auth_audit import AuditRecord, Event
from bastion.store.federation import SignInState
from bastion.tokens import secrets as opaque

log = get_logger("bastion.federation")

STATE_TTL = 600  # seconds a person has to sign in at the provider
BINDING_COOKIE = "federation"
_MAX_SHOWN = 300


def _federation(bastion: AuthServer) -> Federation | None:
    return bastion.federation


def _failure(
    bastion: AuthServer,
    exc: FederationError,
    spec: ProviderSpec | None,
    retry_url: str | None,
) -> Response:
    """The page for a failed upstream sign-in; the detail goes to the log."""
    who = spec.describe() if spec else "federation"
    log.warning("upstream sign-in failed (%s): %s", who, exc.detail)
    metrics.sign_in("federation", spec.name if spec else "unknown", "failed")
    html = bastion.templates.get_template("federation_error.html").render(
        title=exc.title,
        message=exc.message,
        provider=spec.label if spec else None,
        hint=exc.hint,
        retry_url=retry_url,
    )
    return HTMLResponse(html, status_code=exc.status, headers=PAGE_HEADERS)


async def _record_failure(
    bastion: AuthServer, request: Request, provider: str, exc: FederationError, now: int
) -> None:
    """Record a failed sign-in that matched a sign-in in progress (answers matching none are
    only logged: anyone can send them, and they name nobody)."""
    outcome = re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()
    async with bastion.db.transaction() as conn:
        await auth_audit.add(
            conn,
            AuditRecord(
                Event.SIGN_IN_FAILED,
                auth_audit.millis(now),
                outcome=outcome[:32],
                method="federated",
                provider=provider,
                address=address_of(request),
                detail={"reason": exc.detail[:300]},
            ),
        )


def _unknown_provider(request: Request, name: str) -> Response:
    shown = name if is_vschar(name) else "?"
    return error_page(
        request,
        "Unknown sign-in method",
        f"No identity provider called {shown[:64]!r} is configured here.",
        status=404,
    )


async def start(request: Request) -> Response:
    """POST /interaction/{request_id}/upstream/{name}: send the browser to the provider."""
    bastion = server(request)
    federation = _federation(bastion)
    request_id = request.path_params["request_id"]
    name = request.path_params["name"]
    spec = federation.get(name) if federation else None
    if federation is None or spec is None:
        return _unknown_provider(request, name)
    try:
        form = await read_form(request, 8192)
    except OAuthError as exc:
        return error_page(request, "Invalid sign-in request", exc.description)
    cookie = request.cookies.get(cookie_name(bastion, "csrf")) or ""
    sent = single(form, "csrf") or ""
    if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
        return error_page(
            request,
            "Sign-in refused",
            "The form's security token does not match. Reload the page and try again.",
            status=403,
        )
    now = bastion.clock()
    async with bastion.db.connect() as conn:
        pending = await grants.get_request(conn, request_id, now) if is_vschar(request_id) else None
    if pending is None:
        return error_page(request, "Sign-in expired", EXPIRED)
    return await send_to_provider(bastion, request, federation, spec, request_id=request_id)


async def send_to_provider(
    bastion: AuthServer,
    request: Request,
    federation: Federation,
    spec: ProviderSpec,
    *,
    request_id: str | None = None,
    return_to: str | None = None,
    reauthenticate: bool = False,
) -> Response:
    """Remember a sign-in (state, nonce, PKCE verifier, the browser's binding) that continues
    the pending authorization request ``request_id`` or, for the console, goes back to
    ``return_to``; redirect the browser to the provider."""
    name = spec.name
    now = bastion.clock()
    state, nonce, verifier = (
        secrets.token_urlsafe(32),
        secrets.token_urlsafe(32),
        pkce.new_verifier(),
    )
    try:
        url = await federation.authorization_url(
            name,
            state=state,
            nonce=nonce,
            code_challenge=pkce.s256(verifier),
            reauthenticate=reauthenticate,
        )
    except FederationError as exc:
        return _failure(bastion, exc, spec, _retry_url(bastion, request_id, return_to))
    binding = request.cookies.get(cookie_name(bastion, BINDING_COOKIE)) or ""
    if len(binding) < 32 or not is_vschar(binding):
        binding = secrets.token_urlsafe(32)
    state_hash = opaque.digest(state)
    async with bastion.db.transaction() as conn:
        await federation_rows.save_state(
            conn,
            SignInState(
                state_hash=state_hash,
                provider=name,
                request_id=request_id,
                return_to=return_to,
                reauthenticate=reauthenticate,
                binding_hash=opaque.digest(binding),
                nonce=nonce,
                verifier_encrypted=federation.seal(verifier, bound_to=state_hash),
                created_at=now,
                expires_at=now + STATE_TTL,
            ),
        )
    response = RedirectResponse(url, status_code=303, headers=NO_STORE)
    set_cookie(bastion, response, BINDING_COOKIE, binding, STATE_TTL)
    return response


def _retry_url(bastion: AuthServer, request_id: str | None, return_to: str | None) -> str | None:
    """Where the failure page's "back to sign-in" link goes: the authorization request's
    log-in page, or the console's sign-in."""
    if request_id is not None:
        return bastion.url(f"/interaction/{request_id}")
    if return_to is not None:
        return bastion.url("/signin?" + urlencode({"next": return_to}))
    return None


@audited
async def callback(request: Request) -> Response:
    """GET /login/{name}/callback: the provider's authorization response."""
    bastion = server(request)
    federation = _federation(bastion)
    name = request.path_params["name"]
    spec = federation.get(name) if federation else None
    if federation is None or spec is None:
        return _unknown_provider(request, name)
    try:
        params = query_params(request)
    except OAuthError as exc:
        return error_page(request, "Invalid sign-in response", exc.description)
    now = bastion.clock()
    state = single(params, "state")
    try:
        if not state:
            raise SignInStateError(
                f"The answer from {spec.label} carries no state, so it cannot be matched to a "
                "sign-in. Start again from the application.",
                detail="callback without state",
            )
        async with bastion.db.transaction() as conn:
            row = await federation_rows.consume_state(conn, opaque.digest(state), name, now)
        if row is None:
            raise SignInStateError(
                f"This answer from {spec.label} does not match a sign-in in progress: it was "
                "already used, has expired, or was not started here. Start again from the "
                "application.",
                detail="state unknown, expired, used, or for another provider",
            )
        binding = request.cookies.get(cookie_name(bastion, BINDING_COOKIE)) or ""
        if not hmac.compare_digest(opaque.digest(binding), row.binding_hash):
            raise SignInStateError(
                f"This answer from {spec.label} belongs to a sign-in started in another "
                "browser (or your browser did not keep bastion's cookie). Start again from the "
                "application in this browser.",
                detail="state valid but the browser-binding cookie is missing or different",
            )
    except FederationError as exc:
        return _failure(bastion, exc, spec, None)
    request_id = row.request_id
    return_to = None
    if request_id is None:  # a console sign-in: back to a console page, nowhere else
        return_to = (
            console_path(bastion, row.return_to) or urlsplit(bastion.issuer).path + "/account"
        )
    retry = _retry_url(bastion, request_id, return_to)
    try:
        await federation.check_response_issuer(name, single(params, "iss"))
        error = single(params, "error")
        if error is not None:
            described = (single(params, "error_description") or "")[:_MAX_SHOWN]
            denied = error == "access_denied"
            raise UpstreamRefused(
                f"{spec.label} did not let you sign in"
                + (" (access was denied)." if denied else f" ({error[:64]}).")
                + (f" It said: {described}" if described else ""),
                error=error,
                status=403 if denied else 502,
                detail=f"authorization response error={error!r} {described!r}",
                hint=""
                if denied
                else f"Check bastion's client at {spec.label} (client id {spec.client_id}): "
                "its redirect URI, grant types and scopes.",
            )
        code = single(params, "code")
        if not code:
            raise SignInStateError(
                f"The answer from {spec.label} has neither a code nor an error.",
                detail="callback without code",
            )
        client_id = None
        if request_id is not None:
            async with bastion.db.connect() as conn:
                pending = await grants.get_request(conn, request_id, now)
            if pending is None:
                return error_page(request, "Sign-in expired", EXPIRED)
            client_id = pending.client_id
        verifier = federation.unseal(row.verifier_encrypted, bound_to=row.state_hash)
        outcome = await federation.complete(
            name,
            code=code,
            nonce=row.nonce,
            verifier=verifier,
            authenticated_since=row.created_at if row.reauthenticate else None,
        )
        refused = refusal(spec, outcome.identity)
        if refused is not None:
            message, detail = refused
            raise AccountNotAllowed(message, detail=detail)
        sealed = None
        if outcome.refresh_token is not None:
            bound = f"{outcome.identity.issuer}|{outcome.identity.subject}"
            sealed = federation.seal(outcome.refresh_token, bound_to=bound)
        identity = replace(outcome.identity, groups=local_groups(spec, outcome.identity))
        user = await link_account(bastion.db, identity, now=now, refresh_token_encrypted=sealed)
    except FederationError as exc:
        await _record_failure(bastion, request, name, exc, now)
        return _failure(bastion, exc, spec, retry)
    sid = secrets.token_urlsafe(32)
    ttl = bastion.settings.login.session_ttl
    previous = request.cookies.get(cookie_name(bastion, "session"))
    async with bastion.db.transaction() as conn:
        if previous:
            await user_rows.end_session(conn, opaque.digest(previous))
        await user_rows.create_session(conn, opaque.digest(sid), user.id, now, now + ttl)
        address = address_of(request) or ""
        await auth_audit.add(conn, signed_in(user.id, client_id, address, now, "federated", name))
    if return_to is None:
        target = bastion.url(f"/interaction/{request_id}")
    else:
        target = _with_notice(return_to) if row.reauthenticate else return_to
    response = RedirectResponse(target, status_code=303, headers=NO_STORE)
    set_cookie(bastion, response, "session", sid, ttl)
    metrics.sign_in("federation", name, "ok")
    return response


def _with_notice(path: str) -> str:
    """A console path with the notice that the person signed in again."""
    return path + ("&" if "?" in path else "?") + urlencode({"notice": "signed_in_again"})


__all__ = ["BINDING_COOKIE", "STATE_TTL", "callback", "send_to_provider", "start"]
