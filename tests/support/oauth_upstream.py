"""An OAuth-protected upstream MCP server made of real pieces, for the token vault's tests.

- Its authorization server is node-oidc-provider (:mod:`tests.support.oidc_provider`) at
  ``http://127.0.0.1:<port>/oidc``: JWT access tokens (RFC 9068, ES256) whose ``aud`` is the
  upstream's resource, refresh tokens whenever the client may use the grant, RFC 7009
  revocation, RFC 9207 ``iss`` in authorization responses; open Dynamic Client Registration
  (``registration``) and/or a pre-registered confidential client ``bastion`` whose one redirect
  URI is ``<bastion_issuer>/connect/callback`` (``bastion_issuer``).
- The upstream itself is an official ``mcp`` SDK server (streamable HTTP at
  ``http://127.0.0.1:<port>/mcp``) verifying those tokens with bastion's
  :class:`~bastion.resource.JwtVerifier` (the provider's JWKS, its issuer, ``aud`` = the
  resource). It serves its protected-resource metadata (RFC 9728) naming the provider, answers
  401 with ``WWW-Authenticate`` to a missing or invalid token, and has the tools ``whoami``
  (the token's ``sub`` at the provider), ``add_note`` and ``list_notes`` (notes per ``sub``).

The issuer has a path because the SDK writes URLs without one with a trailing slash
("http://127.0.0.1:1234/"), which is not the provider's issuer (RFC 8414 §3.3 compares them
exactly)::

    async with oauth_upstream(bastion_issuer=issuer) as up:
        settings.gateway.upstreams = [up.upstream_settings()]
"""

from __future__ import annotations

import contextlib
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

from bastion.config.gateway import UpstreamOAuthSettings, UpstreamSettings
from bastion.resource import JwtVerifier
from bastion.resource.mcp_sdk import McpTokenVerifier
from tests.support.live import free_port, serve
from tests.support.oidc_provider import OidcProvider, oidc_provider

UPSTREAM_SCOPES = ("notes:read", "notes:write")
BASTION_CLIENT = "bastion"


@dataclass
class OAuthUpstream:
    """A running upstream: its MCP endpoint (``url``, also its resource), its authorization
    server (``provider``), the pre-registered client (when made) and the notes written, per
    upstream ``sub``."""

    url: str
    provider: OidcProvider
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    notes: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def resource(self) -> str:
        """The upstream's resource (RFC 8707), the ``aud`` of its tokens."""
        return self.url

    @property
    def issuer(self) -> str:
        """The provider's issuer."""
        return self.provider.issuer

    def upstream_settings(
        self, name: str = "notes", path: str = "/mcp/notes", **oauth: Any
    ) -> UpstreamSettings:
        """A gateway upstream for this server with ``auth = "oauth"``: loopback addresses
        allowed; the pre-registered client unless ``oauth`` says otherwise."""
        values: dict[str, Any] = {"allow_private_addresses": True}
        if self.client_id is not None and oauth.get("registration") in (None, "pre-registered"):
            values.update(client_id=self.client_id, client_secret=self.client_secret)
        values.update(oauth)
        return UpstreamSettings(
            name=name, path=path, url=self.url, auth="oauth", oauth=UpstreamOAuthSettings(**values)
        )


def notes_server(upstream: OAuthUpstream, verifier: McpTokenVerifier) -> MCPServer:
    """The upstream's MCP server: tools that answer for the token's subject."""
    server = MCPServer(
        "upstream-notes",
        token_verifier=verifier,
        auth=AuthSettings(
            issuer_url=upstream.issuer,  # type: ignore[arg-type]
            resource_server_url=upstream.url,  # type: ignore[arg-type]
            validate_token_resource=True,
            # Also the metadata's scopes_supported (what bastion asks for by default).
            required_scopes=list(UPSTREAM_SCOPES),
        ),
    )

    def subject() -> str:
        token = get_access_token()
        assert token is not None and token.subject, "the SDK let a request without a token in"
        return token.subject

    @server.tool()
    def whoami() -> str:
        """The caller's account at this upstream (the token's sub)."""
        return subject()

    @server.tool()
    def add_note(text: str) -> str:
        """Write a note in the caller's notebook."""
        notes = upstream.notes[subject()]
        notes.append(text)
        return f"note {len(notes)} saved for {subject()}"

    @server.tool()
    def list_notes() -> list[str]:
        """The caller's notes."""
        return list(upstream.notes[subject()])

    return server


@contextlib.asynccontextmanager
async def oauth_upstream(
    *,
    bastion_issuer: str | None = None,
    registration: bool = True,
    ttl: Mapping[str, int] | None = None,
    accounts: Mapping[str, Mapping[str, Any]] | None = None,
) -> AsyncIterator[OAuthUpstream]:
    """Start the provider and the upstream MCP server on loopback for the block.

    ``bastion_issuer``: pre-register the client ``bastion`` (client_secret_basic) with redirect
    URI ``<bastion_issuer>/connect/callback``; ``registration``: open Dynamic Client
    Registration; ``ttl``: the provider's lifetimes (e.g. ``{"AccessToken": 5}``)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    clients: list[dict[str, Any]] = []
    secret = secrets.token_urlsafe(24)
    if bastion_issuer is not None:
        clients.append(
            {
                "client_id": BASTION_CLIENT,
                "client_secret": secret,
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "redirect_uris": [f"{bastion_issuer.rstrip('/')}/connect/callback"],
                "token_endpoint_auth_method": "client_secret_basic",
            }
        )
    resource = {"uri": url, "scope": " ".join(UPSTREAM_SCOPES), "format": "jwt", "alg": "ES256"}
    async with oidc_provider(
        resources=[resource],
        clients=clients,
        mount_path="/oidc",
        registration=registration,
        refresh_tokens="always",
        ttl=ttl,
        accounts=accounts,
    ) as op:
        upstream = OAuthUpstream(
            url=url,
            provider=op,
            client_id=BASTION_CLIENT if bastion_issuer is not None else None,
            client_secret=secret if bastion_issuer is not None else None,
        )
        async with JwtVerifier(issuer=op.issuer, audience=url, jwks_uri=op.jwks_uri) as jwt:
            server = notes_server(upstream, McpTokenVerifier(jwt, resource=url))
            async with serve(server.streamable_http_app(streamable_http_path="/mcp"), port=port):
                yield upstream


__all__ = ["BASTION_CLIENT", "UPSTREAM_SCOPES", "OAuthUpstream", "notes_server", "oauth_upstream"]
