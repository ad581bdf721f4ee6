"""The successful token response (RFC 6749 §5.1), as the authorization server sends it.

Errors are the other answer of the token endpoint (RFC 6749 §5.2): their body is
:meth:`bastion.oauth.errors.OAuthError.body`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class TokenResponse:
    """An access token of type Bearer (RFC 6750) with its lifetime in seconds, the granted
    ``scope`` when there is one, and a ``refresh_token`` when the client may refresh."""

    access_token: str = field(repr=False)
    expires_in: int
    scope: str = ""
    refresh_token: str | None = field(default=None, repr=False)
    token_type: str = "Bearer"

    def with_refresh_token(self, refresh_token: str) -> TokenResponse:
        """The same response carrying ``refresh_token`` (rotation, OAuth 2.1 §4.3.1)."""
        return replace(self, refresh_token=refresh_token)

    def to_json(self) -> dict[str, str | int]:
        """The JSON object with its members in a fixed order (access_token, token_type,
        expires_in, scope, refresh_token); an empty scope and an absent refresh token are left
        out."""
        out: dict[str, str | int] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
        }
        if self.scope:
            out["scope"] = self.scope
        if self.refresh_token is not None:
            out["refresh_token"] = self.refresh_token
        return out


__all__ = ["TokenResponse"]
