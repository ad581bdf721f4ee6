"""The authorization server's connect pages: where a signed-in person lets bastion act for them
at an upstream with its own OAuth (``auth = "oauth"``), the URL a URL elicitation names.

- ``GET /connect/{upstream}[?elicitation=<id>]``: needs the console's browser session (else the
  sign-in, coming back here). An elicitation must be live, for this upstream, and made for the
  person signed in: a link made for someone else is refused (403) and nothing is stored (MCP
  2025-11-25 elicitation, "Phishing": the server must check that the person who opens the URL
  is the one it asked). Shows what is being connected and a button; a GET never redirects
  upstream (that would let another site start a sign-in in the person's name).
- ``POST /connect/{upstream}`` (the button: the console's same-origin and CSRF checks): makes
  ``state`` and a PKCE verifier, remembers them (the state's hash, the verifier encrypted, the
  person, a hash of a browser-binding cookie, the upstream's issuer and bastion's client id
  there) for ten minutes, and redirects to the upstream's authorization endpoint.
- ``GET /connect/callback``: the upstream's answer. The state is consumed once and must belong
  to this browser (the binding cookie) and to the person signed in; ``iss`` must be the
  upstream's issuer (RFC 9207 §2.4) when it advertises it or sends one; an error is shown;
  otherwise the code is exchanged and the tokens stored encrypted per (person, upstream). The
  elicitation is marked complete; the person goes back to their client and retries.
- ``GET /connect/client-metadata.json``: bastion's Client ID Metadata Document, for upstreams
  that take a URL as client id.

Tokens appear in no page, URL or log line; the audit trail records ``upstream_connected`` and
``upstream_connect_failed``. The routes exist only when the gateway configuration (read by the
authorization server too: both must be given the same ``[gateway]``) has an ``auth = "oauth"``
upstream.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bastion.authserver.audit import address_of, audited
from bastion.authserver.context import AuthServer, server
from bastion.authserver.http import NO_STORE, is_vschar, query_params, single
from bastion.authserver.interaction import cookie_name, set_cookie
from bastion.config import Settings
from bastion.console.guard import (
    Visit,
    browser_session,
    console_page,
    is_elicitation_id,
    refused,
)
from bastion.console.render import CONSOLE_HEADERS, html
from bastion.logs import get_logger
from bastion.oauth import pkce
from bastion.oauth.errors import OAuthError
from bastion.store import auth_audit
from bastion.store import upstream_connections as repo
from bastion.store.auth_audit import AuditRecord, Event
from bastion.store.sealed import connection_binding
from bastion.store.upstream_connections import Connection, ConnectRequest, ConnectState
from bastion.tokens import secrets as opaque
from bastion.vault.errors import VaultError
from bastion.vault.upstream_server import (
    CALLBACK_PATH,
    CLIENT_METADATA_PATH,
    RESERVED_NAMES,
    UpstreamServer,
    client_metadata_document,
    oauth_upstreams,
)

log = get_logger("bastion.vault")

STATE_TTL = 600  # seconds a person has to sign in upstream
BINDING_COOKIE = "connect"
_MAX_SHOWN = 300


def _is_id(value: str) -> bool:
    return is_elicitation_id(value)


def _upstream(bastion: AuthServer, name: str) -> UpstreamServer | None:
    return bastion.upstreams.get(name)


def _page(
    bastion: AuthServer,
    template: str,
    *,
    status: int = 200,
    form_action: str | None = None,
    **context: object,
) -> Response:
    """A connect page: the console's headers, plus the upstream's origin as a place a form may
    lead to (the button's POST is answered with a redirect there, which ``form-action``
    governs too)."""
    headers = dict(CONSOLE_HEADERS)
    if form_action is not None:
        headers["Content-Security-Policy"] = headers["Content-Security-Policy"].replace(
            "form-action 'self'", f"form-action 'self' {form_action}"
        )
    context.setdefault("base", urlsplit(bastion.issuer).path)
    return html(template, context, status=status, headers=headers)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def _elicitation(
    visit: Visit, upstream: str, elicitation: str | None
) -> tuple[ConnectRequest | None, Response | None]:
    """The elicitation a connect page was opened for, or the refusal to show instead."""
    if not elicitation:
        return None, None
    bastion = visit.bastion
    found = None
    if _is_id(elicitation):
        async with bastion.db.connect() as conn:
            found = await repo.find_request(conn, elicitation, bastion.clock())
    if found is None:
        return None, refused(
            visit.request,
            bastion,
            "Link expired",
            "This connect link is unknown or has expired. Go back to your application and try "
            "again: it will give you a new link.",
            404,
        )
    if found.user_id != visit.user.id:
        # MCP elicitation "Phishing": only the person the gateway asked may complete it.
        log.warning(
            "connect link for %s opened by another person (%s); refused",
            found.upstream,
            visit.user.username,
        )
        return None, refused(
            visit.request,
            bastion,
            "This link was made for another person",
            f"You are signed in as {visit.user.username}, but this link was made for someone "
            "else. Nothing was connected. If someone sent you this link, do not use it; if it "
            "is yours, sign out and sign in as yourself.",
            403,
        )
    if found.upstream != upstream:
        return None, refused(
            visit.request,
            bastion,
            "Link for another server",
            "This link was made for connecting another server. Open the link your application "
            "gave you as it is.",
            400,
        )
    return found, None


@console_page(admin=False)
async def connect_page(visit: Visit) -> Response:
    """GET and POST /connect/{upstream}: the page, then the redirect upstream."""
    bastion = visit.bastion
    name = visit.request.path_params["upstream"]
    upstream = _upstream(bastion, name)
    if upstream is None:
        shown = name if is_vschar(name) else "?"
        return refused(
            visit.request,
            bastion,
            "Unknown server",
            f"No server called {shown[:64]!r} needs a connection here.",
            404,
        )
    post = visit.request.method == "POST"
    wanted = visit.field("elicitation") if post else visit.request.query_params.get("elicitation")
    request, refusal = await _elicitation(visit, name, wanted)
    if refusal is not None:
        return refusal
    try:
        client = await upstream.client()
    except VaultError as exc:
        return _failed_page(bastion, visit.request, name, exc)
    if not post:
        return _page(
            bastion,
            "connect.html",
            form_action=_origin(client.authorization_endpoint),
            upstream=name,
            host=urlsplit(upstream.upstream.url or "").netloc,
            server=urlsplit(client.issuer).netloc,
            me=visit.user,
            csrf=visit.csrf,
            elicitation=request.id if request else "",
        )
    return await _send_upstream(visit, upstream, request)


async def _send_upstream(
    visit: Visit, upstream: UpstreamServer, request: ConnectRequest | None
) -> Response:
    """Remember the sign-in (state hash, verifier sealed, person, browser binding) and
    redirect the browser to the upstream's authorization endpoint."""
    bastion = visit.bastion
    now = bastion.clock()
    state, verifier = secrets.token_urlsafe(32), pkce.new_verifier()
    try:
        client = await upstream.client()
        url = await upstream.authorization_url(state=state, code_challenge=pkce.s256(verifier))
    except VaultError as exc:
        return _failed_page(bastion, visit.request, upstream.name, exc)
    binding = visit.request.cookies.get(cookie_name(bastion, BINDING_COOKIE)) or ""
    if len(binding) < 32 or not is_vschar(binding):
        binding = secrets.token_urlsafe(32)
    state_hash = opaque.digest(state)
    async with bastion.db.transaction() as conn:
        await repo.save_state(
            conn,
            ConnectState(
                state_hash=state_hash,
                upstream=upstream.name,
                user_id=visit.user.id,
                binding_hash=opaque.digest(binding),
                request_id=request.id if request else None,
                issuer=client.issuer,
                client_id=client.client_id,
                verifier_encrypted=bastion.cipher.encrypt(
                    verifier.encode(), bound_to=f"connect:{state_hash}"
                ),
                created_at=now,
                expires_at=now + STATE_TTL,
            ),
        )
    response = RedirectResponse(url, status_code=303, headers=dict(NO_STORE))
    set_cookie(bastion, response, BINDING_COOKIE, binding, STATE_TTL)
    return response


