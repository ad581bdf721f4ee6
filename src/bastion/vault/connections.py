"""The token vault's administrative side: whose connections there are, and ending them.

A connection is ended here first (its row deleted, with its audit record, in one transaction)
and revoked upstream after (RFC 7009, where the upstream's authorization server offers it),
with the tokens that row held: the upstream may be slow or down, and the person's tokens must
be gone from bastion whatever it answers. A revocation that fails is said in the result (and
logged): the tokens stay valid upstream until they expire there or are revoked there.

Nothing here returns or logs a token; the lists are of display records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import httpx
import sqlalchemy as sa

from bastion.authserver.admin import AdminError, database
from bastion.authserver.secret_key import cipher_for
from bastion.clock import Clock, system_clock
from bastion.config import Settings
from bastion.config.gateway import UpstreamSettings
from bastion.identity.local import LocalUsers
from bastion.logs import get_logger
from bastion.store import auth_audit
from bastion.store import upstream_connections as connection_rows
from bastion.store.auth_audit import AuditRecord, Event
from bastion.store.database import Database
from bastion.store.schema import upstream_connections, users
from bastion.store.sealed import connection_binding
from bastion.store.upstream_connections import Connection
from bastion.tokens.cipher import Cipher, SecretKeyError
from bastion.vault.errors import VaultError
from bastion.vault.upstream_server import UpstreamServer

log = get_logger("bastion.vault")


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """A connection as pages and ``bastion connections list`` show it: never its tokens."""

    user_id: str
    username: str | None
    upstream: str
    issuer: str
    scope: str | None
    created_at: int
    expires_at: int | None
    refreshed_at: int | None


async def list_connections(
    db: Database, *, user_id: str | None = None, upstream: str | None = None
) -> list[ConnectionInfo]:
    """The connections (of one person and/or to one upstream), by upstream then user name."""
    c = upstream_connections.c
    q = (
        sa.select(
            c.user_id, users.c.username, c.upstream, c.issuer, c.scope, c.created_at,
            c.expires_at, c.refreshed_at,
        )
        .outerjoin(users, users.c.id == c.user_id)
        .order_by(c.upstream, users.c.username, c.user_id)
    )  # fmt: skip
    if user_id is not None:
        q = q.where(c.user_id == user_id)
    if upstream is not None:
        q = q.where(c.upstream == upstream)
    async with db.connect() as conn:
        return [ConnectionInfo(*row) for row in await conn.execute(q)]


class Outcome(StrEnum):
    """What became of a deleted connection's tokens at the upstream."""

    REVOKED = "revoked"  # the authorization server accepted the RFC 7009 revocation
    NOT_OFFERED = "not_offered"  # it has no revocation endpoint
    NOT_CONFIGURED = "not_configured"  # no auth = "oauth" upstream of that name any more
    FAILED = "failed"  # it could not be reached, or refused


@dataclass(frozen=True, slots=True)
class Disconnected:
    """A connection deleted here, and what became of its tokens upstream (``message``: for the
    operator or the person, naming no token)."""

    user_id: str
    upstream: str
    outcome: Outcome
    message: str

    @property
    def revoked_upstream(self) -> bool:
        """Whether the upstream confirmed the revocation."""
        return self.outcome is Outcome.REVOKED


def oauth_upstream(settings: Settings, name: str) -> UpstreamSettings | None:
    """The configured upstream ``name`` with its own OAuth (``auth = "oauth"``), if any."""
    for upstream in settings.gateway.upstreams:
        if upstream.name == name and upstream.auth == "oauth":
            return upstream
    return None


def _stays_valid(upstream: str) -> str:
    return f"its tokens stay valid at {upstream} until they expire there or are revoked there"


async def revoke_upstream(
    settings: Settings,
    db: Database,
    cipher: Cipher,
    connection: Connection,
    *,
    http: httpx.AsyncClient | None = None,
) -> Disconnected:
    """Revoke a deleted connection's grant at its upstream (RFC 7009): the refresh token when
    there is one (revoking it ends the grant's access tokens too, RFC 7009 §2.1), else the
    access token. Never raises for the upstream's sake: the outcome says what happened."""
    name, user_id = connection.upstream, connection.user_id

    def result(outcome: Outcome, message: str) -> Disconnected:
        if outcome is not Outcome.REVOKED:  # the operator may have to revoke them upstream
            log.warning("connection of user %s to %s deleted, but %s", user_id, name, message)
        return Disconnected(user_id, name, outcome, message)

    configured = oauth_upstream(settings, name)
    if configured is None:
        return result(
            Outcome.NOT_CONFIGURED,
            f'{name} is no longer an upstream with auth = "oauth" in the configuration, so '
            f"nothing was revoked there: {_stays_valid(name)}",
        )
    if connection.refresh_token_encrypted is not None:
        sealed, kind, hint = connection.refresh_token_encrypted, "refresh", "refresh_token"
    else:
        sealed, kind, hint = connection.access_token_encrypted, "access", "access_token"
    server = UpstreamServer(configured, issuer=settings.issuer, db=db, cipher=cipher, http=http)
    try:
        token = cipher.decrypt(sealed, bound_to=connection_binding(user_id, name, kind)).decode()
        client = await server.client()
        if (client.issuer, client.client_id) != (connection.issuer, connection.client_id):
            return result(
                Outcome.FAILED,
                f"revoking at {name} was not tried: the connection was made with "
                f"{connection.issuer} (client {connection.client_id}), and bastion is now "
                f"{client.client_id} at {client.issuer}; {_stays_valid(name)}",
            )
        if not await server.revoke(token, hint=hint):
            return result(
                Outcome.NOT_OFFERED,
                f"{name}'s authorization server offers no revocation (RFC 7009): "
                f"{_stays_valid(name)}",
            )
    except (VaultError, httpx.HTTPError, OSError, SecretKeyError) as exc:
        detail = exc.detail if isinstance(exc, VaultError) else f"{type(exc).__name__}: {exc}"
        return result(Outcome.FAILED, f"revoking at {name} failed ({detail}); {_stays_valid(name)}")
    finally:
        await server.aclose()
    return result(Outcome.REVOKED, f"its tokens were revoked at {name} (RFC 7009)")


