"""``/admin/people``: the people who sign in here, and what an administrator does to them."""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.console.account import DISCONNECTED, recent_sign_ins
from bastion.console.guard import Visit, console_page, is_admin, quoted, refused
from bastion.console.times import when
from bastion.identity.local import LastAdministratorError, UserExistsError
from bastion.identity.passwords import generate_password
from bastion.store import federation as links
from bastion.store import users as user_rows
from bastion.store.schema import linked_accounts, token_families
from bastion.store.users import User
from bastion.vault.connections import (
    ConnectionInfo,
    list_connections,
    remove_person,
    revoke_connection,
)

NOTICES = {
    "sessions_ended": "Their browser sessions have ended: they sign in again at their next visit.",
    "signed_in_again": "You signed in again. Repeat the action to go on.",
    "added": "They were added: they sign in with the password you typed.",
    "groups_changed": "Their groups were changed.",
    "groups_revoked": "Their groups were changed. Tokens carry the groups they were issued with, "
    "so every grant they gave was revoked: their applications ask them to sign in again.",
    "disabled": "They are disabled: their sessions have ended, every grant they gave is revoked, "
    "and they cannot sign in until enabled.",
    "enabled": "They are enabled: they can sign in again.",
    "password_set": "Their password was changed: their sessions have ended and every grant "
    "they gave is revoked.",
    "removed": "They were removed, with their sessions; every grant they gave is revoked, and "
    "their tokens at connected services were deleted and revoked there.",
    "removed_upstream_kept": "They were removed, with their sessions; every grant they gave is "
    "revoked and their tokens at connected services were deleted here, but not every service "
    "revoked them (see the server log): those stay valid there until they expire.",
    "made_admin": "They are an administrator of bastion now.",
    "unmade_admin": "They are no longer an administrator (unless one of their groups makes "
    "them one).",
}

# After an administrator removed one of their connections to upstream services.
NOTICES |= {f"disconnected_{outcome}": text for outcome, text in DISCONNECTED.items()}

# User names end up in page paths; groups are written separated by commas or spaces.
_USERNAME = re.compile(r"[^\s/\\\x00-\x1f\x7f]{1,255}")
_GROUP = re.compile(r"[^\s,\x00-\x1f\x7f]{1,200}")
_SEPARATORS = re.compile(r"[\s,]+")
MAX_GROUPS = 100


class InputError(ValueError):
    """A form field that cannot be used; the message says what to write."""


def parse_groups(text: str) -> list[str]:
    """The groups in ``text`` (separated by commas or spaces), each checked, in order, once."""
    names = list(dict.fromkeys(n for n in _SEPARATORS.split(text) if n))
    if len(names) > MAX_GROUPS:
        raise InputError(f"At most {MAX_GROUPS} groups at once.")
    for name in names:
        if not _GROUP.fullmatch(name):
            raise InputError(
                f"{name[:40]!r} is not a group name: at most 200 characters, no control "
                "characters (commas and spaces separate groups)."
            )
    return names


def _password(visit: Visit) -> tuple[str, bool]:
    """The password the form typed (checked like ``bastion users add`` does), or a generated
    one when both fields are empty; and whether it was generated."""
    typed, repeat = visit.form.get("password", [""])[0], visit.form.get("repeat", [""])[0]
    if not typed and not repeat:
        return generate_password(), True  # random, not chosen: no length rule for it
    least = visit.settings.login.min_password_length
    if len(typed) < least:
        raise InputError(
            f"The password has {len(typed)} characters; at least {least} are needed "
            "(login.min_password_length). A passphrase of a few words is easy to type; leave "
            "both password fields empty to have one generated."
        )
    if typed != repeat:
        raise InputError("The two passwords differ: type the same password twice.")
    return typed, False


def _admin_groups(visit: Visit) -> list[str]:
    return list(visit.settings.console.admin_groups)


async def _person_or_404(visit: Visit) -> User | Response:
    username = visit.request.path_params["username"]
    async with visit.bastion.db.connect() as conn:
        person = await user_rows.by_username(conn, username)
    if person is None:
        return refused(
            visit.request,
            visit.bastion,
            "No such person",
            f"No person called {username[:64]!r} signs in here. See the list of people.",
            404,
        )
    return person


