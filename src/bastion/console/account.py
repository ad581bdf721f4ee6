"""``/account``: every signed-in person's own page."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.console.guard import Visit, console_page


@console_page(admin=False)
async def account(visit: Visit) -> Response:
    """GET /account: who the person is."""
    return visit.page("account.html", section="/account")


ROUTES: list[BaseRoute] = [Route("/account", account, methods=["GET"])]

__all__ = ["ROUTES", "account"]
