"""Resource-server side of MCP authorization: protect any ASGI app with bastion's tokens.

- :class:`ResourceServerMiddleware`: Protected Resource Metadata (RFC 9728), Bearer and DPoP
  challenges (RFC 6750 §3, RFC 9449 §7), scope policy per JSON-RPC method and tool, Origin
  checks; :class:`ResourceDPoP`: how it checks DPoP-bound tokens (proofs, replay, nonces).
- :class:`JwtVerifier` (RFC 9068 via JWKS) and :class:`IntrospectionVerifier` (RFC 7662), both
  :class:`TokenVerifier`\\ s returning a :class:`Principal`.
- :class:`ScopePolicy` / :class:`ScopePolicySettings`: which scopes an operation needs.
- :class:`RevocationList` (a :class:`RevocationCheck`): revoked grants and tokens, refused by a
  verifier given it, cached tokens included; :class:`HttpRevocationFeed` keeps one current from
  the authorization server's ``<issuer>/revocations``.

The adapter for the official ``mcp`` SDK lives in :mod:`bastion.resource.mcp_sdk` (it imports
``mcp``, an optional dependency).
"""

from bastion.edge.jsonrpc import RpcCall, rpc_calls
from bastion.resource.dpop import ResourceDPoP
from bastion.resource.introspection import IntrospectionVerifier
from bastion.resource.jwt_verifier import DEFAULT_ALGORITHMS, SUPPORTED_ALGORITHMS, JwtVerifier
from bastion.resource.middleware import ResourceServerMiddleware
from bastion.resource.policy import ScopePolicy, ScopePolicySettings
from bastion.resource.principal import Principal
from bastion.resource.revocation import RevocationCheck, RevocationList
from bastion.resource.revocation_feed import HttpRevocationFeed
from bastion.resource.verifier import TokenVerifier

__all__ = [
    "DEFAULT_ALGORITHMS",
    "SUPPORTED_ALGORITHMS",
    "HttpRevocationFeed",
    "IntrospectionVerifier",
    "JwtVerifier",
    "Principal",
    "ResourceDPoP",
    "ResourceServerMiddleware",
    "RevocationCheck",
    "RevocationList",
    "RpcCall",
    "ScopePolicy",
    "ScopePolicySettings",
    "TokenVerifier",
    "rpc_calls",
]