async def revoke_connection(
    settings: Settings,
    db: Database,
    cipher: Cipher,
    user_id: str,
    upstream: str,
    *,
    by_operator: bool,
    actor: str | None = None,
    clock: Clock = system_clock,
    http: httpx.AsyncClient | None = None,
) -> Disconnected | None:
    """End a person's connection to ``upstream``: delete it (with an audit record:
    ``upstream_disconnected`` when the person did it, ``admin.upstream_disconnected`` when an
    operator did; its actor ``actor``, else the one the caller bound, e.g. ``console:<name>``
    or ``cli:<os user>``) in one transaction, then revoke it upstream. None: they have no
    connection to ``upstream`` (nothing was done)."""
    async with db.transaction() as conn:
        gone = await connection_rows.delete_connection(conn, user_id, upstream)
        if gone is None:
            return None
        detail: dict[str, object] = {"upstream": upstream, "issuer": gone.issuer}
        if by_operator:
            username = await conn.scalar(sa.select(users.c.username).where(users.c.id == user_id))
            record = AuditRecord(
                Event.UPSTREAM_CONNECTION_REVOKED,
                auth_audit.millis(clock()),
                actor=actor,
                target_kind="user",
                target_id=user_id,
                detail={**detail, "username": username},
            )
        else:
            record = AuditRecord(
                Event.UPSTREAM_DISCONNECTED,
                auth_audit.millis(clock()),
                subject=user_id,
                actor=actor,
                detail={**detail, "by": "owner"},
            )
        await auth_audit.add(conn, record)
    return await revoke_upstream(settings, db, cipher, gone, http=http)


@dataclass(frozen=True, slots=True)
class PersonRemoved:
    """A person removed, and what became of each of their upstream connections."""

    username: str
    connections: list[Disconnected]


async def remove_person(
    settings: Settings,
    people: LocalUsers,
    cipher: Cipher,
    username: str,
    *,
    admin_groups: Sequence[str] | None = None,
    http: httpx.AsyncClient | None = None,
) -> PersonRemoved | None:
    """Remove a person (:meth:`LocalUsers.remove_person`: their grants revoked, their upstream
    connections deleted with them, one transaction), then revoke each connection at its
    upstream with the tokens the deleted rows held. None: no such person."""
    removed = await people.remove_person(username, admin_groups=admin_groups)
    if removed is None:
        return None
    results = [
        await revoke_upstream(settings, people.db, cipher, c, http=http)
        for c in removed.connections
    ]
    return PersonRemoved(username, results)


# -- operators' commands (``bastion connections``) -------------------------------------------------


async def _user_id(db: Database, username: str) -> str:
    async with db.connect() as conn:
        found = await conn.scalar(sa.select(users.c.id).where(users.c.username == username))
    if found is None:
        raise AdminError(f"no user {username!r}; see `bastion users list`")
    return str(found)


async def connections_for_operator(
    settings: Settings,
    *,
    username: str | None = None,
    upstream: str | None = None,
    db: Database | None = None,
) -> list[ConnectionInfo]:
    """``bastion connections list``: the connections of one person and/or to one upstream (a
    user name nobody has, or an upstream neither configured with ``auth = "oauth"`` nor
    connected to, is an :class:`AdminError`)."""
    async with database(settings, db) as store:
        user_id = await _user_id(store, username) if username is not None else None
        found = await list_connections(store, user_id=user_id, upstream=upstream)
        if upstream is not None and not found and oauth_upstream(settings, upstream) is None:
            raise AdminError(_unknown_upstream(settings, upstream))
        return found


def _unknown_upstream(settings: Settings, name: str) -> str:
    names = [u.name for u in settings.gateway.upstreams if u.auth == "oauth"]
    known = f'those with auth = "oauth": {", ".join(names)}' if names else "none has"
    return f'no upstream {name!r} with auth = "oauth" is configured ({known})'


async def revoke_for_operator(
    settings: Settings,
    username: str,
    upstream: str,
    *,
    db: Database | None = None,
    http: httpx.AsyncClient | None = None,
) -> Disconnected:
    """``bastion connections revoke``: end ``username``'s connection to ``upstream``
    (:func:`revoke_connection`, recorded as ``admin.upstream_disconnected``)."""
    async with database(settings, db) as store:
        user_id = await _user_id(store, username)
        done = await revoke_connection(
            settings, store, cipher_for(settings), user_id, upstream,
            by_operator=True, http=http,
        )  # fmt: skip
        if done is None:
            if oauth_upstream(settings, upstream) is None:
                raise AdminError(_unknown_upstream(settings, upstream))
            raise AdminError(
                f"{username} has no connection to {upstream}; see "
                f"`bastion connections list --user {username}`"
            )
        return done


__all__ = [
    "ConnectionInfo",
    "Disconnected",
    "Outcome",
    "PersonRemoved",
    "connections_for_operator",
    "list_connections",
    "oauth_upstream",
    "remove_person",
    "revoke_connection",
    "revoke_for_operator",
    "revoke_upstream",
]
