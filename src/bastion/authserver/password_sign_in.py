"""Signing in with a local user name and password, the same for an authorization request's
log-in form and the console's: the throttle, the check, the audit record, a new session."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request

from bastion.authserver.context import AuthServer
from bastion.authserver.login_throttle import LoginThrottle, wait_message
from bastion.ops import metrics
from bastion.store import auth_audit
from bastion.store import users as user_rows
from bastion.store.auth_audit import AuditRecord, Event
from bastion.store.users import User
from bastion.tokens import secrets as opaque


@dataclass(frozen=True)
class PasswordSignIn:
    """What came of it: ``session`` (the new session id, for the cookie) and ``user`` when the
    name and password were right, ``wait`` seconds when the throttle refused to check them."""

    user: User | None = None
    session: str | None = None
    wait: int = 0

    @property
    def status(self) -> int:
        """The status of the form shown again after a refusal: 429 throttled, 401 wrong."""
        return 429 if self.wait else 401

    @property
    def error(self) -> str:
        """What the form shown again after a refusal tells the person."""
        return wait_message(self.wait) if self.wait else "The user name or password is not correct."

    def refusal_headers(self) -> dict[str, str]:
        """``Retry-After`` when throttled (RFC 6585 §4)."""
        return {"Retry-After": str(self.wait)} if self.wait else {}


def signed_in(
    user_id: str,
    client_id: str | None,
    address: str,
    now: int,
    method: str,
    provider: str | None = None,
) -> AuditRecord:
    """The record of a successful sign-in (password, or ``federated`` with its provider), for
    an application (``client_id``) or the console (None)."""
    return AuditRecord(
        Event.SIGN_IN,
        auth_audit.millis(now),
        subject=user_id,
        client_id=client_id,
        method=method,
        provider=provider,
        address=address or None,
    )


async def sign_in_with_password(
    bastion: AuthServer,
    request: Request,
    username: str,
    password: str,
    *,
    client_id: str | None,
    previous_session: str | None = None,
) -> PasswordSignIn:
    """Check ``username`` and ``password`` under the log-in throttle, record the outcome, and on
    success start a session (ending ``previous_session``, the browser's old one, if any)."""
    limits = bastion.settings.login
    now = bastion.clock()
    address = request.client.host if request.client else ""
    throttle = LoginThrottle(bastion.db, limits, address, username)
    wait = await throttle.admit(now)
    if wait:
        metrics.sign_in("password", "local", "throttled")
        return PasswordSignIn(wait=wait)
    user = await bastion.users.authenticate(username, password) if limits.local_users else None
    if user is None:
        metrics.sign_in("password", "local", "failed")
        async with bastion.db.transaction() as conn:
            await throttle.failed(conn, now)
            failed = await _failed_sign_in(conn, username, client_id, address, now)
            await auth_audit.add(conn, failed)
        return PasswordSignIn()
    sid = secrets.token_urlsafe(32)
    async with bastion.db.transaction() as conn:
        await throttle.succeeded(conn)
        if previous_session:
            await user_rows.end_session(conn, opaque.digest(previous_session))
        await user_rows.create_session(
            conn, opaque.digest(sid), user.id, now, now + limits.session_ttl
        )
        await auth_audit.add(conn, signed_in(user.id, client_id, address, now, "password"))
    metrics.sign_in("password", "local", "ok")
    return PasswordSignIn(user=user, session=sid)


async def _failed_sign_in(
    conn: AsyncConnection, username: str, client_id: str | None, address: str, now: int
) -> AuditRecord:
    """A wrong user name or password: the user's id when the name is theirs; an unknown name is
    not stored (people type passwords into it), only that it was unknown."""
    user = await user_rows.by_username(conn, username) if username else None
    outcome = "unknown_user" if user is None else "disabled" if user.disabled else "wrong_password"
    return AuditRecord(
        Event.SIGN_IN_FAILED,
        auth_audit.millis(now),
        outcome=outcome,
        subject=user.id if user else None,
        client_id=client_id,
        method="password",
        address=address or None,
    )


__all__ = ["PasswordSignIn", "sign_in_with_password", "signed_in"]
