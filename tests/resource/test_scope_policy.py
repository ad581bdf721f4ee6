"""Scopes per operation: MCP authorization "Scope Challenge Handling" (every scope the operation
needs, scope hierarchies) and "Refresh Tokens" (no offline_access in challenges, R08)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bastion.resource import RpcCall, ScopePolicy, ScopePolicySettings, rpc_calls

POLICY = ScopePolicy(
    default=["mcp:tools"],
    methods={"resources/read": ["files:read"], "tools/call": ["tools:call"]},
    tools={"delete_file": ["files:write"]},
    implies={"files:admin": ["files:write"], "files:write": ["files:read"]},
)


@pytest.mark.parametrize(
    ("method", "tool", "expected"),
    [
        (None, None, {"mcp:tools"}),
        ("tools/list", None, {"mcp:tools"}),
        ("resources/read", None, {"mcp:tools", "files:read"}),
        ("tools/call", "search", {"mcp:tools", "tools:call"}),
        ("tools/call", "delete_file", {"mcp:tools", "tools:call", "files:write"}),
        ("prompts/get", "delete_file", {"mcp:tools"}),  # tool rules apply to tools/call only
    ],
)
def test_r07_required_is_the_union_of_default_method_and_tool_scopes(
    method: str | None, tool: str | None, expected: set[str]
) -> None:
    assert POLICY.required(method, tool) == frozenset(expected)


def test_scope_hierarchy_is_followed_transitively() -> None:
    """MCP "Step-Up": a broader scope implies narrower ones; cycles do not loop."""
    assert POLICY.missing({"files:admin"}, {"files:read", "files:write"}) == frozenset()
    assert POLICY.missing({"files:read"}, {"files:write"}) == frozenset({"files:write"})
    looping = ScopePolicy(implies={"a": ["b"], "b": ["a", "c"]})
    assert looping.expand({"a"}) == frozenset({"a", "b", "c"})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"default": ["offline_access"]},
        {"tools": {"x": ["mcp:tools", "offline_access"]}},
        {"methods": {"tools/call": ["two words"]}},
        {"default": "mcp:tools"},
    ],
)
def test_r08_policy_refuses_offline_access_and_malformed_scopes(kwargs: dict[str, object]) -> None:
    """R08: offline_access is never challenged for; scopes are RFC 6749 §3.3 scope-tokens; a bare
    string (instead of a list) is a configuration mistake, not a list of characters."""
    with pytest.raises(ValueError, match=r"offline_access|scope-token|not the string"):
        ScopePolicy(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ScopePolicySettings.model_validate(kwargs)


def test_settings_build_the_same_policy() -> None:
    """The configuration form (a TOML table) gives the policy it describes."""
    settings = ScopePolicySettings.model_validate(
        {
            "default": ["mcp:tools"],
            "methods": {"tools/call": ["tools:call"]},
            "tools": {"delete_file": ["files:write"]},
            "implies": {"files:admin": ["files:write"]},
        }
    )
    policy = settings.to_policy()
    assert policy.required("tools/call", "delete_file") == frozenset(
        {"mcp:tools", "tools:call", "files:write"}
    )
    assert policy.missing({"mcp:tools", "tools:call", "files:admin"}, {"files:write"}) == set()
    with pytest.raises(ValidationError):
        ScopePolicySettings.model_validate({"defaults": ["typo"]})


def test_rpc_calls_reads_messages_and_batches() -> None:
    """JSON-RPC 2.0 §4 (request, notification) and §6 (batch); responses carry no method."""
    body = (
        b'[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},'
        b'{"jsonrpc":"2.0","method":"notifications/initialized"},'
        b'{"jsonrpc":"2.0","id":2,"result":{}},'
        b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":7}}, 5]'
    )
    assert rpc_calls(body) == [
        RpcCall("tools/call", "a"),
        RpcCall("notifications/initialized", None),
        RpcCall("tools/call", None),
    ]
    assert rpc_calls(b'{"method": "x", "params": {"name": 1, "name": 2}}') is None
    assert rpc_calls(b"[" * 100_000) is None
