"""Who may see a console page and send its forms.

Every page runs through :func:`console_page`:

1. The browser's session (the ``session`` cookie every sign-in sets) names the person; without
   one, the browser is sent to the console's sign-in with the page to come back to.
2. ``/admin`` pages need an administrator: a user made with ``--admin``, or a member of one of
   ``console.admin_groups``. Anyone else gets 403 and sees nothing of the page.
3. A form must come from this origin (``Origin`` and ``Sec-Fetch-Site``, where the browser sends
   them) and carry the session's CSRF token: an HMAC of the session id, so a token is worthless
   to anyone without the session cookie and ends with the session.
4. An action that removes, revokes, rotates, disables or resets (``fresh=True``) needs a sign-in
   at most ``console.fresh_sign_in`` seconds old; otherwise nothing is done and the person is
   asked to sign in again, then comes back to the page.
5. The records the action writes name the administrator: actor ``console:<user name>``.
6. After an action, this process forgets its cached clients and access rules, so the change
   holds at once here (other processes: NOTIFY on PostgreSQL, ``client_cache_ttl`` on SQLite).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from bastion.authserver.audit import REQUEST_ID
from bastion.authserver.context import AuthServer, server
from bastion.authserver.http import read_form, single
from bastion.authserver.interaction import cookie_name
from bastion.config import Settings
from bastion.console.render import html, see_other
from bastion.logs import get_logger
from bastion.oauth.errors import OAuthError
from bastion.store import auth_audit
from bastion.store import users as user_rows
from bastion.store.auth_audit import Context
from bastion.store.users import User
from bastion.tokens import secrets as opaque
from bastion.vault.upstream_server import RESERVED_NAMES

log = get_logger("bastion.console")

FORM_LIMIT = 65536
# Where a sign-in may send the browser back to: console pages only, never another site.
CONSOLE_PATHS = ("/admin", "/account")
# ... and the token vault's connect pages: /connect/<upstream>[?elicitation=<id>].
CONNECT_PATH = "/connect/"


def is_elicitation_id(value: str) -> bool:
    """Whether ``value`` has the form of a URL elicitation id (URL-safe base64, as the gateway
    makes them)."""
    return 0 < len(value) <= 64 and value.isascii() and all(c.isalnum() or c in "-_" for c in value)


def _connect_page(rest: str, query: str) -> bool:
    """``/connect/<name>`` with nothing but an optional ``elicitation=<id>`` query."""
    name = rest.removeprefix(CONNECT_PATH)
    if name == rest or not name or name in RESERVED_NAMES:
        return False
    if not name.isascii() or not all(c.isalnum() or c in "_.-" for c in name):
        return False
    key, _, value = query.partition("=")
    return not query or (key == "elicitation" and is_elicitation_id(value))


def is_admin(settings: Settings, user: User) -> bool:
    """Whether ``user`` may use ``/admin``: made an administrator, or in an admin group."""
    return user.is_admin or bool(set(user.groups) & set(settings.console.admin_groups))


def csrf_for(session_id: str) -> str:
    """The CSRF token of a session: only its holder can compute it."""
    mac = hmac.new(session_id.encode(), b"bastion console form", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def console_path(bastion: AuthServer, value: str | None) -> str | None:
    """``value`` if it is a path of a console page of this server (``/admin...`` or
    ``/account...`` under the issuer's path; no scheme, host, ``//``, backslash or dot
    segment), or of a connect page (``/connect/<upstream>``, optionally with
    ``?elicitation=<id>`` and nothing else)."""
    if not value or len(value) > 1024 or "\\" in value or "//" in value:
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 0x21 or ord(c) > 0x7E for c in value):
        return None
    if "%2e" in parts.path.lower() or any(s in (".", "..") for s in parts.path.split("/")):
        return None  # a browser resolves dot segments: /admin/../token is /token
    base = urlsplit(bastion.issuer).path
    rest = parts.path.removeprefix(base) if base else parts.path
    if rest == parts.path and base:
        return None
    if _connect_page(rest, parts.query):
        return value
    if not any(rest == p or rest.startswith(p + "/") for p in CONSOLE_PATHS):
        return None
    return value


@dataclass
class Visit:
    """A request to a console page by a signed-in person."""

    request: Request
    bastion: AuthServer
    user: User
    session_id: str
    signed_in_at: int
    admin: bool
    form: dict[str, list[str]] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        """The server's settings."""
        return self.bastion.settings

    @property
    def csrf(self) -> str:
        """The token every form of the page repeats."""
        return csrf_for(self.session_id)

    @property
    def fresh(self) -> bool:
        """Whether the sign-in is recent enough for a destructive action."""
        return self.bastion.clock() - self.signed_in_at <= self.settings.console.fresh_sign_in

    def url(self, path: str) -> str:
        """The path of ``path`` (``/admin/clients``) under the issuer's path."""
        return urlsplit(self.bastion.issuer).path + path

    def field(self, name: str) -> str:
        """A form field's value, stripped ("" when missing or repeated)."""
        return (single(self.form, name) or "").strip()

    def fields(self, name: str) -> list[str]:
        """Every value of a repeated form field (checkboxes), without empty ones."""
        return [v.strip() for v in self.form.get(name, []) if v.strip()]

    def notice(self, messages: Mapping[str, str]) -> str | None:
        """The message for the ``?notice=`` key a form's redirect set (only known ones: the
        query never puts text of its own on the page)."""
        return messages.get(self.request.query_params.get("notice", ""))

    def page(self, template: str, *, status: int = 200, **context: object) -> Response:
        """Render a console page with the layout's context."""
        context.setdefault("notice", None)
        layout = {
            "base": urlsplit(self.bastion.issuer).path,
            "me": self.user,
            "admin": self.admin,
            "csrf": self.csrf,
            "registry_enabled": self.settings.registry.enabled,
        }
        return html(template, {**layout, **context}, status=status)

    def done(self, path: str, notice: str, **query: str) -> Response:
        """After a form: 303 to the console page ``path`` with the ``notice`` key."""
        return see_other(self.url(path), notice=notice, **query)