async def _providers(conn: AsyncConnection) -> dict[str, list[str]]:
    """The identity providers each person has linked accounts at, by user id."""
    found: dict[str, list[str]] = {}
    q = sa.select(linked_accounts.c.user_id, linked_accounts.c.provider).order_by(
        linked_accounts.c.provider
    )
    for row in await conn.execute(q):
        found.setdefault(row.user_id, []).append(row.provider)
    return found


@dataclass(frozen=True)
class Listed:
    """A person as the list shows them."""

    user: User
    providers: list[str]
    admin: bool

    @property
    def path(self) -> str:
        """Their page."""
        return f"/admin/people/{quoted(self.user.username)}"


def _matches(user: User, query: str) -> bool:
    needle = query.casefold()
    return any(needle in (v or "").casefold() for v in (user.username, user.name, user.email))


@console_page()
async def people(visit: Visit) -> Response:
    """GET /admin/people: every person, or those whose user name, name or e-mail has ``q``."""
    query = visit.request.query_params.get("q", "").strip()[:200]
    async with visit.bastion.db.connect() as conn:
        everyone = await user_rows.list_all(conn)
        providers = await _providers(conn)
    shown = [
        Listed(u, providers.get(u.id, []), is_admin(visit.settings, u))
        for u in everyone
        if not query or _matches(u, query)
    ]
    return visit.page(
        "people.html",
        section="/admin/people",
        people=shown,
        total=len(everyone),
        query=query,
        notice=visit.notice(NOTICES),
    )


@console_page()
async def new_person(visit: Visit) -> Response:
    """GET /admin/people/new: the form to add a person who signs in with a password."""
    return _new_form(visit)


def _new_form(visit: Visit, *, status: int = 200, error: str | None = None) -> Response:
    return visit.page(
        "person_new.html",
        status=status,
        section="/admin/people",
        error=error,
        values={k: visit.field(k) for k in ("username", "name", "email", "groups")},
        admin_checked=bool(visit.field("is_admin")),
        least=visit.settings.login.min_password_length,
    )


@console_page()
async def add_person(visit: Visit) -> Response:
    """POST /admin/people: add a local person; a generated password is shown on this answer,
    once."""
    username, email, name = visit.field("username"), visit.field("email"), visit.field("name")
    try:
        if not _USERNAME.fullmatch(username):
            raise InputError(
                "A user name is needed: at most 255 characters, no spaces, slashes or control "
                "characters."
            )
        if username == "new":
            raise InputError('"new" is the name of this page: choose another user name.')
        if len(email) > 320 or (email and "@" not in email):
            raise InputError("The e-mail address is not one (name@example.com).")
        if len(name) > 255:
            raise InputError("The name is longer than 255 characters.")
        groups = parse_groups(visit.field("groups"))
        password, generated = _password(visit)
    except InputError as exc:
        return _new_form(visit, status=400, error=str(exc))
    try:
        await visit.bastion.users.add(
            username,
            password,
            email=email or None,
            name=name or None,
            groups=groups,
            is_admin=bool(visit.field("is_admin")),
        )
    except UserExistsError:
        message = f"A person called {username!r} already exists: choose another user name."
        return _new_form(visit, status=409, error=message)
    path = f"/admin/people/{quoted(username)}"
    if generated:
        return visit.page(
            "password_shown.html",
            section="/admin/people",
            title=f"{username} was added",
            username=username,
            password=password,
            path=path,
            why="They sign in with this password. Give it to them the way you give secrets.",
        )
    return visit.done(path, "added")


