"""``/admin/access``: who may obtain tokens for which resource (access rules), what each tool
behind the gateway needs, and the check "can this person call this tool?".

A rule is added or removed through :mod:`bastion.access.admin` (the functions ``bastion access``
calls): a change ends at once the live grants the new rules no longer allow, and the notice
says how many. The check combines the authorization server's decision (the rules, read now)
with the scope policy of the gateway upstream that serves the resource.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.access import admin as access_admin
from bastion.access.rules import EVERY, KINDS, AccessRule
from bastion.authserver.admin import AdminError, resolve_resource
from bastion.config import Settings, UpstreamSettings
from bastion.console.guard import Visit, console_page
from bastion.edge.jsonrpc import TOOLS_CALL
from bastion.resource.policy import ScopePolicy
from bastion.store import users as user_rows
from bastion.store.users import User

NOTICES = {
    "rule_added": "The rule was added.",
    "rule_removed": "The rule was removed.",
    "signed_in_again": "You signed in again. Repeat the action to go on.",
}
WHO_KINDS = (
    (EVERY, "Every signed-in person"),
    ("user", "Person (user name)"),
    ("group", "Group"),
    ("domain", "E-mail domain"),
    ("idp", "Identity provider"),
    ("client", "Machine client (client id)"),
)


@dataclass(frozen=True)
class RuleView:
    """A rule as the page lists it: whether it is set on this resource or on every one."""

    rule: AccessRule
    own: bool


@dataclass(frozen=True)
class ResourceView:
    """A resource (or ``*``) with the rules that apply to it, people and machines apart."""

    uri: str
    name: str
    scopes: list[str]
    people: list[RuleView]
    machines: list[RuleView]

    @property
    def open_to_everyone(self) -> bool:
        """No rule about people applies: every signed-in person gets in."""
        return not self.people


@dataclass(frozen=True)
class ToolView:
    """What ``tools/call`` of one tool (None: any other tool) needs at an upstream."""

    tool: str | None
    scopes: list[str]
    groups: list[tuple[str, list[str]]]


@dataclass(frozen=True)
class UpstreamView:
    """A gateway upstream with its scope policy, tool by tool."""

    name: str
    path: str
    resource: str
    default: list[str]
    groups: list[str]
    tools: list[ToolView]


def resources_of(settings: Settings, rules: list[AccessRule]) -> list[ResourceView]:
    """Every configured resource, then ``*``, with the rules about it."""
    found = [(r.uri, r.name or r.uri, settings.scopes_of(r.uri)) for r in settings.resources]
    found.append((EVERY, "Every resource (*)", settings.all_scopes))
    views = []
    for uri, name, scopes in found:
        about = [RuleView(r, r.resource == uri) for r in rules if r.applies_to(uri)]
        if uri == EVERY:
            about = [v for v in about if v.rule.resource == EVERY]
        views.append(
            ResourceView(
                uri,
                name,
                scopes,
                [v for v in about if not v.rule.is_machine],
                [v for v in about if v.rule.is_machine],
            )
        )
    return views


def _tool_view(policy: ScopePolicy, tool: str | None) -> ToolView:
    rules = policy.group_rules(TOOLS_CALL, tool)
    return ToolView(
        tool,
        sorted(policy.required(TOOLS_CALL, tool)),
        [(about, sorted(groups)) for about, groups in rules],
    )


def upstreams_of(settings: Settings) -> list[UpstreamView]:
    """The gateway's upstreams (when configured) and what each named tool needs."""
    views = []
    for upstream in settings.gateway.upstreams:
        policy = upstream.policy.to_policy()
        named = sorted(set(policy.tools) | set(policy.tool_groups))
        tools = [_tool_view(policy, t) for t in named] + [_tool_view(policy, None)]
        views.append(
            UpstreamView(
                upstream.name,
                upstream.path,
                upstream.resource or "",
                sorted(policy.default),
                sorted(policy.groups),
                tools,
            )
        )
    return views


