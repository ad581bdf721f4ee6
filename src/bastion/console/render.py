"""Rendering the console's pages: one Jinja2 environment, the layout, strict headers.

The headers forbid every script, frame and foreign form target: ``form-action 'self'`` keeps a
console form from ever posting elsewhere (sign-in pages, whose federation buttons leave for an
identity provider, use the authorization server's page headers instead).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlencode

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse

from bastion.authserver.context import TEMPLATES as AUTH_TEMPLATES
from bastion.authserver.errors import PAGE_HEADERS
from bastion.authserver.http import NO_STORE

TEMPLATES = Path(__file__).parent / "templates"

CONSOLE_HEADERS: Mapping[str, str] = {
    **PAGE_HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    # Not no-referrer: under it a browser sends "Origin: null" with the console's own forms,
    # and the same-origin check needs their true origin. Other sites still get no referrer.
    "Referrer-Policy": "same-origin",
}

_environment = Environment(
    # The console's own templates; "auth/..." are the authorization server's (its sign-in
    # card and password form, shared by the console's sign-in page).
    loader=ChoiceLoader(
        [FileSystemLoader(TEMPLATES), PrefixLoader({"auth": FileSystemLoader(AUTH_TEMPLATES)})]
    ),
    autoescape=select_autoescape(["html"]),
    enable_async=False,
)


def environment() -> Environment:
    """The console's Jinja2 environment (autoescaped)."""
    return _environment


def html(
    template: str,
    context: Mapping[str, object],
    *,
    status: int = 200,
    headers: Mapping[str, str] = CONSOLE_HEADERS,
) -> HTMLResponse:
    """Render ``template`` with ``context`` into a response with the console's headers."""
    body = _environment.get_template(template).render(**context)
    return HTMLResponse(body, status_code=status, headers=dict(headers))


def see_other(url: str, **query: str) -> RedirectResponse:
    """303 to ``url`` (after a form), with ``query`` (e.g. ``notice=``) appended."""
    joiner = "&" if "?" in url else "?"
    target = f"{url}{joiner}{urlencode(query)}" if query else url
    return RedirectResponse(target, status_code=303, headers=dict(NO_STORE))


__all__ = ["CONSOLE_HEADERS", "TEMPLATES", "environment", "html", "see_other"]
