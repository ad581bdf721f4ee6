"""Finding the client behind a client_id: the three registration routes of MCP 2026-07-28.

1. Pre-registered and dynamically registered clients (RFC 7591) live in the database.
2. A client_id that is an https URL is a Client ID Metadata Document, fetched and validated.
3. Anything else is unknown: refused, or, by the ``unknown_clients.policy = "loopback_public"``
   setting, admitted as a public client that may only redirect to loopback addresses. It is never
   stored: nothing is registered silently.
"""

from __future__ import annotations

import logging

from bastion.authserver.cimd import MetadataDocumentResolver
from bastion.authserver.http import is_vschar
from bastion.clock import Clock
from bastion.config import Settings
from bastion.oauth.client_metadata import ClientMetadata
from bastion.oauth.errors import InvalidClient
from bastion.oauth.redirect_uri import is_loopback_uri, matches
from bastion.store import clients as client_rows
from bastion.store.clients import Client
from bastion.store.database import Database

log = logging.getLogger("bastion.clients")

UNKNOWN_LOOPBACK = "unknown_loopback"


class ClientDirectory:
    """Resolves client_ids to :class:`Client` objects."""

    def __init__(
        self, db: Database, settings: Settings, resolver: MetadataDocumentResolver, clock: Clock
    ) -> None:
        self.db = db
        self.settings = settings
        self.resolver = resolver
        self.clock = clock

    async def find(self, client_id: str) -> Client:
        """The client for ``client_id``; raise InvalidClient with a reason when there is none."""
        if not client_id or len(client_id) > 2048:
            raise InvalidClient("client_id is missing or too long")
        if not is_vschar(client_id):
            raise InvalidClient("client_id has characters RFC 6749 appendix A.1 does not allow")
        async with self.db.connect() as conn:
            client = await client_rows.get(conn, client_id)
        if client is not None:
            secret_expired = client.secret_expires_at and client.secret_expires_at < self.clock()
            if secret_expired:
                raise InvalidClient(f"the secret of client {client_id} has expired")
            return client
        cimd = self.settings.cimd
        if cimd.enabled and self.resolver.is_metadata_document_id(
            client_id, allow_http=cimd.allow_private_addresses
        ):
            metadata = await self.resolver.resolve(client_id)
            return Client(client_id=client_id, origin="metadata_document", metadata=metadata)
        if self.settings.unknown_clients.policy == "loopback_public":
            log.warning(
                "admitting unregistered client_id %r as a public client limited to loopback "
                "redirect URIs (unknown_clients.policy = loopback_public)",
                client_id,
            )
            return Client(
                client_id=client_id,
                origin=UNKNOWN_LOOPBACK,
                metadata=ClientMetadata(
                    token_endpoint_auth_method="none",
                    grant_types=["authorization_code", "refresh_token"],
                    response_types=["code"],
                    application_type="native",
                    client_name=None,
                ),
            )
        raise InvalidClient(
            f"client_id {client_id!r} is not registered with this authorization server. Register "
            "it (`bastion clients add`), use dynamic registration, use a client ID metadata "
            "document URL, or set unknown_clients.policy = loopback_public"
        )

    @staticmethod
    def redirect_allowed(client: Client, redirect_uri: str) -> bool:
        """Exact redirect URI matching (loopback ports may vary, RFC 8252 §7.3)."""
        if client.origin == UNKNOWN_LOOPBACK:
            return is_loopback_uri(redirect_uri) and "#" not in redirect_uri
        return matches(redirect_uri, client.metadata.redirect_uris)


__all__ = ["UNKNOWN_LOOPBACK", "ClientDirectory"]
