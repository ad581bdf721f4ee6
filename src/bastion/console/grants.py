"""``/admin/grants``: the live grants people gave clients, and their remembered consents.

Revoking a grant ends its refresh token and every access token it issued, everywhere (the
gateway and the registry hear of it within a second); withdrawing a consent makes the person
be asked again at their next authorization. Both go through :mod:`bastion.access.admin`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.access import admin as access_admin
from bastion.authserver import admin
from bastion.authserver.admin import AdminError
from bastion.console.guard import Visit, console_page, refused
from bastion.console.times import when

NOTICES = {
    "grant_revoked": "The grant was revoked: its tokens no longer work.",
    "grants_revoked": "The grants were revoked: their tokens no longer work.",
    "consent_withdrawn": "The consent was withdrawn: they will be asked again.",
    "signed_in_again": "You signed in again. Repeat the action to go on.",
}


@dataclass(frozen=True)
class GrantRow:
    """A live grant as the page lists it."""

    grant_id: str
    person: str
    client_id: str
    client_name: str
    resource: str
    scope: str
    since: str
    expires: str


@dataclass(frozen=True)
class ConsentRow:
    """A remembered consent as the page lists it."""

    username: str
    client_id: str
    client_name: str
    resource: str
    scope: str
    given: str


def _filters(visit: Visit) -> tuple[str | None, str | None]:
    query = visit.request.query_params
    person = (query.get("person") or "").strip() or None
    client = (query.get("client") or "").strip() or None
    return person, client


@console_page()
async def grants(visit: Visit) -> Response:
    """GET /admin/grants?person=&client=: the live grants and remembered consents."""
    person, client = _filters(visit)
    db = visit.bastion.db
    names = {c.client_id: c.name for c in await admin.list_clients(visit.settings, db=db)}
    if client is not None and client not in names:
        return refused(
            visit.request,
            visit.bastion,
            "No such client",
            f"No client has the id {client[:64]!r}. See the list of grants.",
            404,
        )
    try:
        found = await access_admin.list_grants(
            visit.settings, username=person, client_id=client, db=db
        )
        consents = await access_admin.list_consents(
            visit.settings, username=person, client_id=client, db=db
        )
    except AdminError:
        return refused(
            visit.request,
            visit.bastion,
            "No such person",
            f"No person called {(person or '')[:64]!r} signs in here. See the list of grants.",
            404,
        )
    rows = [
        GrantRow(
            g.grant_id,
            g.username or g.subject,
            g.client_id,
            names.get(g.client_id, g.client_id),
            g.resource,
            g.scope,
            when(g.created_at),
            when(g.expires_at),
        )
        for g in found
    ]
    remembered = [
        ConsentRow(
            c.username,
            c.client_id,
            names.get(c.client_id, c.client_id),
            c.resource,
            c.scope,
            when(c.granted_at),
        )
        for c in consents
    ]
    return visit.page(
        "grants.html",
        section="/admin/grants",
        grants=rows,
        consents=remembered,
        person=person or "",
        client=client or "",
        client_name=names.get(client or "", ""),
        back=_here(visit, person, client),
        notice=visit.notice(NOTICES),
    )


def _here(visit: Visit, person: str | None, client: str | None) -> str:
    """This page's path with its filters (where a stale sign-in comes back to)."""
    filters = {k: v for k, v in (("person", person), ("client", client)) if v}
    return visit.url("/admin/grants") + (f"?{urlencode(filters)}" if filters else "")


def _not_done(visit: Visit, title: str, exc: AdminError) -> Response:
    return refused(visit.request, visit.bastion, title, str(exc), 404)


def _done(visit: Visit, notice: str) -> Response:
    """Back to /admin/grants with the filters the form was sent under."""
    filters = {k: visit.field(k) for k in ("person", "client") if visit.field(k)}
    return visit.done("/admin/grants", notice, **filters)


@console_page(fresh=True)
async def revoke(visit: Visit) -> Response:
    """POST /admin/grants/revoke: revoke one grant (its refresh and access tokens)."""
    grant_id = visit.field("grant_id")
    if not grant_id:
        return refused(
            visit.request, visit.bastion, "Grant not revoked", "Name the grant to revoke.", 400
        )
    try:
        await access_admin.revoke_grants(visit.settings, grant_id=grant_id, db=visit.bastion.db)
    except AdminError as exc:
        return _not_done(visit, "Grant not revoked", exc)
    return _done(visit, "grant_revoked")


@console_page(fresh=True)
async def revoke_all(visit: Visit) -> Response:
    """POST /admin/grants/revoke-all: revoke every grant of a person (``username``) or of a
    client (``client_id``)."""
    username = visit.field("username") or None
    client_id = visit.field("client_id") or None
    if username is None and client_id is None:
        return refused(
            visit.request,
            visit.bastion,
            "Grants not revoked",
            "Name the person or the client whose grants are to be revoked.",
            400,
        )
    db = visit.bastion.db
    if client_id is not None and client_id not in {
        c.client_id for c in await admin.list_clients(visit.settings, db=db)
    }:
        return refused(
            visit.request, visit.bastion, "Grants not revoked", "No client has this id.", 404
        )
    try:
        await access_admin.revoke_grants(
            visit.settings, username=username, client_id=client_id, db=db
        )
    except AdminError as exc:
        return _not_done(visit, "Grants not revoked", exc)
    return _done(visit, "grants_revoked")


@console_page(fresh=True)
async def withdraw(visit: Visit) -> Response:
    """POST /admin/grants/withdraw-consent: forget a remembered consent."""
    try:
        await access_admin.withdraw_consent(
            visit.settings,
            visit.field("username"),
            visit.field("client_id"),
            visit.field("resource"),
            db=visit.bastion.db,
        )
    except AdminError as exc:
        return _not_done(visit, "Consent not withdrawn", exc)
    return _done(visit, "consent_withdrawn")


ROUTES: list[BaseRoute] = [
    Route("/admin/grants", grants, methods=["GET"]),
    Route("/admin/grants/revoke", revoke, methods=["POST"]),
    Route("/admin/grants/revoke-all", revoke_all, methods=["POST"]),
    Route("/admin/grants/withdraw-consent", withdraw, methods=["POST"]),
]

__all__ = [
    "NOTICES",
    "ROUTES",
    "ConsentRow",
    "GrantRow",
    "grants",
    "revoke",
    "revoke_all",
    "withdraw",
]