Handler = Callable[[Visit], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def _same_origin(bastion: AuthServer, request: Request) -> bool:
    """Whether the form was sent by a page of this origin, by what the browser tells: a
    browser that sends neither header (an old one) relies on the CSRF token alone."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    issuer = urlsplit(bastion.issuer)
    return origin == f"{issuer.scheme}://{issuer.netloc}"


def refused(
    request: Request, bastion: AuthServer, title: str, message: str, status: int
) -> Response:
    """A console page that refuses: the reason and what to do, nothing of the page asked for."""
    log.info("console %s %s refused (%d): %s", request.method, request.url.path, status, title)
    base = urlsplit(bastion.issuer).path
    context = {"base": base, "title": title, "message": message}
    return html("refused.html", context, status=status)


def _back(bastion: AuthServer, request: Request, form: dict[str, list[str]]) -> str:
    """The page an action's form was on: its ``back`` field, else the action's parent path."""
    back = console_path(bastion, single(form, "back"))
    return back or request.url.path.rsplit("/", 1)[0]


async def browser_session(
    bastion: AuthServer, request: Request
) -> tuple[str, tuple[User, int] | None]:
    """The browser's session id (its cookie, "" when none) and, when that session is live, its
    person and the time they signed in."""
    sid = request.cookies.get(cookie_name(bastion, "session")) or ""
    if not sid:
        return sid, None
    async with bastion.db.connect() as conn:
        return sid, await user_rows.session_of(conn, opaque.digest(sid), bastion.clock())


def console_page(*, admin: bool = True, fresh: bool = False) -> Callable[[Handler], Endpoint]:
    """Make ``handler`` a console endpoint: signed in, an administrator when ``admin``; a POST
    passes the same-origin and CSRF checks and, when ``fresh``, a recent sign-in."""

    def wrap(handler: Handler) -> Endpoint:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            bastion = server(request)
            sid, found = await browser_session(bastion, request)
            if found is None:
                wanted = request.url.path
                if request.method == "GET" and request.url.query:
                    wanted += "?" + request.url.query
                signin = urlsplit(bastion.issuer).path + "/signin"
                return see_other(signin, next=wanted)
            user, signed_in_at = found
            allowed = is_admin(bastion.settings, user)
            if admin and not allowed:
                return refused(
                    request,
                    bastion,
                    "Administrators only",
                    f"You are signed in as {user.username}, who is not an administrator of "
                    "this server. Ask an administrator to make you one, or go to your account.",
                    403,
                )
            visit = Visit(request, bastion, user, sid, signed_in_at, allowed)
            if request.method == "POST":
                try:
                    visit.form = await read_form(request, FORM_LIMIT)
                except OAuthError as exc:
                    return refused(request, bastion, "Invalid form", exc.description, 400)
                sent = (single(visit.form, "csrf") or "").encode()
                if not _same_origin(bastion, request) or not hmac.compare_digest(
                    sent, visit.csrf.encode()
                ):
                    return refused(
                        request,
                        bastion,
                        "Form refused",
                        "This form did not come from this console page, or its page is older "
                        "than your sign-in. Reload the page and try again.",
                        403,
                    )
                if fresh and not visit.fresh:
                    signin = urlsplit(bastion.issuer).path + "/signin"
                    back = _back(bastion, request, visit.form)
                    return see_other(signin, next=back, fresh="1")
            context = Context(
                request_id=_request_id(request),
                enabled=bastion.settings.audit.enabled,
                actor=f"console:{user.username}",
            )
            with auth_audit.bind(context):
                response = await handler(visit)
            if request.method == "POST":
                # Whatever the action changed, this process sees it at once: its cached clients
                # and access rules are dropped (others hear of it through the database).
                bastion.clients.invalidate()
            return response

        return endpoint

    return wrap


def _request_id(request: Request) -> str | None:
    value = request.scope.get(REQUEST_ID)
    return value if isinstance(value, str) else None


def quoted(value: str) -> str:
    """``value`` as one path segment (client ids and user names in console URLs)."""
    return quote(value, safe="")


__all__ = [
    "CONSOLE_PATHS",
    "Handler",
    "Visit",
    "browser_session",
    "console_page",
    "console_path",
    "csrf_for",
    "is_admin",
    "is_elicitation_id",
    "quoted",
    "refused",
]
