"""Adapter for servers built with the official ``mcp`` Python SDK.

The SDK's ``MCPServer`` (and the low-level ``Server.streamable_http_app``) accepts a
``token_verifier`` implementing ``mcp.server.auth.provider.TokenVerifier``: ``verify_token(token)
-> AccessToken | None``. :class:`McpTokenVerifier` implements it over any bastion
:class:`~bastion.resource.verifier.TokenVerifier`, so an SDK server verifies tokens exactly as
bastion does (signature, issuer, audience R04, expiry, typ)::

    verifier = JwtVerifier(issuer=..., audience="https://mcp.example.com/mcp", jwks_uri=...)
    server = MCPServer(
        "demo",
        token_verifier=McpTokenVerifier(verifier, resource="https://mcp.example.com/mcp"),
        auth=AuthSettings(
            issuer_url=..., resource_server_url="https://mcp.example.com/mcp",
            validate_token_resource=True, required_scopes=["mcp:tools"],
        ),
    )

The SDK then renders its own 401/403 answers (without the ``scope`` hint of R03 and with one
scope per 403). For bastion's full behaviour (per-method and per-tool scopes, 403 naming every
scope, 400 for query tokens, Origin checks) wrap the SDK's ASGI app in
:class:`~bastion.resource.middleware.ResourceServerMiddleware` instead.

Requires the ``mcp`` package (2.x).
"""

from __future__ import annotations

from mcp.server.auth.provider import AccessToken

from bastion.oauth.errors import InvalidToken
from bastion.oauth.protected_resource import check_resource
from bastion.resource.verifier import TokenVerifier


class McpTokenVerifier:
    """``mcp.server.auth.provider.TokenVerifier`` over a bastion verifier.

    ``resource`` is the resource the bastion verifier checks the audience against; it is
    reported as ``AccessToken.resource`` so the SDK's ``validate_token_resource`` check agrees.
    A refused token gives None (the SDK answers 401); an unreachable authorization server
    (``TemporarilyUnavailable``) propagates, so the SDK fails the request instead of telling the
    client its token is invalid. A DPoP-bound token (``cnf.jkt``) gives None too: the SDK never
    checks the DPoP proof that must come with it (RFC 9449 §7.2). ``AccessToken.client_id`` is
    the token's client_id, or its subject when it names none (the SDK requires one).
    """

    def __init__(self, verifier: TokenVerifier, *, resource: str) -> None:
        self.verifier = verifier
        self.resource = check_resource(resource)

    async def verify_token(self, token: str) -> AccessToken | None:
        """Verify ``token``; None when it must be refused."""
        try:
            principal = await self.verifier.verify(token)
        except InvalidToken:
            return None
        if principal.jkt is not None:
            # The SDK takes Bearer tokens only and never sees a DPoP proof: a DPoP-bound token
            # is refused (RFC 9449 §7.2). Wrap the app in ResourceServerMiddleware for DPoP.
            return None
        claims = dict(principal.claims)
        return AccessToken(
            token=token,
            client_id=principal.client_id or principal.subject,
            scopes=sorted(principal.scopes),
            expires_at=principal.expires_at,
            resource=self.resource,
            subject=principal.subject,
            claims=claims,
        )

    def __repr__(self) -> str:
        return f"McpTokenVerifier({self.verifier!r}, resource={self.resource!r})"


__all__ = ["McpTokenVerifier"]
