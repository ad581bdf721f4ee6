"""Which scopes (and groups) an MCP operation needs: per JSON-RPC method and per tool.

The middleware asks the policy for the scopes of each message of a request and answers a token
that lacks some with 403 ``insufficient_scope`` naming all of them at once (RFC 6750 §3.1; MCP
authorization, "Scope Challenge Handling": every scope the operation needs, in one challenge).
MCP also requires servers to honour scope hierarchies ("a broader scope implies narrower ones"),
which ``implies`` expresses: ``{"mcp:admin": ["mcp:tools", "mcp:tools:write"]}``.

Groups are the other half: ``tool_groups = {"add_note": ["editors"]}`` lets only members of
``editors`` (the token's ``groups`` claim) call ``add_note``. A missing group is answered 403
without a step-up challenge, since no scope a client could ask for would change it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bastion.edge.jsonrpc import TOOLS_CALL
from bastion.oauth.protected_resource import OFFLINE_ACCESS

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def _scopes(values: Iterable[str], where: str) -> frozenset[str]:
    if isinstance(values, str):
        raise ValueError(f"{where}: give a list of scopes, not the string {values!r}")
    out = frozenset(values)
    for scope in out:
        if not isinstance(scope, str) or not _SCOPE_TOKEN.fullmatch(scope):
            raise ValueError(f"{where}: {scope!r} is not one scope-token (RFC 6749 §3.3)")
        if scope == OFFLINE_ACCESS:
            raise ValueError(
                f"{where}: offline_access is not a resource requirement and must not be "
                "challenged for (MCP authorization, Refresh Tokens)"
            )
    return out


def _groups(values: Iterable[str], where: str) -> frozenset[str]:
    if isinstance(values, str):
        raise ValueError(f"{where}: give a list of groups, not the string {values!r}")
    out = frozenset(values)
    if not out:
        raise ValueError(f"{where}: name at least one group")
    for group in out:
        if not isinstance(group, str) or not group or len(group) > 255:
            raise ValueError(f"{where}: {group!r} is not a group name")
    return out


class ScopePolicy:
    """Scopes needed per operation: ``default`` for every request, plus ``methods[method]`` for a
    JSON-RPC method, plus ``tools[name]`` for ``tools/call`` of tool ``name``.

    ``implies`` maps a broader scope to the narrower ones it grants, transitively.
    """

    def __init__(
        self,
        default: Iterable[str] = (),
        methods: Mapping[str, Iterable[str]] | None = None,
        tools: Mapping[str, Iterable[str]] | None = None,
        *,
        implies: Mapping[str, Iterable[str]] | None = None,
        groups: Iterable[str] = (),
        method_groups: Mapping[str, Iterable[str]] | None = None,
        tool_groups: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.default = _scopes(default, "default")
        self.methods = {m: _scopes(s, f"methods[{m!r}]") for m, s in (methods or {}).items()}
        self.tools = {t: _scopes(s, f"tools[{t!r}]") for t, s in (tools or {}).items()}
        self.implies = {k: _scopes(v, f"implies[{k!r}]") for k, v in (implies or {}).items()}
        groups = tuple(groups) if not isinstance(groups, str) else groups
        # No groups (the default) means no group is needed; a rule that names none is refused.
        self.groups = _groups(groups, "groups") if groups else frozenset()
        self.method_groups = {
            m: _groups(g, f"method_groups[{m!r}]") for m, g in (method_groups or {}).items()
        }
        self.tool_groups = {
            t: _groups(g, f"tool_groups[{t!r}]") for t, g in (tool_groups or {}).items()
        }

    @property
    def inspects_messages(self) -> bool:
        """Whether some rule depends on the JSON-RPC method or tool (else only ``default``)."""
        return bool(self.methods or self.tools or self.method_groups or self.tool_groups)

    @property
    def uses_groups(self) -> bool:
        """Whether some operation needs a group."""
        return bool(self.groups or self.method_groups or self.tool_groups)

    def group_rules(self, method: str | None, tool: str | None) -> list[tuple[str, frozenset[str]]]:
        """What one message needs in groups: (what the rule is about, groups of which the caller
        must be in one), for every rule that applies."""
        rules = [("this server", self.groups)] if self.groups else []
        if method is not None and method in self.method_groups:
            rules.append((f"method {method}", self.method_groups[method]))
        if method == TOOLS_CALL and tool is not None and tool in self.tool_groups:
            rules.append((f"tool {tool}", self.tool_groups[tool]))
        return rules

    def missing_group(
        self, groups: Iterable[str], method: str | None, tool: str | None
    ) -> tuple[str, frozenset[str]] | None:
        """The first rule of :meth:`group_rules` that ``groups`` does not satisfy, or None."""
        have = set(groups)
        for about, needed in self.group_rules(method, tool):
            if not have & needed:
                return about, needed
        return None

    def required(self, method: str | None, tool: str | None) -> frozenset[str]:
        """The scopes one JSON-RPC message needs (``method`` None: a request without one)."""
        needed = set(self.default)
        if method is not None:
            needed |= self.methods.get(method, frozenset())
            if method == TOOLS_CALL and tool is not None:
                needed |= self.tools.get(tool, frozenset())
        return frozenset(needed)

    def expand(self, granted: Iterable[str]) -> frozenset[str]:
        """``granted`` plus every scope it implies (transitively; cycles are harmless)."""
        out = set(granted)
        todo = list(out)
        while todo:
            for narrower in self.implies.get(todo.pop(), ()):
                if narrower not in out:
                    out.add(narrower)
                    todo.append(narrower)
        return frozenset(out)

    def missing(self, granted: Iterable[str], required: Iterable[str]) -> frozenset[str]:
        """The scopes of ``required`` that ``granted`` (with its implied scopes) lacks."""
        return frozenset(required) - self.expand(granted)

    def __repr__(self) -> str:
        return (
            f"ScopePolicy(default={sorted(self.default)!r}, methods={self.methods!r}, "
            f"tools={self.tools!r}, implies={self.implies!r}, groups={sorted(self.groups)!r}, "
            f"method_groups={self.method_groups!r}, tool_groups={self.tool_groups!r})"
        )


class ScopePolicySettings(BaseModel):
    """The configuration form of :class:`ScopePolicy` (e.g. a TOML table per resource)::

    [policy]
    default = ["mcp:tools"]
    methods = { "tools/call" = ["mcp:tools"] }
    tools = { "delete_file" = ["files:write"] }
    implies = { "files:admin" = ["files:write"] }
    tool_groups = { "delete_file" = ["file-admins"] }
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: list[str] = Field(default_factory=list, description="Scopes every request needs.")
    methods: dict[str, list[str]] = Field(
        default_factory=dict, description="Extra scopes per JSON-RPC method, e.g. tools/call."
    )
    tools: dict[str, list[str]] = Field(
        default_factory=dict, description="Extra scopes for tools/call of a tool, by tool name."
    )
    implies: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Scope hierarchy: a broader scope and the narrower scopes it grants.",
    )
    groups: list[str] = Field(
        default_factory=list,
        description="Groups of which a caller must be in one for every request (the token's "
        "groups claim).",
    )
    method_groups: dict[str, list[str]] = Field(
        default_factory=dict, description="Groups of which a caller must be in one, per method."
    )
    tool_groups: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Groups of which a caller must be in one, per tool, e.g. "
        '{ add_note = ["editors"] }.',
    )

    @field_validator("default", "methods", "tools", "implies")
    @classmethod
    def _valid(cls, value: object) -> object:
        items = value.values() if isinstance(value, dict) else [value]
        for scopes in items:
            _scopes(scopes, "policy")  # type: ignore[arg-type]
        return value

    @field_validator("method_groups", "tool_groups")
    @classmethod
    def _valid_groups(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for key, groups in value.items():
            _groups(groups, f"policy group rule {key!r}")
        return value

    def to_policy(self) -> ScopePolicy:
        """The policy these settings describe."""
        return ScopePolicy(
            self.default,
            self.methods,
            self.tools,
            implies=self.implies,
            groups=self.groups,
            method_groups=self.method_groups,
            tool_groups=self.tool_groups,
        )


__all__ = ["ScopePolicy", "ScopePolicySettings"]
