"""``/signin``: signing in to the console (``/admin``, ``/account``), and signing in again
before a destructive action, with a password or through an identity provider.

The password check is an application's (:mod:`bastion.authserver.password_sign_in`): the same
throttle, the same audit records (with no client id: the console is bastion's own), a new
session that replaces the browser's old one. The form is protected by the authorization
server's double-submit token, as its log-in form is, since there is no session yet.

A provider's button sends the browser to the provider as an application's log-in page does
(:func:`bastion.authserver.federation.send_to_provider`), with the console page to come back to
instead of an authorization request; signing in again asks the provider to authenticate anew.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from bastion.authserver.audit import audited
from bastion.authserver.context import AuthServer, server
from bastion.authserver.errors import PAGE_HEADERS
from bastion.authserver.federation import send_to_provider
from bastion.authserver.http import read_form, single
from bastion.authserver.interaction import (
    cookie_name,
    csrf_matches,
    csrf_token,
    current_user,
    set_cookie,
)
from bastion.authserver.password_sign_in import sign_in_with_password
from bastion.console.guard import console_path, refused
from bastion.console.render import html, see_other
from bastion.oauth.errors import OAuthError


def _next(bastion: AuthServer, value: str | None) -> str:
    return console_path(bastion, value) or urlsplit(bastion.issuer).path + "/account"


def _form(
    bastion: AuthServer,
    *,
    csrf: str,
    next_url: str,
    fresh: bool,
    status: int = 200,
    error: str | None = None,
    username: str = "",
) -> Response:
    context = {
        "base": urlsplit(bastion.issuer).path,
        "csrf": csrf,
        "next_url": next_url,
        "fresh": fresh,
        "error": error,
        "username": username,
        "local_users": bastion.settings.login.local_users,
        "providers": bastion.federation.providers if bastion.federation else [],
    }
    return html("signin.html", context, status=status, headers=PAGE_HEADERS)


async def show(request: Request) -> Response:
    """GET /signin: the sign-in form, or straight on when already signed in (unless ``fresh``:
    signing in again is asked for)."""
    bastion = server(request)
    next_url = _next(bastion, request.query_params.get("next"))
    fresh = request.query_params.get("fresh") == "1"
    user = await current_user(bastion, request)
    if not fresh and user is not None:
        return see_other(next_url)
    csrf, new = csrf_token(bastion, request)
    username = user.username if user is not None else ""
    response = _form(bastion, csrf=csrf, next_url=next_url, fresh=fresh, username=username)
    if new:
        set_cookie(bastion, response, "csrf", csrf, bastion.settings.login.session_ttl)
    return response


async def _sign_in_form(bastion: AuthServer, request: Request) -> dict[str, list[str]] | Response:
    """The posted sign-in form, or the page refusing it (unreadable, or without the browser's
    double-submit token)."""
    try:
        form = await read_form(request, 8192)
    except OAuthError as exc:
        return refused(request, bastion, "Invalid sign-in", exc.description, 400)
    if not csrf_matches(bastion, request, form):
        return refused(
            request,
            bastion,
            "Sign-in refused",
            "The form's security token does not match. Reload the page and try again.",
            403,
        )
    return form


@audited
async def submit(request: Request) -> Response:
    """POST /signin: check the user name and password, start a session, go on to ``next``."""
    bastion = server(request)
    form = await _sign_in_form(bastion, request)
    if isinstance(form, Response):
        return form
    next_url = _next(bastion, single(form, "next"))
    fresh = single(form, "fresh") == "1"
    username = single(form, "username") or ""
    outcome = await sign_in_with_password(
        bastion,
        request,
        username,
        single(form, "password") or "",
        client_id=None,
        previous_session=request.cookies.get(cookie_name(bastion, "session")),
    )
    if outcome.session is None:
        again = _form(
            bastion,
            csrf=single(form, "csrf") or "",
            next_url=next_url,
            fresh=fresh,
            status=outcome.status,
            error=outcome.error,
            username=username,
        )
        again.headers.update(outcome.refusal_headers())
        return again
    response = see_other(next_url, notice="signed_in_again") if fresh else see_other(next_url)
    set_cookie(bastion, response, "session", outcome.session, bastion.settings.login.session_ttl)
    return response


async def upstream(request: Request) -> Response:
    """POST /signin/upstream/{name}: sign in to the console through an identity provider (a
    button of the sign-in page); the provider's answer comes back to its callback, which starts
    the session and goes on to ``next``. With ``fresh`` (signing in again before a destructive
    action) the provider is asked to authenticate the person anew."""
    bastion = server(request)
    federation = bastion.federation
    name = request.path_params["name"]
    spec = federation.get(name) if federation is not None else None
    if federation is None or spec is None:
        shown = name[:64] if name.isprintable() else "?"
        return refused(
            request,
            bastion,
            "Unknown sign-in method",
            f"No identity provider called {shown!r} is configured here.",
            404,
        )
    form = await _sign_in_form(bastion, request)
    if isinstance(form, Response):
        return form
    return await send_to_provider(
        bastion,
        request,
        federation,
        spec,
        return_to=_next(bastion, single(form, "next")),
        reauthenticate=single(form, "fresh") == "1",
    )


__all__ = ["show", "submit", "upstream"]
