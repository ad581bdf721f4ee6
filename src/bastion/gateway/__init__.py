"""The gateway: OAuth 2.1 in front of existing MCP servers (``bastion gateway``).

- :func:`create_gateway_app`: each configured upstream behind bastion's resource-server
  middleware, at its own path, resource URI and scope policy, with an audit record per request.
- :class:`HttpProxy`: a streaming reverse proxy to a streamable HTTP MCP server.
- :class:`StdioBridge`: a stdio MCP server served over streamable HTTP, one process per session.
- :func:`verify_identity_headers`: for upstream authors, checks the signed X-Bastion-* headers
  the gateway sends instead of the client's token (which is never forwarded).
"""

from bastion.gateway.app import create_gateway_app
from bastion.gateway.audit import AuditLog, AuditMiddleware
from bastion.gateway.http_proxy import HttpProxy
from bastion.gateway.identity import (
    ForwardedIdentity,
    IdentityError,
    sign_identity_headers,
    verify_identity_headers,
)
from bastion.gateway.stdio_bridge import StdioBridge

__all__ = [
    "AuditLog",
    "AuditMiddleware",
    "ForwardedIdentity",
    "HttpProxy",
    "IdentityError",
    "StdioBridge",
    "create_gateway_app",
    "sign_identity_headers",
    "verify_identity_headers",
]
