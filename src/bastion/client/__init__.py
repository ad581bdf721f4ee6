"""bastion's MCP client: OAuth for MCP servers and registries (MCP authorization 2026-07-28).

- :class:`BastionAuth` (``httpx.Auth``) and :class:`Authorizer` (the engine behind it);
- :func:`discover` and :class:`Trace` (``bastion doctor``);
- :class:`ClientSettings`, :class:`PreRegisteredClient`;
- :class:`TokenStorage` and its backends;
- :class:`RegistryClient` for MCP registries behind OAuth (and
  :mod:`bastion.client.registry_bridge`, the local https bridge for clients that send no token,
  with :mod:`~bastion.client.local_ca` and :mod:`~bastion.client.local_trust` for its certificate);
- :mod:`bastion.client.mcp_sdk` (``connect``) for the official ``mcp`` SDK (imported on demand,
  as it needs the ``mcp`` package).

Never imports the server side (``bastion.authserver``, ``bastion.store``, ``bastion.resource``,
``bastion.gateway``).
"""

from bastion.client.auth import BastionAuth
from bastion.client.authorizer import Authorizer
from bastion.client.browser import OpenUrl, headless_opener, open_in_browser
from bastion.client.discovery import (
    BearerChallenge,
    Discovery,
    bearer_challenge,
    discover,
)
from bastion.client.dpop import DPoPKey
from bastion.client.errors import (
    AssertionUnavailable,
    AuthorizationDenied,
    AuthorizationError,
    ClientError,
    DiscoveryError,
    RegistrationError,
    StorageError,
    TokenEndpointError,
)
from bastion.client.models import (
    AuthorizationServerMetadata,
    ProtectedResourceMetadata,
    RegisteredClient,
    TokenSet,
)
from bastion.client.registry import RegistryClient, RegistryError, ServerEntry, ServerPage
from bastion.client.settings import ClientSettings, EnterpriseIdp, PreRegisteredClient
from bastion.client.storage import FileStorage, KeyringStorage, MemoryStorage, TokenStorage
from bastion.client.trace import Trace, TraceStep

__all__ = [
    "AssertionUnavailable",
    "AuthorizationDenied",
    "AuthorizationError",
    "AuthorizationServerMetadata",
    "Authorizer",
    "BastionAuth",
    "BearerChallenge",
    "ClientError",
    "ClientSettings",
    "DPoPKey",
    "Discovery",
    "DiscoveryError",
    "EnterpriseIdp",
    "FileStorage",
    "KeyringStorage",
    "MemoryStorage",
    "OpenUrl",
    "PreRegisteredClient",
    "ProtectedResourceMetadata",
    "RegisteredClient",
    "RegistrationError",
    "RegistryClient",
    "RegistryError",
    "ServerEntry",
    "ServerPage",
    "StorageError",
    "TokenEndpointError",
    "TokenSet",
    "TokenStorage",
    "Trace",
    "TraceStep",
    "bearer_challenge",
    "discover",
    "headless_opener",
    "open_in_browser",
]
