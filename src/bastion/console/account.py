"""``/account``: every signed-in person's own page.

What it shows is theirs only: how they sign in (a password, the identity-provider accounts
linked to them), their recent sign-ins, the applications they allowed (live grants and
remembered consents, by client) and the upstream services bastion holds tokens for on their
behalf (the token vault). What they can do is theirs only too: revoke an application (every
grant of theirs to that client, and the consent, so that it asks again), disconnect an
upstream service (its tokens deleted here and revoked there) and sign out of every other
browser. The client id or upstream name in a URL only selects among their own: another
person's grants and connections are never read nor touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.console.guard import Visit, console_page, quoted, refused
from bastion.console.times import when
from bastion.store import auth_audit
from bastion.store import clients as client_rows
from bastion.store import federation as federation_rows
from bastion.store import users as user_rows
from bastion.store.auth_audit import AuditRecord, Event, Filters
from bastion.store.schema import refresh_tokens, token_families
from bastion.tokens import secrets as opaque
from bastion.vault.connections import ConnectionInfo, Outcome, list_connections, revoke_connection

SIGN_INS_SHOWN = 20

NOTICES = {
    "revoked": "The application no longer has access. It asks you again if it needs access.",
    "others_ended": "You are signed out of every other browser; this one stays signed in.",
    "signed_in_again": "You signed in again. Repeat the action to go on.",
}

# After a connection was removed (by its owner or an administrator): what became of its tokens
# at the upstream, by Outcome.
DISCONNECTED = {
    Outcome.REVOKED: "The connection was removed and its tokens were revoked at the service. "
    "The next use of the service through bastion asks to connect again.",
    Outcome.NOT_OFFERED: "The connection was removed here. The service offers no way to revoke "
    "its tokens: they stay valid there until they expire.",
    Outcome.NOT_CONFIGURED: "The connection was removed here. The service is no longer set up "
    "in bastion, so its tokens were not revoked there: they stay valid until they expire.",
    Outcome.FAILED: "The connection was removed here, but revoking its tokens at the service "
    "failed (it could not be reached, or refused): they stay valid there until they expire, "
    "or until bastion's access is withdrawn in the account at that service.",
}
NOTICES |= {f"disconnected_{outcome}": text for outcome, text in DISCONNECTED.items()}


@dataclass
class Application:
    """A client the person allowed: its name, the servers and scopes, since when, last use."""

    client_id: str
    name: str
    resources: dict[str, str] = field(default_factory=dict)  # uri -> shown name
    scopes: set[str] = field(default_factory=set)
    since: int | None = None
    last_used: int | None = None
    grants: int = 0

    @property
    def path(self) -> str:
        """The application's revoke path below /account."""
        return f"/account/applications/{quoted(self.client_id)}/revoke"

    def seen(self, at: int, *, used: bool) -> None:
        """Widen ``since`` (and ``last_used``) with a grant or consent made at ``at``."""
        self.since = at if self.since is None else min(self.since, at)
        if used:
            self.last_used = at if self.last_used is None else max(self.last_used, at)


async def _client_name(conn: AsyncConnection, client_id: str) -> str:
    client = await client_rows.get(conn, client_id)
    if client is not None:
        return client.name
    document = await client_rows.get_document(conn, client_id)  # a metadata-document client
    name = document.document.get("client_name") if document is not None else None
    return name if isinstance(name, str) and name else client_id


async def applications_of(visit: Visit, conn: AsyncConnection) -> list[Application]:
    """The person's applications: live grants (last used: the newest refresh token the grant
    issued, at the code's redemption or a refresh) and remembered consents, by client."""
    now = visit.bastion.clock()
    names = {r.uri: r.name or r.uri for r in visit.settings.resources}
    last_issued = (
        sa.select(sa.func.max(refresh_tokens.c.issued_at))
        .where(refresh_tokens.c.family_id == token_families.c.id)
        .scalar_subquery()
    )
    q = (
        sa.select(token_families, last_issued.label("last_used"))
        .where(
            token_families.c.subject == visit.user.id,
            token_families.c.revoked_at.is_(None),
            token_families.c.expires_at > now,
        )
        .order_by(token_families.c.created_at)
    )
    found: dict[str, Application] = {}

    async def application(client_id: str) -> Application:
        if client_id not in found:
            found[client_id] = Application(client_id, await _client_name(conn, client_id))
        return found[client_id]

    for row in await conn.execute(q):
        app = await application(row.client_id)
        app.grants += 1
        app.seen(int(row.created_at), used=True)
        if row.last_used is not None:
            app.seen(int(row.last_used), used=True)
        app.scopes |= set(row.scope.split())
        app.resources |= {uri: names.get(uri, uri) for uri in row.resource.split()}
    for consent in await user_rows.list_consents(conn, user_id=visit.user.id):
        app = await application(consent.client_id)
        app.seen(consent.granted_at, used=False)
        app.scopes |= set(consent.scope.split())
        app.resources |= {uri: names.get(uri, uri) for uri in consent.resource.split()}
    return sorted(found.values(), key=lambda a: (a.name.lower(), a.client_id))


