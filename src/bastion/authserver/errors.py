"""Turning OAuth errors into the exact responses the RFCs prescribe, in one place.

- Token, introspection, revocation, registration endpoints: a JSON body (RFC 6749 §5.2,
  RFC 7591 §3.2.2) with no-store headers; 401 for invalid_client carries WWW-Authenticate.
- Authorization endpoint, once client and redirect URI are trusted: a redirect carrying
  ``error``, ``error_description``, ``state`` and ``iss`` (RFC 6749 §4.1.2.1, RFC 9207 §2).
- Before that (bad client_id or redirect_uri): an HTML page, never a redirect (RFC 6749 §4.1.2.1).
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from bastion.authserver.http import NO_STORE, json_response
from bastion.logs import get_logger
from bastion.oauth.errors import OAuthError, TooManyRequests
from bastion.ops import metrics
from bastion.ops.http_metrics import UNMATCHED, starlette_route

log = get_logger("bastion.authserver")

PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def json_error(exc: OAuthError, request: Request) -> Response:
    """The JSON error response of a back-channel endpoint."""
    log.info(
        "%s %s -> %s: %s%s",
        request.method,
        request.url.path,
        exc.error,
        exc.description,
        f" ({exc.detail})" if exc.detail else "",
    )
    metrics.oauth_error(starlette_route(request.scope) or UNMATCHED, exc.error)
    headers = exc.headers()
    if exc.error == "invalid_token":
        # RFC 6750 §3.1: name the error only when credentials were sent at all.
        sent = "authorization" in request.headers
        headers["WWW-Authenticate"] = f'Bearer error="{exc.error}"' if sent else "Bearer"
    elif exc.status_code == 401:  # RFC 6749 §5.2: invalid_client answers with the Basic scheme
        headers["WWW-Authenticate"] = 'Basic realm="bastion"'
    return json_response(exc.body(), status=exc.status_code, headers=headers)


async def oauth_error_handler(request: Request, exc: Exception) -> Response:
    """The app's handler of an :class:`OAuthError` an endpoint raises: its JSON error response.
    Endpoints that answer a browser (authorization, interaction, federation) catch their
    errors themselves and answer with a redirect or a page instead."""
    if not isinstance(exc, OAuthError):  # registered for OAuthError only
        raise exc
    return json_error(exc, request)


def with_query(uri: str, params: dict[str, str]) -> str:
    """``uri`` with ``params`` appended to its query, keeping what is there (RFC 6749 §3.1.2)."""
    parts = urlsplit(uri)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def redirect_error(
    exc: OAuthError, redirect_uri: str, state: str | None, issuer: str
) -> RedirectResponse:
    """The authorization error response, sent to a verified redirect URI with ``iss``."""
    log.info("authorization error %s: %s", exc.error, exc.description)
    metrics.oauth_error("/authorize", exc.error)
    params = exc.body()
    if state is not None:
        params["state"] = state
    params["iss"] = issuer
    return RedirectResponse(with_query(redirect_uri, params), status_code=302, headers=NO_STORE)


def too_many_page(request: Request, exc: TooManyRequests) -> Response:
    """The page of a browser request refused by a quota: 429 with Retry-After (RFC 6585 §4)."""
    page = error_page(
        request,
        "Too many requests",
        f"{exc.description}. Try again in {exc.retry_after} seconds.",
        status=exc.status_code,
    )
    page.headers.update(exc.headers())
    return page


UNKNOWN_APPLICATION = (
    "This application is not known to this sign-in service, so you cannot sign in to it here. "
    "Tell the person or team that gave you the application; the details below are for them."
)


def error_page(
    request: Request, title: str, message: str, *, status: int = 400, hint: str | None = None
) -> Response:
    """An HTML page for errors that must not be redirected: ``message`` for the person,
    ``hint`` (technical) for the administrator they may show it to."""
    from bastion.authserver.context import server

    log.info("error page %s: %s%s", title, message, f" ({hint})" if hint else "")
    html = (
        server(request)
        .templates.get_template("error.html")
        .render(title=title, message=message, hint=hint)
    )
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


__all__ = [
    "PAGE_HEADERS",
    "UNKNOWN_APPLICATION",
    "error_page",
    "json_error",
    "oauth_error_handler",
    "redirect_error",
    "too_many_page",
    "with_query",
]
