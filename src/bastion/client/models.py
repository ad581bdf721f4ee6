"""Plain data the client works with: discovered metadata, client identities and tokens.

Secrets (client secrets, private keys, access and refresh tokens) are left out of reprs so they
never reach a log by accident (house rule 11).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from bastion.client.settings import AuthMethod, GrantType, SigningAlg
from bastion.oauth.server_metadata import AdvertisedMethods

Source = Literal["pre-registered", "cimd", "dcr", "legacy"]


@dataclass(frozen=True)
class ProtectedResourceMetadata:
    """A validated RFC 9728 §2 document (parsed as
    :class:`~bastion.oauth.protected_resource.ResourceMetadata`), with the URL it came from."""

    resource: str
    authorization_servers: tuple[str, ...]
    scopes_supported: tuple[str, ...] | None
    url: str
    raw: dict[str, object] = field(repr=False, compare=False)


@dataclass(frozen=True)
class AuthorizationServerMetadata(AdvertisedMethods):
    """A validated RFC 8414 §2 (or OpenID Connect Discovery §3) document (parsed as
    :class:`~bastion.oauth.server_metadata.ServerMetadata`), with the URL it came from."""

    issuer: str
    token_endpoint: str
    authorization_endpoint: str | None
    registration_endpoint: str | None
    scopes_supported: tuple[str, ...] | None
    code_challenge_methods_supported: tuple[str, ...] | None
    token_endpoint_auth_methods_supported: tuple[str, ...] | None
    grant_types_supported: tuple[str, ...] | None
    iss_parameter_supported: bool
    client_id_metadata_document_supported: bool
    url: str
    raw: dict[str, object] = field(repr=False, compare=False)


@dataclass(frozen=True)
class RegisteredClient:
    """A client identity at one authorization server (keyed by its issuer, checklist C09)."""

    issuer: str
    client_id: str
    source: Source
    token_endpoint_auth_method: AuthMethod = "none"
    client_secret: str | None = field(default=None, repr=False)
    private_key_pem: str | None = field(default=None, repr=False)
    signing_alg: SigningAlg = "ES256"
    key_id: str | None = None
    grant_type: GrantType = "authorization_code"
    redirect_uris: tuple[str, ...] = ()
    client_secret_expires_at: int | None = None

    def to_json(self) -> dict[str, object]:
        """The form stored by a :class:`~bastion.client.storage.TokenStorage`."""
        return {
            "issuer": self.issuer,
            "client_id": self.client_id,
            "source": self.source,
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "client_secret": self.client_secret,
            "redirect_uris": list(self.redirect_uris),
            "client_secret_expires_at": self.client_secret_expires_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RegisteredClient:
        """Read back :meth:`to_json` (only DCR registrations are stored)."""
        return cls(
            issuer=str(data["issuer"]),
            client_id=str(data["client_id"]),
            source=data.get("source", "dcr"),
            token_endpoint_auth_method=data.get("token_endpoint_auth_method", "none"),
            client_secret=data.get("client_secret"),
            redirect_uris=tuple(data.get("redirect_uris") or ()),
            client_secret_expires_at=data.get("client_secret_expires_at"),
        )


@dataclass(frozen=True)
class TokenSet:
    """Tokens for one MCP server from one authorization server (keyed by both).

    ``server_url`` is the canonical URL of the MCP endpoint; ``resource`` is the resource
    identifier sent as RFC 8707 ``resource`` (the PRM's ``resource``); ``requested_scopes`` is
    what the client asked for and ``granted_scopes`` what the token response said (None when it
    said nothing: RFC 6749 §5.1, then the grant equals the request).
    """

    server_url: str
    resource: str
    issuer: str
    token_endpoint: str
    client_id: str
    grant_type: GrantType
    access_token: str = field(repr=False)
    client_auth_method: AuthMethod = "none"
    token_type: str = "Bearer"
    expires_at: float | None = None
    refresh_token: str | None = field(default=None, repr=False)
    requested_scopes: tuple[str, ...] = ()
    granted_scopes: tuple[str, ...] | None = None
    obtained_at: float = 0.0
    dpop_jkt: str | None = None  # the DPoP key the grant proved (RFC 9449 §5), if any

    @property
    def dpop_bound(self) -> bool:
        """Whether the access token is DPoP-bound (token_type DPoP, RFC 9449 §5)."""
        return self.token_type == "DPoP"

    @property
    def authorization(self) -> str:
        """The Authorization header value: ``Bearer`` (RFC 6750 §2.1) or ``DPoP`` (RFC 9449
        §7.1, with a proof in the DPoP header); MCP: header only, checklist C13."""
        return f"{'DPoP' if self.dpop_bound else 'Bearer'} {self.access_token}"

    @property
    def effective_scopes(self) -> tuple[str, ...]:
        """The scopes this token carries as far as the client knows."""
        return self.granted_scopes if self.granted_scopes is not None else self.requested_scopes

    def expired(self, now: float, skew: float = 0.0) -> bool:
        """Whether the access token is expired, or will be within ``skew`` seconds."""
        return self.expires_at is not None and self.expires_at - skew <= now

    def with_changes(self, **changes: Any) -> TokenSet:
        """A copy with some fields replaced."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, object]:
        """The form stored by a :class:`~bastion.client.storage.TokenStorage`."""
        return {
            "server_url": self.server_url,
            "resource": self.resource,
            "issuer": self.issuer,
            "token_endpoint": self.token_endpoint,
            "client_id": self.client_id,
            "grant_type": self.grant_type,
            "client_auth_method": self.client_auth_method,
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": self.expires_at,
            "refresh_token": self.refresh_token,
            "requested_scopes": list(self.requested_scopes),
            "granted_scopes": None if self.granted_scopes is None else list(self.granted_scopes),
            "obtained_at": self.obtained_at,
            "dpop_jkt": self.dpop_jkt,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenSet:
        """Read back :meth:`to_json`."""
        granted = data.get("granted_scopes")
        return cls(
            server_url=str(data["server_url"]),
            resource=str(data["resource"]),
            issuer=str(data["issuer"]),
            token_endpoint=str(data["token_endpoint"]),
            client_id=str(data["client_id"]),
            grant_type=data.get("grant_type", "authorization_code"),
            access_token=str(data["access_token"]),
            client_auth_method=data.get("client_auth_method", "none"),
            token_type=str(data.get("token_type", "Bearer")),
            expires_at=data.get("expires_at"),
            refresh_token=data.get("refresh_token"),
            requested_scopes=tuple(data.get("requested_scopes") or ()),
            granted_scopes=None if granted is None else tuple(granted),
            obtained_at=float(data.get("obtained_at") or 0.0),
            dpop_jkt=data.get("dpop_jkt"),
        )


__all__ = [
    "AuthorizationServerMetadata",
    "ProtectedResourceMetadata",
    "RegisteredClient",
    "Source",
    "TokenSet",
]