def _failed_page(
    bastion: AuthServer, request: Request, upstream: str, exc: VaultError, status: int = 502
) -> Response:
    """The page for a connection that failed: the safe message; the detail goes to the log."""
    log.warning("connecting upstream %s failed: %s", upstream, exc.detail)
    return _page(
        bastion,
        "connect_failed.html",
        status=status,
        upstream=upstream,
        message=exc.message,
        retry=urlsplit(bastion.issuer).path + f"/connect/{upstream}",
    )


async def _record(
    bastion: AuthServer,
    request: Request,
    event: Event,
    row: ConnectState,
    *,
    outcome: str = "ok",
    client_id: str | None = None,
    detail: dict[str, object] | None = None,
) -> None:
    async with bastion.db.transaction() as conn:
        await auth_audit.add(conn, _audit(bastion, request, event, row, outcome, client_id, detail))


def _audit(
    bastion: AuthServer,
    request: Request,
    event: Event,
    row: ConnectState,
    outcome: str,
    client_id: str | None,
    detail: dict[str, object] | None,
) -> AuditRecord:
    return AuditRecord(
        event,
        auth_audit.millis(bastion.clock()),
        outcome=outcome,
        subject=row.user_id,
        client_id=client_id,
        provider=row.upstream,
        address=address_of(request),
        target_kind="upstream",
        target_id=row.upstream,
        detail={"issuer": row.issuer, **(detail or {})},
    )