async def _person_page(
    visit: Visit, person: User, *, status: int = 200, error: str | None = None
) -> Response:
    now = visit.bastion.clock()
    async with visit.bastion.db.connect() as conn:
        linked = await links.links_of(conn, person.id)
        grants = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(token_families)
            .where(
                token_families.c.subject == person.id,
                token_families.c.revoked_at.is_(None),
                token_families.c.expires_at > now,
            )
        )
        sign_ins = await recent_sign_ins(visit, conn, person.id)
    connections = await list_connections(visit.bastion.db, user_id=person.id)
    groups = _admin_groups(visit)
    return visit.page(
        "person.html",
        status=status,
        section="/admin/people",
        person=person,
        path=f"/admin/people/{quoted(person.username)}",
        notice=visit.notice(NOTICES) if status == 200 else None,
        error=error,
        linked=linked,
        grants=int(grants or 0),
        connections=connections,
        connection_path=lambda c: _connection_path(person, c),
        sign_ins=sign_ins,
        admin_through=sorted(set(person.groups) & set(groups)),
        is_me=person.id == visit.user.id,
        least=visit.settings.login.min_password_length,
        when=when,
    )


def _connection_path(person: User, connection: ConnectionInfo) -> str:
    return (
        f"/admin/people/{quoted(person.username)}/connections/{quoted(connection.upstream)}/revoke"
    )


@console_page()
async def person(visit: Visit) -> Response:
    """GET /admin/people/{username}: who they are, how they sign in, and what can be done."""
    found = await _person_or_404(visit)
    if isinstance(found, Response):
        return found
    return await _person_page(visit, found)


@console_page(fresh=True)
async def end_sessions(visit: Visit) -> Response:
    """POST /admin/people/{username}/end-sessions: sign them out of every browser."""
    found = await _person_or_404(visit)
    if isinstance(found, Response):
        return found
    await visit.bastion.users.end_sessions(found.username)
    return visit.done(f"/admin/people/{quoted(found.username)}", "sessions_ended")


async def _last_admin(visit: Visit, person: User) -> Response:
    message = (
        f"Nothing was changed: {person.username} is the last administrator, and bastion would "
        "have no administrator left. Make someone else an administrator first."
    )
    return await _person_page(visit, person, status=409, error=message)


@console_page()
async def change_groups(visit: Visit) -> Response:
    """POST /admin/people/{username}/groups: add the groups typed in ``add`` and remove the
    ``remove`` ones."""
    found = await _person_or_404(visit)
    if isinstance(found, Response):
        return found
    try:
        add = parse_groups(visit.field("add"))
        remove = parse_groups(" ".join(visit.fields("remove")))
    except InputError as exc:
        return await _person_page(visit, found, status=400, error=str(exc))
    if not add and not remove:
        message = "Type a group to add, or choose one to remove."
        return await _person_page(visit, found, status=400, error=message)
    try:
        await visit.bastion.users.change_groups(
            found.username, add=add, remove=remove, admin_groups=_admin_groups(visit)
        )
    except LastAdministratorError:
        return await _last_admin(visit, found)
    dropped = set(remove) & set(found.groups)
    path = f"/admin/people/{quoted(found.username)}"
    return visit.done(path, "groups_revoked" if dropped else "groups_changed")


@console_page(fresh=True)
async def disable(visit: Visit) -> Response:
    """POST /admin/people/{username}/disable: no more sign-ins; sessions end, grants revoked."""
    found = await _person_or_404(visit)
    if isinstance(found, Response):
        return found
    try:
        await visit.bastion.users.set_disabled(
            found.username, True, admin_groups=_admin_groups(visit)
        )
    except LastAdministratorError:
        return await _last_admin(visit, found)
    return visit.done(f"/admin/people/{quoted(found.username)}", "disabled")


@console_page()
async def enable(visit: Visit) -> Response:
    """POST /admin/people/{username}/enable: they may sign in again."""
    found = await _person_or_404(visit)
    if isinstance(found, Response):
        return found
    await visit.bastion.users.set_disabled(found.username, False)
    return visit.done(f"/admin/people/{quoted(found.username)}", "enabled")