@dataclass(frozen=True)
class SignIn:
    """A sign-in or failed sign-in as the pages show it: the record, where to (an
    application's name, or "this console") and how (password, or the provider's label)."""

    record: AuditRecord
    where: str
    how: str


async def recent_sign_ins(visit: Visit, conn: AsyncConnection, user_id: str) -> list[SignIn]:
    """A person's newest sign-ins and failed sign-ins (at most :data:`SIGN_INS_SHOWN`)."""
    filters = Filters(subjects=[user_id], types=[Event.SIGN_IN, Event.SIGN_IN_FAILED])
    records = await auth_audit.page(conn, filters, before_id=0, limit=SIGN_INS_SHOWN)
    federation = visit.bastion.federation
    labels = {p.name: p.label for p in federation.providers} if federation else {}
    names: dict[str, str] = {}
    shown = []
    for record in records:
        if record.client_id is None:
            where = "this console"
        else:
            if record.client_id not in names:
                names[record.client_id] = await _client_name(conn, record.client_id)
            where = names[record.client_id]
        if record.method == "federated":
            how = labels.get(record.provider or "", record.provider or "an identity provider")
        else:
            how = record.method or "password"
        shown.append(SignIn(record, where, how))
    return shown


def connection_path(connection: ConnectionInfo) -> str:
    """The revoke path of a connection, below /account."""
    return f"/account/connections/{quoted(connection.upstream)}/revoke"


@console_page(admin=False)
async def account(visit: Visit) -> Response:
    """GET /account: who the person is, how they sign in, their sign-ins, applications and
    connected services."""
    async with visit.bastion.db.connect() as conn:
        links = await federation_rows.links_of(conn, visit.user.id)
        applications = await applications_of(visit, conn)
        sign_ins = await recent_sign_ins(visit, conn, visit.user.id)
    connections = await list_connections(visit.bastion.db, user_id=visit.user.id)
    federation = visit.bastion.federation
    labels = {p.name: p.label for p in federation.providers} if federation else {}
    return visit.page(
        "account.html",
        section="/account",
        has_password=visit.user.password_hash is not None,
        links=[(link, labels.get(link.provider, link.provider)) for link in links],
        applications=applications,
        connections=connections,
        connection_path=connection_path,
        sign_ins=sign_ins,
        notice=visit.notice(NOTICES),
        when=when,
    )


@console_page(admin=False)
async def revoke_application(visit: Visit) -> Response:
    """POST /account/applications/{client_id}/revoke: end every grant of the person's to that
    client and forget their consent (not another person's: only their own are looked up)."""
    client_id = visit.request.path_params["client_id"]
    async with visit.bastion.db.connect() as conn:
        mine = {a.client_id for a in await applications_of(visit, conn)}
    if client_id not in mine:
        return refused(
            visit.request,
            visit.bastion,
            "No such application",
            "You have not allowed this application anything, or it no longer has access. "
            "See your account.",
            404,
        )
    await visit.bastion.users.revoke_application(visit.user.id, client_id)
    return visit.done("/account", "revoked")


@console_page(admin=False)
async def disconnect(visit: Visit) -> Response:
    """POST /account/connections/{upstream}/revoke: delete the person's own connection to that
    upstream and revoke its tokens there (RFC 7009). Only their own connection is looked up:
    the upstream name never reaches another person's."""
    upstream = visit.request.path_params["upstream"]
    bastion = visit.bastion
    done = await revoke_connection(
        bastion.settings, bastion.db, bastion.cipher, visit.user.id, upstream,
        by_operator=False, clock=bastion.clock,
    )  # fmt: skip
    if done is None:
        return refused(
            visit.request,
            bastion,
            "No such connection",
            "You are not connected to this service, or the connection was already removed. "
            "See your account.",
            404,
        )
    return visit.done("/account", f"disconnected_{done.outcome}")


@console_page(admin=False)
async def end_other_sessions(visit: Visit) -> Response:
    """POST /account/sessions/end-others: sign the person out of every other browser."""
    await visit.bastion.users.end_other_sessions(visit.user.id, opaque.digest(visit.session_id))
    return visit.done("/account", "others_ended")


ROUTES: list[BaseRoute] = [
    Route("/account", account, methods=["GET"]),
    Route("/account/sessions/end-others", end_other_sessions, methods=["POST"]),
    Route("/account/applications/{client_id:path}/revoke", revoke_application, methods=["POST"]),
    Route("/account/connections/{upstream}/revoke", disconnect, methods=["POST"]),
]

__all__ = [
    "DISCONNECTED",
    "NOTICES",
    "ROUTES",
    "Application",
    "SignIn",
    "account",
    "applications_of",
    "connection_path",
    "disconnect",
    "end_other_sessions",
    "recent_sign_ins",
    "revoke_application",
]
