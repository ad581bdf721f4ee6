"""What the grant tables hold, as values: a pending authorization request, an authorization
code, a refresh-token family and a refresh token (``bastion.store.grants`` reads and writes
them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A validated authorization request (RFC 6749 §4.1.1, OAuth 2.1 §4.1.1)."""

    client_id: str
    redirect_uri: str
    # Whether the client sent redirect_uri; if so the token request must repeat it (OAuth 2.1
    # §4.1.3).
    redirect_uri_sent: bool
    scope: str
    resource: str
    state: str | None
    code_challenge: str
    # RFC 9449 §10: the thumbprint of the DPoP key the code is bound to (dpop_jkt), if sent.
    dpop_jkt: str | None


@dataclass(frozen=True, slots=True)
class RequestRecord(AuthorizationRequest):
    """A pending authorization request, kept between /authorize and the redirect back to the
    client so that any process can continue the log-in and consent steps."""

    id: str
    created_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class CodeRecord:
    """An authorization code (stored by hash) and the grant it stands for (RFC 6749 §4.1.2)."""

    code_hash: str
    client_id: str
    subject: str
    redirect_uri: str
    redirect_uri_sent: bool
    scope: str
    resource: str
    code_challenge: str
    family_id: str
    auth_time: int
    expires_at: int
    consumed_at: int | None = None
    # RFC 9449 §10: only a DPoP proof of this key may redeem the code.
    dpop_jkt: str | None = None


@dataclass(frozen=True, slots=True)
class FamilyRecord:
    """A refresh-token family: every token issued from one authorization code, revoked
    together (RFC 9700 §4.14.2)."""

    id: str
    client_id: str
    subject: str
    scope: str
    resource: str
    created_at: int
    expires_at: int
    revoked_at: int | None = None
    revoked_reason: str | None = None
    # RFC 9449 §5: a public client's refresh tokens work only with DPoP proofs of this key.
    dpop_jkt: str | None = None


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    """A refresh token (stored by hash) of a family; ``used_at`` once rotated."""

    token_hash: str
    family_id: str
    issued_at: int
    used_at: int | None
    # The token that replaced this one, encrypted (see the refresh_tokens table).
    successor_encrypted: str | None


__all__ = ["AuthorizationRequest", "CodeRecord", "FamilyRecord", "RefreshRecord", "RequestRecord"]