@console_page(fresh=True)
async def reset_password(visit: Visit) -> Response:
    """POST /admin/people/{username}/password: a new password (typed, or generated and shown on
    this answer once); their sessions end and every grant they gave is revoked."""
    found = await _person_or_404(visit)
    if isinstance(found, Response):
        return found
    if found.password_hash is None:
        message = (
            f"{found.username} signs in through an identity provider and has no password here: "
            "reset it at their provider."
        )
        return await _person_page(visit, found, status=409, error=message)
    try:
        password, generated = _password(visit)
    except InputError as exc:
        return await _person_page(visit, found, status=400, error=str(exc))
    await visit.bastion.users.set_password(found.username, password)
    path = f"/admin/people/{quoted(found.username)}"
    if generated:
        return visit.page(
            "password_shown.html",
            section="/admin/people",
            title=f"New password of {found.username}",
            username=found.username,
            password=password,
            path=path,
            why="Their sessions have ended and every grant they gave is revoked. They sign in "
            "with this password from now on.",
        )
    return visit.done(path, "password_set")


@console_page(fresh=True)
async def remove(visit: Visit) -> Response:
    """POST /admin/people/{username}/remove: delete them; every grant they gave is revoked."""
    found = await _person_or_404(visit)
    if isinstance(found, Response):
        return found
    bastion = visit.bastion
    try:
        removed = await remove_person(
            bastion.settings,
            bastion.users,
            bastion.cipher,
            found.username,
            admin_groups=_admin_groups(visit),
        )
    except LastAdministratorError:
        return await _last_admin(visit, found)
    kept = removed is not None and any(not c.revoked_upstream for c in removed.connections)
    return visit.done("/admin/people", "removed_upstream_kept" if kept else "removed")


@console_page(fresh=True)
async def disconnect(visit: Visit) -> Response:
    """POST /admin/people/{username}/connections/{upstream}/revoke: delete their connection to
    that upstream and revoke its tokens there (RFC 7009)."""
    found = await _person_or_404(visit)
    if isinstance(found, Response):
        return found
    bastion = visit.bastion
    done = await revoke_connection(
        bastion.settings, bastion.db, bastion.cipher, found.id,
        visit.request.path_params["upstream"], by_operator=True, clock=bastion.clock,
    )  # fmt: skip
    path = f"/admin/people/{quoted(found.username)}"
    if done is None:
        return await _person_page(
            visit, found, status=404, error="They have no connection to this service (any more)."
        )
    return visit.done(path, f"disconnected_{done.outcome}")


@console_page(fresh=True)
async def set_admin(visit: Visit) -> Response:
    """POST /admin/people/{username}/admin: ``make=1`` makes them an administrator of bastion,
    ``make=0`` no longer one."""
    found = await _person_or_404(visit)
    if isinstance(found, Response):
        return found
    make = visit.field("make") == "1"
    try:
        await visit.bastion.users.set_admin(found.username, make, admin_groups=_admin_groups(visit))
    except LastAdministratorError:
        return await _last_admin(visit, found)
    path = f"/admin/people/{quoted(found.username)}"
    return visit.done(path, "made_admin" if make else "unmade_admin")


ROUTES: list[BaseRoute] = [
    Route("/admin/people", people, methods=["GET"]),
    Route("/admin/people", add_person, methods=["POST"]),
    Route("/admin/people/new", new_person, methods=["GET"]),
    Route("/admin/people/{username}", person, methods=["GET"]),
    Route("/admin/people/{username}/end-sessions", end_sessions, methods=["POST"]),
    Route("/admin/people/{username}/groups", change_groups, methods=["POST"]),
    Route("/admin/people/{username}/disable", disable, methods=["POST"]),
    Route("/admin/people/{username}/enable", enable, methods=["POST"]),
    Route("/admin/people/{username}/password", reset_password, methods=["POST"]),
    Route("/admin/people/{username}/remove", remove, methods=["POST"]),
    Route("/admin/people/{username}/admin", set_admin, methods=["POST"]),
    Route("/admin/people/{username}/connections/{upstream}/revoke", disconnect, methods=["POST"]),
]

__all__ = [
    "MAX_GROUPS",
    "NOTICES",
    "ROUTES",
    "InputError",
    "Listed",
    "add_person",
    "change_groups",
    "disable",
    "disconnect",
    "enable",
    "end_sessions",
    "new_person",
    "parse_groups",
    "people",
    "person",
    "remove",
    "reset_password",
    "set_admin",
]
