"""Clients the tests register as an operator would (``bastion clients add``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bastion.authserver import admin
from bastion.config import Settings


@dataclass(frozen=True)
class MachineClient:
    """A confidential client_credentials client: its id and its client secret."""

    client_id: str
    secret: str

    @property
    def auth(self) -> tuple[str, str]:
        """HTTP Basic credentials for httpx (client_secret_basic, RFC 6749 §2.3.1)."""
        return (self.client_id, self.secret)


async def machine_client(
    settings: Settings,
    *,
    name: str,
    client_id: str | None = None,
    scope: str | None = "mcp:tools",
    resources: Sequence[str] = ("*",),
    introspects: Sequence[str] = (),
) -> MachineClient:
    """Pre-register a confidential client for the client_credentials grant (OAuth 2.1 §4.2),
    as an operator does: it may obtain tokens for ``resources`` with ``scope`` (all their scopes
    when None) and introspect the tokens of ``introspects``."""
    made = await admin.add_client(
        settings,
        client_id=client_id,
        name=name,
        redirect_uris=[],
        confidential=True,
        grant_types=["client_credentials"],
        scope=scope,
        resources=resources,
        introspects=introspects,
    )
    assert made.secret is not None
    return MachineClient(made.client.client_id, made.secret)