async def _page(visit: Visit, *, status: int = 200, error: str | None = None) -> Response:
    rules = await access_admin.list_rules(visit.settings, db=visit.bastion.db)
    notice = visit.notice(NOTICES)
    ended = visit.request.query_params.get("ended", "")
    if notice and ended.isdigit() and visit.request.query_params.get("notice") != "signed_in_again":
        count = int(ended)
        notice += f" It ended {count} live grant{'s' if count != 1 else ''} it no longer allows."
    return visit.page(
        "access.html",
        status=status,
        section="/admin/access",
        resources=resources_of(visit.settings, rules),
        upstreams=upstreams_of(visit.settings),
        kinds=WHO_KINDS,
        known=[(r.uri, r.name or r.uri) for r in visit.settings.resources],
        notice=notice,
        error=error,
        username="",
        resource="",
        tool="",
    )


@console_page()
async def access(visit: Visit) -> Response:
    """GET /admin/access: the rules by resource, the gateway's tools, the check form."""
    return await _page(visit)


def _who(visit: Visit) -> str:
    """The selector the form describes (kind and value); AdminError when incomplete."""
    kind = visit.field("kind")
    value = visit.field("value")
    if kind == EVERY:
        return EVERY
    if kind not in KINDS:
        raise AdminError("choose who the rule is about")
    if not value:
        raise AdminError(f"give the {kind} the rule is about (e.g. {kind}:NAME)")
    return f"{kind}:{value}"


@console_page()
async def allow(visit: Visit) -> Response:
    """POST /admin/access/allow: add (or replace) a rule; the notice says what it ended."""
    try:
        resource = visit.field("resource")
        if not resource:
            raise AdminError("choose the resource the rule is about")
        _, ended = await access_admin.allow(
            visit.settings, resource, _who(visit), visit.fields("scopes"), db=visit.bastion.db
        )
    except AdminError as exc:
        return await _page(visit, status=400, error=f"The rule was not added: {exc}")
    return visit.done("/admin/access", "rule_added", ended=str(ended))


@console_page(fresh=True)
async def remove(visit: Visit) -> Response:
    """POST /admin/access/remove: delete a rule; the notice says how many grants it ended."""
    try:
        ended = await access_admin.remove(
            visit.settings, visit.field("resource"), visit.field("who"), db=visit.bastion.db
        )
    except AdminError as exc:
        return await _page(visit, status=404, error=f"The rule was not removed: {exc}")
    return visit.done("/admin/access", "rule_removed", ended=str(ended))


@dataclass
class Answer:
    """The check's answer: yes or no, and every reason, each marked as met or not."""

    reasons: list[tuple[bool, str]] = field(default_factory=list)

    @property
    def yes(self) -> bool:
        """Whether every condition is met."""
        return all(ok for ok, _ in self.reasons)

    def add(self, ok: bool, text: str) -> None:
        """One more reason."""
        self.reasons.append((ok, text))


def _serving(settings: Settings, resource: str) -> UpstreamSettings | None:
    return next((u for u in settings.gateway.upstreams if u.resource == resource), None)


def _listed(rules: tuple[AccessRule, ...] | list[AccessRule]) -> str:
    return ", ".join(f"{r.who} ({' '.join(r.scopes)})" for r in rules)


