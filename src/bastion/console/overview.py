"""``/admin``: the overview an administrator lands on."""

from __future__ import annotations

import sqlalchemy as sa
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.console.guard import Visit, console_page
from bastion.store.schema import clients, token_families, users


@console_page()
async def overview(visit: Visit) -> Response:
    """GET /admin: counts of clients, people and live grants."""
    now = visit.bastion.clock()
    async with visit.bastion.db.connect() as conn:
        counts = {
            "Clients": await conn.scalar(sa.select(sa.func.count()).select_from(clients)),
            "People": await conn.scalar(sa.select(sa.func.count()).select_from(users)),
            "Live grants": await conn.scalar(
                sa.select(sa.func.count())
                .select_from(token_families)
                .where(token_families.c.revoked_at.is_(None), token_families.c.expires_at > now)
            ),
        }
    return visit.page("overview.html", section="/admin", counts=counts)


ROUTES: list[BaseRoute] = [Route("/admin", overview, methods=["GET"])]

__all__ = ["ROUTES", "overview"]
