"""Reading the audit trail for ``bastion audit``: filters in an operator's words (a user name,
a duration like ``24h``, a type prefix like ``admin.*``) turned into a query."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence

from bastion.authserver import audit
from bastion.authserver.admin import AdminError, database
from bastion.config import Settings
from bastion.registry.times import parse_rfc3339
from bastion.store.auth_audit import Event, Filters
from bastion.store.database import Database

_DURATION = re.compile(r"(\d{1,9})([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
TYPES = sorted(e.value for e in Event)


def since_millis(value: str, now_millis: int) -> int:
    """The start of a ``--since``: a duration back from now (``90m``, ``24h``, ``7d``, ``2w``)
    or an RFC 3339 time; ValueError saying what is accepted otherwise."""
    match = _DURATION.fullmatch(value.strip())
    if match is not None:
        return now_millis - int(match.group(1)) * _SECONDS[match.group(2)] * 1000
    try:
        return parse_rfc3339(value)
    except ValueError:
        raise ValueError(
            f"--since {value!r} is neither a duration (like 30m, 24h, 7d, 2w) nor an RFC 3339 "
            "time (like 2026-12-01T00:00:00Z)"
        ) from None


def check_types(types: Sequence[str]) -> list[str]:
    """``types`` if each is a known type or a prefix of some (``admin.*``); AdminError naming
    the known ones otherwise."""
    for wanted in types:
        prefix = wanted[:-1] if wanted.endswith("*") else None
        known = any(t.startswith(prefix) for t in TYPES) if prefix is not None else wanted in TYPES
        if not known:
            raise AdminError(f"no audit event type {wanted!r}; the types are: {', '.join(TYPES)}")
    return list(types)


async def trail(
    settings: Settings,
    *,
    username: str | None = None,
    client_id: str | None = None,
    types: Sequence[str] = (),
    since: int | None = None,
    until: int | None = None,
    limit: int | None = None,
    db: Database | None = None,
) -> AsyncIterator[dict[str, object]]:
    """The records matching the filters, oldest first, as JSON-lines objects (page by page);
    AdminError when ``username`` names nobody. ``db``: a running server's database (the
    console's export), else the database of ``settings``."""
    async with database(settings, db) as store:
        filters = await filters_of(
            store, username=username, client_id=client_id, types=types, since=since, until=until
        )
        async for line in audit.export(store, filters, newest=limit):
            yield line


async def filters_of(
    db: Database,
    *,
    username: str | None = None,
    client_id: str | None = None,
    types: Sequence[str] = (),
    since: int | None = None,
    until: int | None = None,
) -> Filters:
    """The query of the filters (a user name turned into the ids records hold); AdminError when
    ``username`` names nobody."""
    subjects = None
    if username is not None:
        async with db.connect() as conn:
            subjects = await audit.user_ids(conn, username)
        if subjects is None:
            raise AdminError(
                f"no user named {username!r} (see `bastion users list`); a removed user's "
                "records carry only their id: find it with --type admin.user_removed"
            )
    return Filters(subjects=subjects, client_id=client_id, types=types, since=since, until=until)


__all__ = ["TYPES", "check_types", "filters_of", "since_millis", "trail"]