@audited
async def callback(request: Request) -> Response:
    """GET /connect/callback: the upstream's authorization response."""
    bastion = server(request)
    try:
        params = query_params(request)
    except OAuthError as exc:
        return refused(request, bastion, "Invalid answer", exc.description, 400)
    now = bastion.clock()
    _, found = await browser_session(bastion, request)
    if found is None:
        return refused(
            request,
            bastion,
            "Not signed in",
            "Your bastion sign-in ended before the server answered. Sign in and start again "
            "from your application.",
            403,
        )
    user = found[0]
    state = single(params, "state") or ""
    row = None
    if state:
        async with bastion.db.transaction() as conn:
            row = await repo.consume_state(conn, opaque.digest(state), now)
    if row is None:
        return refused(
            request,
            bastion,
            "Answer does not match",
            "This answer does not match a connection in progress: it was already used, has "
            "expired, or was not started here. Start again from your application.",
            400,
        )
    binding = request.cookies.get(cookie_name(bastion, BINDING_COOKIE)) or ""
    if not hmac.compare_digest(opaque.digest(binding), row.binding_hash):
        await _record(bastion, request, Event.UPSTREAM_CONNECT_FAILED, row, outcome="other_browser")
        return refused(
            request,
            bastion,
            "Started in another browser",
            "This answer belongs to a connection started in another browser (or your browser "
            "did not keep bastion's cookie). Nothing was connected. Start again in this browser.",
            403,
        )
    if row.user_id != user.id:
        await _record(bastion, request, Event.UPSTREAM_CONNECT_FAILED, row, outcome="other_person")
        return refused(
            request,
            bastion,
            "Started by another person",
            f"This connection was started by someone other than {user.username}, who is signed "
            "in now. Nothing was connected.",
            403,
        )
    upstream = _upstream(bastion, row.upstream)
    if upstream is None:
        return refused(request, bastion, "Unknown server", "This server is no longer set up.", 404)
    return await _complete(bastion, request, upstream, row, params)


