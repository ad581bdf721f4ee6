"""``/admin/people``: the people who sign in here, and what an administrator does to them."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.console.guard import Visit, console_page, quoted, refused
from bastion.store import users as user_rows

NOTICES = {
    "sessions_ended": "Their browser sessions have ended: they sign in again at their next visit.",
    "signed_in_again": "You signed in again. Repeat the action to go on.",
}


async def _person_or_404(visit: Visit) -> user_rows.User | Response:
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


@console_page()
async def person(visit: Visit) -> Response:
    """GET /admin/people/{username}: who they are and what can be done."""
    found = await _person_or_404(visit)
    if isinstance(found, Response):
        return found
    return visit.page(
        "person.html",
        section="/admin/people",
        person=found,
        path=f"/admin/people/{quoted(found.username)}",
        notice=visit.notice(NOTICES),
    )


@console_page(fresh=True)
async def end_sessions(visit: Visit) -> Response:
    """POST /admin/people/{username}/end-sessions: sign them out of every browser."""
    found = await _person_or_404(visit)
    if isinstance(found, Response):
        return found
    await visit.bastion.users.end_sessions(found.username)
    return visit.done(f"/admin/people/{quoted(found.username)}", "sessions_ended")


ROUTES: list[BaseRoute] = [
    Route("/admin/people/{username}", person, methods=["GET"]),
    Route("/admin/people/{username}/end-sessions", end_sessions, methods=["POST"]),
]

__all__ = ["NOTICES", "ROUTES", "end_sessions", "person"]
