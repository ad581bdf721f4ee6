"""Which scopes an MCP operation needs: per JSON-RPC method and per tool.

The middleware asks the policy for the scopes of each message of a request and answers a token
that lacks some with 403 ``insufficient_scope`` naming all of them at once (RFC 6750 §3.1; MCP
authorization, "Scope Challenge Handling": every scope the operation needs, in one challenge).
MCP also requires servers to honour scope hierarchies ("a broader scope implies narrower ones"),
which ``implies`` expresses: ``{"mcp:admin": ["mcp:tools", "mcp:tools:write"]}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bastion.oauth.protected_resource import OFFLINE_ACCESS

TOOLS_CALL = "tools/call"
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
    ) -> None:
        self.default = _scopes(default, "default")
        self.methods = {m: _scopes(s, f"methods[{m!r}]") for m, s in (methods or {}).items()}
        self.tools = {t: _scopes(s, f"tools[{t!r}]") for t, s in (tools or {}).items()}
        self.implies = {k: _scopes(v, f"implies[{k!r}]") for k, v in (implies or {}).items()}

    @property
    def inspects_messages(self) -> bool:
        """Whether some rule depends on the JSON-RPC method or tool (else only ``default``)."""
        return bool(self.methods or self.tools)

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
            f"tools={self.tools!r}, implies={self.implies!r})"
        )


class ScopePolicySettings(BaseModel):
    """The configuration form of :class:`ScopePolicy` (e.g. a TOML table per resource)::

    [policy]
    default = ["mcp:tools"]
    methods = { "tools/call" = ["mcp:tools"] }
    tools = { "delete_file" = ["files:write"] }
    implies = { "files:admin" = ["files:write"] }
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

    @field_validator("default", "methods", "tools", "implies")
    @classmethod
    def _valid(cls, value: object) -> object:
        items = value.values() if isinstance(value, dict) else [value]
        for scopes in items:
            _scopes(scopes, "policy")  # type: ignore[arg-type]
        return value

    def to_policy(self) -> ScopePolicy:
        """The policy these settings describe."""
        return ScopePolicy(self.default, self.methods, self.tools, implies=self.implies)


__all__ = ["TOOLS_CALL", "ScopePolicy", "ScopePolicySettings"]
