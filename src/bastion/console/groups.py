"""``/admin/groups``: every group people are in or rules name, its members and what it opens.

A group exists where something names it: a person's groups (local, or from an identity
provider at each sign-in), an access rule ``group:NAME``, or ``console.admin_groups``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.access.rules import EVERY, AccessRule
from bastion.console.guard import Visit, console_page, quoted, refused
from bastion.console.people import InputError, parse_groups
from bastion.identity.local import LastAdministratorError
from bastion.store import access as rule_rows
from bastion.store import users as user_rows
from bastion.store.users import User

NOTICES = {
    "member_added": "They were added to the group.",
    "member_removed": "They were removed from the group; every grant they gave was revoked "
    "(tokens carry the groups they were issued with).",
    "group_emptied": "They were removed from the group, its last member; nothing names it now. "
    "Every grant they gave was revoked (tokens carry the groups they were issued with).",
}


@dataclass(frozen=True)
class Opening:
    """An access rule that names a group, as the page shows it."""

    resource: str
    scopes: str


@dataclass
class Group:
    """A group: who is in it, which access rules name it, whether it makes administrators."""

    name: str
    members: list[User] = field(default_factory=list)
    rules: list[Opening] = field(default_factory=list)
    admin: bool = False

    @property
    def path(self) -> str:
        """Its page."""
        return f"/admin/groups/{quoted(self.name)}"


def _opening(visit: Visit, rule: AccessRule) -> Opening:
    names = {r.uri: r.name or r.uri for r in visit.settings.resources}
    resource = "every resource" if rule.resource == EVERY else names.get(rule.resource)
    scopes = "all scopes" if rule.scopes == (EVERY,) else " ".join(rule.scopes)
    return Opening(resource or rule.resource, scopes)


async def all_groups(visit: Visit) -> dict[str, Group]:
    """Every group, by name."""
    async with visit.bastion.db.connect() as conn:
        people = await user_rows.list_all(conn)
        rules = await rule_rows.list_rules(conn)
    found: dict[str, Group] = {}
    for person in people:
        for name in person.groups:
            found.setdefault(name, Group(name)).members.append(person)
    for rule in rules:
        if rule.who.startswith("group:"):
            name = rule.who.removeprefix("group:")
            found.setdefault(name, Group(name)).rules.append(_opening(visit, rule))
    for name in visit.settings.console.admin_groups:
        found.setdefault(name, Group(name)).admin = True
    return dict(sorted(found.items()))


@console_page()
async def groups(visit: Visit) -> Response:
    """GET /admin/groups: every group with its members, rules and whether it administers."""
    found = await all_groups(visit)
    return visit.page(
        "groups.html",
        section="/admin/groups",
        groups=list(found.values()),
        notice=visit.notice(NOTICES),
    )


async def _group_page(
    visit: Visit, name: str, *, status: int = 200, error: str | None = None
) -> Response:
    found = (await all_groups(visit)).get(name)
    if found is None:
        return refused(
            visit.request,
            visit.bastion,
            "No such group",
            f"Nobody is in a group called {name[:64]!r} and no rule names it. See the groups.",
            404,
        )
    return visit.page(
        "group.html",
        status=status,
        section="/admin/groups",
        group=found,
        error=error,
        notice=visit.notice(NOTICES) if status == 200 else None,
    )


@console_page()
async def group(visit: Visit) -> Response:
    """GET /admin/groups/{name}: one group, with forms to add and remove members."""
    return await _group_page(visit, visit.request.path_params["name"])


@console_page()
async def change_members(visit: Visit) -> Response:
    """POST /admin/groups/{name}: ``action=add`` puts ``username`` in the group,
    ``action=remove`` takes them out (their grants are revoked)."""
    name = visit.request.path_params["name"]
    username, action = visit.field("username"), visit.field("action")
    if action not in ("add", "remove") or not username:
        message = "Type the user name of the person to add."
        return await _group_page(visit, name, status=400, error=message)
    try:
        if parse_groups(name) != [name]:
            raise InputError(f"{name[:40]!r} is not a group name.")
    except InputError as exc:
        return refused(visit.request, visit.bastion, "Not a group", str(exc), 400)
    adding = action == "add"
    async with visit.bastion.db.connect() as conn:
        person = await user_rows.by_username(conn, username)
    if person is None:
        message = f"No person called {username[:64]!r} signs in here: check the user name."
        return await _group_page(visit, name, status=404, error=message)
    if not adding and name not in person.groups:
        message = f"{username[:64]} is not in this group: nothing was changed."
        return await _group_page(visit, name, status=409, error=message)
    try:
        changed = await visit.bastion.users.change_groups(
            username,
            add=[name] if adding else [],
            remove=[] if adding else [name],
            admin_groups=visit.settings.console.admin_groups,
        )
    except LastAdministratorError:
        message = (
            f"Nothing was changed: {username} is the last administrator, and bastion would "
            "have no administrator left. Make someone else an administrator first."
        )
        return await _group_page(visit, name, status=409, error=message)
    if changed is None:  # removed meanwhile
        message = f"No person called {username[:64]!r} signs in here any more."
        return await _group_page(visit, name, status=404, error=message)
    if adding:
        return visit.done(f"/admin/groups/{quoted(name)}", "member_added")
    if name not in await all_groups(visit):
        return visit.done("/admin/groups", "group_emptied")
    return visit.done(f"/admin/groups/{quoted(name)}", "member_removed")


ROUTES: list[BaseRoute] = [
    Route("/admin/groups", groups, methods=["GET"]),
    Route("/admin/groups/{name:path}", group, methods=["GET"]),
    Route("/admin/groups/{name:path}", change_members, methods=["POST"]),
]

__all__ = [
    "NOTICES",
    "ROUTES",
    "Group",
    "Opening",
    "all_groups",
    "change_members",
    "group",
    "groups",
]