async def answer(visit: Visit, user: User, resource: str, tool: str | None) -> Answer:
    """Can ``user`` obtain a token for ``resource`` and, with it, call ``tool`` (None: make
    any request) through the gateway upstream that serves it?"""
    out = Answer()
    settings = visit.settings
    scopes = settings.scopes_of(resource)
    if user.disabled:
        out.add(False, f"{user.username} is disabled: they cannot sign in.")
    async with visit.bastion.db.connect() as conn:
        decision = await visit.bastion.access.for_user(conn, user, resource, scopes)
    rules = await access_admin.list_rules(settings, resource, db=visit.bastion.db)
    people = [r for r in rules if not r.is_machine]
    if not decision.restricted:
        out.add(
            True,
            "No rule about people names this resource: every signed-in person may obtain "
            f"every scope it has ({' '.join(scopes)}).",
        )
    elif not decision.allowed:
        out.add(
            False,
            f"No rule admits {user.username}: the resource is for {_listed(people)} only.",
        )
    else:
        out.add(
            True,
            f"Admitted by {_listed(decision.rules)}: may obtain "
            f"{' '.join(sorted(decision.scopes)) or 'no scope'}.",
        )
    upstream = _serving(settings, resource)
    if upstream is None:
        if tool:
            out.add(False, f"No gateway upstream serves this resource, so no tool {tool} there.")
        return out
    policy = upstream.policy.to_policy()
    method = TOOLS_CALL if tool else None
    needed = policy.required(method, tool)
    what = f"tool {tool}" if tool else "a request"
    missing = policy.missing(decision.scopes, needed) if decision.allowed else needed
    if not needed:
        out.add(True, f"Upstream {upstream.name} needs no scope for {what}.")
    elif missing:
        out.add(
            False,
            f"Upstream {upstream.name} needs {' '.join(sorted(needed))} for {what}; missing: "
            f"{' '.join(sorted(missing))}.",
        )
    else:
        out.add(True, f"Upstream {upstream.name} needs {' '.join(sorted(needed))} for {what}.")
    for about, groups in policy.group_rules(method, tool):
        names = " or ".join(sorted(groups))
        if set(user.groups) & groups:
            out.add(True, f"{about.capitalize()} is for members of {names}: {user.username} is.")
        else:
            out.add(
                False,
                f"{about.capitalize()} is for members of {names}: {user.username} is in none "
                "of them.",
            )
    return out


@dataclass(frozen=True)
class Question:
    """What the check page was asked: a user name, a resource, and a tool or none."""

    username: str
    resource: str
    tool: str | None

    def page(
        self,
        visit: Visit,
        *,
        status: int = 200,
        error: str | None = None,
        result: Answer | None = None,
    ) -> Response:
        """The check page: the form filled in with the question, the answer or what is wrong."""
        return visit.page(
            "access_check.html",
            status=status,
            section="/admin/access",
            known=[(r.uri, r.name or r.uri) for r in visit.settings.resources],
            username=self.username,
            resource=self.resource,
            tool=self.tool or "",
            answer=result,
            error=error,
        )


@console_page()
async def check(visit: Visit) -> Response:
    """GET /admin/access/check?user=&resource=&tool=: may the person call the tool?"""
    query = visit.request.query_params
    asked = Question(
        (query.get("user") or "").strip(),
        (query.get("resource") or "").strip(),
        (query.get("tool") or "").strip() or None,
    )
    if not asked.username and not asked.resource:
        return asked.page(visit)
    if not asked.username or not asked.resource:
        return asked.page(visit, status=400, error="Give a person's user name and a resource.")
    try:
        resource = resolve_resource(visit.settings, asked.resource)
    except AdminError as exc:
        return asked.page(visit, status=400, error=str(exc))
    if resource == EVERY:
        return asked.page(visit, status=400, error="Choose one resource, not every resource.")
    async with visit.bastion.db.connect() as conn:
        user = await user_rows.by_username(conn, asked.username)
    if user is None:
        error = f"No person called {asked.username[:64]!r} signs in here."
        return asked.page(visit, status=404, error=error)
    asked = Question(asked.username, resource, asked.tool)
    return asked.page(visit, result=await answer(visit, user, resource, asked.tool))


ROUTES: list[BaseRoute] = [
    Route("/admin/access", access, methods=["GET"]),
    Route("/admin/access/check", check, methods=["GET"]),
    Route("/admin/access/allow", allow, methods=["POST"]),
    Route("/admin/access/remove", remove, methods=["POST"]),
]

__all__ = [
    "NOTICES",
    "ROUTES",
    "Answer",
    "Question",
    "ResourceView",
    "RuleView",
    "ToolView",
    "UpstreamView",
    "access",
    "allow",
    "answer",
    "check",
    "remove",
    "resources_of",
    "upstreams_of",
]