async def _complete(
    bastion: AuthServer,
    request: Request,
    upstream: UpstreamServer,
    row: ConnectState,
    params: dict[str, list[str]],
) -> Response:
    """The checks of the answer itself, the code exchange, and the connection stored."""
    name = upstream.name
    client_id = await _client_of(bastion, row.request_id)
    try:
        client = await upstream.client()
    except VaultError as exc:
        await _record(
            bastion,
            request,
            Event.UPSTREAM_CONNECT_FAILED,
            row,
            outcome="unavailable",
            client_id=client_id,
        )
        return _failed_page(bastion, request, name, exc)
    iss = single(params, "iss")
    if (client.iss_parameter_supported or iss is not None) and iss != row.issuer:
        # RFC 9207 §2.4: not the server the request went to (a mix-up); its answer is not used.
        await _record(
            bastion,
            request,
            Event.UPSTREAM_CONNECT_FAILED,
            row,
            outcome="issuer_mismatch",
            client_id=client_id,
            detail={"iss": (iss or "")[:200]},
        )
        return refused(
            request,
            bastion,
            "Answer from the wrong server",
            f"The answer did not come from {urlsplit(row.issuer).netloc}, where you were sent "
            "to sign in. Nothing was connected. Start again from your application.",
            400,
        )
    error = single(params, "error")
    if error is not None:
        described = (single(params, "error_description") or "")[:_MAX_SHOWN]
        denied = error == "access_denied"
        await _record(
            bastion,
            request,
            Event.UPSTREAM_CONNECT_FAILED,
            row,
            outcome=error[:32],
            client_id=client_id,
            detail={"description": described},
        )
        return _page(
            bastion,
            "connect_failed.html",
            status=403 if denied else 502,
            upstream=name,
            message=(
                f"{name} did not allow the connection"
                + (" (access was denied)." if denied else f" ({error[:64]}).")
                + (f" It said: {described}" if described else "")
            ),
            retry=urlsplit(bastion.issuer).path + f"/connect/{name}",
        )
    code = single(params, "code")
    if not code or row.client_id != client.client_id or row.issuer != client.issuer:
        why = "no code" if not code else "the upstream's configuration changed meanwhile"
        await _record(
            bastion,
            request,
            Event.UPSTREAM_CONNECT_FAILED,
            row,
            outcome="invalid_response",
            client_id=client_id,
            detail={"reason": why},
        )
        return refused(
            request,
            bastion,
            "Answer cannot be used",
            f"The answer from {name} cannot be used ({why}). Start again from your application.",
            400,
        )
    verifier = bastion.cipher.decrypt(
        row.verifier_encrypted, bound_to=f"connect:{row.state_hash}"
    ).decode()
    try:
        tokens = await upstream.exchange_code(code, verifier)
    except VaultError as exc:
        await _record(
            bastion,
            request,
            Event.UPSTREAM_CONNECT_FAILED,
            row,
            outcome="exchange_failed",
            client_id=client_id,
            detail={"reason": exc.detail[:_MAX_SHOWN]},
        )
        return _failed_page(bastion, request, name, exc)
    now = bastion.clock()
    user_id = row.user_id
    connection = Connection(
        user_id=user_id,
        upstream=name,
        issuer=row.issuer,
        client_id=row.client_id,
        access_token_encrypted=bastion.cipher.encrypt(
            tokens.access_token.encode(), bound_to=connection_binding(user_id, name, "access")
        ),
        refresh_token_encrypted=(
            bastion.cipher.encrypt(
                tokens.refresh_token.encode(),
                bound_to=connection_binding(user_id, name, "refresh"),
            )
            if tokens.refresh_token
            else None
        ),
        scope=tokens.scope,
        expires_at=None if tokens.expires_in is None else now + tokens.expires_in,
        created_at=now,
    )
    async with bastion.db.transaction() as conn:
        await repo.save_connection(conn, connection)
        if row.request_id is not None:
            await repo.complete_request(conn, row.request_id, now)
        await auth_audit.add(
            conn,
            _audit(
                bastion,
                request,
                Event.UPSTREAM_CONNECTED,
                row,
                "ok",
                client_id,
                {"scope": tokens.scope, "refreshable": tokens.refresh_token is not None},
            ),
        )
    log.info("person %s connected upstream %s", user_id, name)
    return _page(bastion, "connect_done.html", upstream=name)


async def _client_of(bastion: AuthServer, request_id: str | None) -> str | None:
    """The client whose call needed the connection (from its elicitation), for the trail."""
    if request_id is None:
        return None
    async with bastion.db.connect() as conn:
        found = await repo.find_request(conn, request_id, 0)
    return found.client_id if found else None


async def client_metadata(request: Request) -> Response:
    """GET /connect/client-metadata.json: bastion's Client ID Metadata Document."""
    bastion = server(request)
    return JSONResponse(
        client_metadata_document(bastion.settings), headers={"Cache-Control": "max-age=300"}
    )


def check_names(settings: Settings) -> None:
    """Refuse upstream names the connect URL cannot carry, and connect pages without the
    console's sign-in they send people to."""
    if not settings.console.enabled:
        raise ValueError(
            'a gateway upstream has auth = "oauth", whose connect pages sign people in with the '
            'console\'s /signin; set console.enabled = true (or remove auth = "oauth")'
        )
    for upstream in oauth_upstreams(settings):
        if upstream.name in RESERVED_NAMES:
            raise ValueError(
                f'gateway upstream {upstream.name!r} with auth = "oauth" cannot be connected: '
                f"/connect/{upstream.name} is a fixed path of bastion; rename the upstream"
            )


def routes(settings: Settings) -> list[BaseRoute]:
    """The connect routes, when some gateway upstream has ``auth = "oauth"`` (else none)."""
    if not oauth_upstreams(settings):
        return []
    check_names(settings)
    return [
        Route(CLIENT_METADATA_PATH, client_metadata, methods=["GET"]),
        Route(CALLBACK_PATH, callback, methods=["GET"]),
        Route("/connect/{upstream}", connect_page, methods=["GET", "POST"]),
    ]


__all__ = [
    "BINDING_COOKIE",
    "RESERVED_NAMES",
    "STATE_TTL",
    "callback",
    "check_names",
    "client_metadata",
    "connect_page",
    "routes",
]
