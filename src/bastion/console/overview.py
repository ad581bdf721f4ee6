"""``/admin``: the overview an administrator lands on: counts, the refusals of the last day,
and what needs their attention (open registration, an old signing key, a single
administrator, upstreams that do not answer)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.authserver import audit
from bastion.console.guard import Visit, console_page, is_admin
from bastion.console.reachability import check, targets_of
from bastion.store import auth_audit as audit_rows
from bastion.store import keys as key_rows
from bastion.store import rows
from bastion.store.auth_audit import Event
from bastion.store.schema import auth_audit, clients, token_families, users
from bastion.store.users import User

# Without a rotation setting of its own, a signing key this old is worth replacing.
KEY_AGE_WARNING = 90 * 86400
FAILURE_WINDOW = 86400
FAILURES_SHOWN = 10
REFUSALS = (Event.SIGN_IN_FAILED.value, Event.CONSENT_DENIED.value)


@dataclass(frozen=True)
class Attention:
    """Something that needs an administrator's attention, and what to do about it."""

    title: str
    advice: str


async def _people(conn: AsyncConnection, visit: Visit) -> tuple[int, int, int]:
    """How many people, administrators and disabled people there are."""
    found = await conn.execute(sa.select(users.c.is_admin, users.c.groups, users.c.disabled))
    people = admins = disabled = 0
    for row in found:
        people += 1
        disabled += bool(row.disabled)
        person = User("", "", None, groups=list(row.groups or []), is_admin=bool(row.is_admin))
        admins += is_admin(visit.settings, person) and not row.disabled
    return people, admins, disabled


async def _counts(conn: AsyncConnection, visit: Visit, now: int) -> dict[str, int]:
    by_origin = {
        row.origin: int(row.n)
        for row in await conn.execute(
            sa.select(clients.c.origin, sa.func.count().label("n")).group_by(clients.c.origin)
        )
    }
    people, admins, disabled = await _people(conn, visit)
    grants = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(token_families)
        .where(token_families.c.revoked_at.is_(None), token_families.c.expires_at > now)
    )
    counts = {"Clients": sum(by_origin.values())}
    labels = {
        "preregistered": "Clients made by an operator",
        "dynamic": "Self-registered clients",
        "metadata_document": "Clients by metadata document",
    }
    for origin, count in sorted(by_origin.items()):
        counts[labels.get(origin, f"Clients ({origin})")] = count
    counts |= {
        "People": people,
        "Administrators": admins,
        "Disabled people": disabled,
        "Live grants": int(grants or 0),
    }
    return counts


async def _failures(conn: AsyncConnection, now_ms: int) -> list[dict[str, object]]:
    c = auth_audit.c
    query = (
        sa.select(auth_audit)
        .where(
            c.at >= now_ms - FAILURE_WINDOW * 1000,
            sa.or_(c.type.in_(REFUSALS), c.outcome != "ok"),
        )
        .order_by(c.id.desc())
        .limit(FAILURES_SHOWN)
    )
    records = rows.every(audit_rows.AuditRecord, await conn.execute(query))
    names = await audit.user_names(conn, {r.subject for r in records if r.subject})
    lines = []
    for record in records:
        line = audit.line_of(record, names)
        search = {"type": record.type, "since": "24h"}
        if isinstance(line["user"], str) and not line["user"].startswith("("):
            search["user"] = line["user"]
        line["search"] = urlencode(search)
        lines.append(line)
    return lines


async def _key_warning(conn: AsyncConnection, now: int) -> tuple[int, Attention | None]:
    published = await key_rows.live(conn, now)
    active = [k.activates_at for k in published if k.activates_at <= now]
    if active and now - max(active) > KEY_AGE_WARNING:
        days = (now - max(active)) // 86400
        return len(published), Attention(
            f"The signing key is {days} days old",
            "Rotate it on the Keys page or with `bastion keys rotate`: tokens signed before "
            "stay valid until they expire, and verifiers pick the new key from the JWKS.",
        )
    return len(published), None


@console_page()
async def overview(visit: Visit) -> Response:
    """GET /admin: counts, the refusals of the last 24 hours, and warnings."""
    now = visit.bastion.clock()
    # The upstreams are checked while the database is read (at most reachability.TIMEOUT).
    reaches = asyncio.create_task(check(targets_of(visit.settings)))
    async with visit.bastion.db.connect() as conn:
        counts = await _counts(conn, visit, now)
        keys, key_warning = await _key_warning(conn, now)
        counts["Signing keys"] = keys
        failures = await _failures(conn, audit_rows.millis(now))
    warnings = []
    registration = visit.settings.registration
    if registration.enabled and registration.initial_access_token is None:
        warnings.append(
            Attention(
                "Anyone can register a client",
                "Dynamic client registration is open (registration.initial_access_token is not "
                "set): any application may register and ask people to sign in. Set an initial "
                "access token, or hand out registration tokens (`bastion registration-tokens "
                "add`), if only known applications should.",
            )
        )
    if key_warning is not None:
        warnings.append(key_warning)
    if counts["Administrators"] < 2:
        warnings.append(
            Attention(
                "You are the only administrator",
                "Should you lose your password, nobody could use this console. Make a second "
                "administrator (`bastion users add --admin`, or a member of console.admin_groups).",
            )
        )
    for reach in await reaches:
        if not reach.reachable:
            target = reach.target
            warnings.append(
                Attention(
                    f"The {target.kind} {target.name} does not answer",
                    f"{target.host}: {reach.reason}. Check that it runs and that this server "
                    "can reach it.",
                )
            )
    return visit.page(
        "overview.html", section="/admin", counts=counts, failures=failures, warnings=warnings
    )


ROUTES: list[BaseRoute] = [Route("/admin", overview, methods=["GET"])]

__all__ = ["FAILURES_SHOWN", "KEY_AGE_WARNING", "ROUTES", "Attention", "overview"]
