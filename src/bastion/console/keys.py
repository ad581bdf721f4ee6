"""``/admin/keys``: the signing keys the authorization server publishes, and their rotation.

A new key is published at once; it signs after the pre-publication delay (``tokens.
key_prepublish``), or at once when asked. The running server reloads its keys right after, so
``/jwks`` shows the new key immediately; other processes reload within ``key_refresh`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.authserver import admin
from bastion.authserver.admin import AdminError, PublishedKey
from bastion.console.guard import Visit, console_page, refused
from bastion.console.times import when
from bastion.tokens.keys import ALGORITHMS

NOTICES = {
    "rotated": "A new signing key is published; it signs after the pre-publication delay.",
    "rotated_now": "A new signing key is published and signs from now on.",
    "signed_in_again": "You signed in again. Repeat the action to go on.",
}


@dataclass(frozen=True)
class KeyRow:
    """A published key as the page lists it."""

    kid: str
    alg: str
    active_from: str
    retiring_at: str
    state: str


def key_rows(keys: list[PublishedKey], now: int) -> list[KeyRow]:
    """The keys, newest first, each ``next`` (not signing yet), ``active`` (the one that signs
    now) or ``retiring`` (published until the tokens it signed have expired)."""
    signing = max((k.activates_at for k in keys if k.activates_at <= now), default=None)
    rows = []
    for k in sorted(keys, key=lambda k: k.activates_at, reverse=True):
        if k.activates_at > now:
            state = "next"
        elif k.activates_at == signing:
            state = "active"
        else:
            state = "retiring"
        rows.append(KeyRow(k.kid, k.alg, when(k.activates_at), when(k.retire_at), state))
    return rows


@console_page()
async def keys(visit: Visit) -> Response:
    """GET /admin/keys: the published keys and the rotation form."""
    published = await admin.list_keys(visit.settings, db=visit.bastion.db)
    return visit.page(
        "keys.html",
        section="/admin/keys",
        keys=key_rows(published, visit.bastion.clock()),
        algorithms=ALGORITHMS,
        current_alg=visit.settings.tokens.signing_alg,
        prepublish=visit.settings.tokens.key_prepublish,
        notice=visit.notice(NOTICES),
    )


@console_page(fresh=True)
async def rotate(visit: Visit) -> Response:
    """POST /admin/keys/rotate: publish a new key (``alg``; signing at once with ``now``) and
    make this server use the new key set at once."""
    now = visit.field("now") == "1"
    try:
        await admin.rotate_keys(
            visit.settings, now=now, alg=visit.field("alg") or None, db=visit.bastion.db
        )
    except AdminError as exc:
        return refused(visit.request, visit.bastion, "Key not rotated", str(exc), 400)
    await visit.bastion.keys.load()
    return visit.done("/admin/keys", "rotated_now" if now else "rotated")


ROUTES: list[BaseRoute] = [
    Route("/admin/keys", keys, methods=["GET"]),
    Route("/admin/keys/rotate", rotate, methods=["POST"]),
]

__all__ = ["NOTICES", "ROUTES", "KeyRow", "key_rows", "keys", "rotate"]
