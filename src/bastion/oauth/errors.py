"""OAuth error codes as exception classes, one per code.

Each class owns its ``error`` code, its HTTP status and the RFC section that defines it. Endpoints
raise them; one renderer (``bastion.authserver.errors``) turns them into the exact RFC response:
a JSON body, a redirect carrying ``error`` and ``iss``, or an HTML page when redirecting would be
unsafe.
"""

from __future__ import annotations

import re

# RFC 6749 §5.2: error_description uses %x20-21 / %x23-5B / %x5D-7E (no '"' and no '\').
_DESCRIPTION_FORBIDDEN = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def clean_description(text: str) -> str:
    """Return ``text`` reduced to the characters RFC 6749 §5.2 allows in error_description."""
    return _DESCRIPTION_FORBIDDEN.sub("'", text.replace('"', "'").replace("\\", "/"))


class OAuthError(Exception):
    """Base class: an OAuth protocol error with a code, a description and an HTTP status."""

    error: str = "server_error"
    status_code: int = 400
    rfc: str = "RFC 6749 §5.2"

    def __init__(self, description: str = "", *, detail: str | None = None) -> None:
        super().__init__(description or self.error)
        self.description = clean_description(description)
        # detail is for the operator's log only, never sent to the client.
        self.detail = detail

    def headers(self) -> dict[str, str]:
        """HTTP headers the error's response carries besides those of its kind of endpoint."""
        return {}

    def body(self) -> dict[str, str]:
        """The JSON error body (RFC 6749 §5.2)."""
        out = {"error": self.error}
        if self.description:
            out["error_description"] = self.description
        return out


class InvalidRequest(OAuthError):
    """The request is missing a required parameter, includes an unsupported or repeated parameter,
    or is otherwise malformed (RFC 6749 §4.1.2.1, §5.2)."""

    error = "invalid_request"


class InvalidClient(OAuthError):
    """Client authentication failed: unknown client, no client authentication included, or an
    unsupported authentication method (RFC 6749 §5.2). Answered with 401."""

    error = "invalid_client"
    status_code = 401


class InvalidGrant(OAuthError):
    """The authorization grant or refresh token is invalid, expired, revoked, does not match the
    redirection URI used in the authorization request, or was issued to another client
    (RFC 6749 §5.2)."""

    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    """The authenticated client is not authorized to use this grant or response type
    (RFC 6749 §4.1.2.1, §5.2)."""

    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    """The grant type is not supported by the authorization server (RFC 6749 §5.2)."""

    error = "unsupported_grant_type"


class UnsupportedResponseType(OAuthError):
    """The authorization server does not support this response type (RFC 6749 §4.1.2.1)."""

    error = "unsupported_response_type"


class InvalidScope(OAuthError):
    """The requested scope is invalid, unknown, malformed, or exceeds what was granted
    (RFC 6749 §4.1.2.1, §5.2)."""

    error = "invalid_scope"


class AccessDenied(OAuthError):
    """The resource owner or the authorization server denied the request (RFC 6749 §4.1.2.1)."""

    error = "access_denied"
    status_code = 403


class ServerError(OAuthError):
    """An unexpected condition prevented the request from being fulfilled (RFC 6749 §4.1.2.1)."""

    error = "server_error"
    status_code = 500


class TemporarilyUnavailable(OAuthError):
    """The server is temporarily overloaded or under maintenance (RFC 6749 §4.1.2.1)."""

    error = "temporarily_unavailable"
    status_code = 503


class TooManyRequests(TemporarilyUnavailable):
    """A quota is used up: the client may try again after ``retry_after`` seconds.

    RFC 6585 §4 (429 with Retry-After). No OAuth registry has an error code for it (RFC 7591
    §3.2.2 defines none at all for this case), so the code is the nearest one, RFC 6749
    §4.1.2.1's temporarily_unavailable, which clients already treat as "retry later"."""

    status_code = 429
    rfc = "RFC 6585 §4"

    def __init__(self, description: str, *, retry_after: int, detail: str | None = None) -> None:
        super().__init__(description, detail=detail)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class InvalidTarget(OAuthError):
    """The requested resource is invalid, unknown or malformed (RFC 8707 §2)."""

    error = "invalid_target"
    rfc = "RFC 8707 §2"


class InvalidRedirectUri(OAuthError):
    """A redirect_uri in a registration request is invalid (RFC 7591 §3.2.2)."""

    error = "invalid_redirect_uri"
    rfc = "RFC 7591 §3.2.2"


class InvalidClientMetadata(OAuthError):
    """A client metadata field is invalid (RFC 7591 §3.2.2)."""

    error = "invalid_client_metadata"
    rfc = "RFC 7591 §3.2.2"


class InvalidToken(OAuthError):
    """The access token is missing, expired, revoked or otherwise invalid (RFC 6750 §3.1).

    Also used for a bad registration access token (RFC 7592 §3)."""

    error = "invalid_token"
    status_code = 401
    rfc = "RFC 6750 §3.1"


class InsufficientScope(OAuthError):
    """The request requires higher privileges than the access token provides (RFC 6750 §3.1)."""

    error = "insufficient_scope"
    status_code = 403
    rfc = "RFC 6750 §3.1"


class UnsupportedTokenType(OAuthError):
    """The server does not support revocation of the presented token type (RFC 7009 §2.2.1)."""

    error = "unsupported_token_type"
    rfc = "RFC 7009 §2.2.1"


class InvalidDPoPProof(OAuthError):
    """The DPoP proof of a token request is invalid (RFC 9449 §5; at a resource, §7.1)."""

    error = "invalid_dpop_proof"
    rfc = "RFC 9449 §5"


class UseDPoPNonce(OAuthError):
    """The DPoP proof lacks the nonce the server demands, or carries another one (RFC 9449 §8):
    400 with the nonce to use in a ``DPoP-Nonce`` header."""

    error = "use_dpop_nonce"
    rfc = "RFC 9449 §8"

    def __init__(self, description: str, *, nonce: str, detail: str | None = None) -> None:
        super().__init__(description, detail=detail)
        self.nonce = nonce

    def headers(self) -> dict[str, str]:
        return {"DPoP-Nonce": self.nonce}


__all__ = [
    "AccessDenied",
    "InsufficientScope",
    "InvalidClient",
    "InvalidClientMetadata",
    "InvalidDPoPProof",
    "InvalidGrant",
    "InvalidRedirectUri",
    "InvalidRequest",
    "InvalidScope",
    "InvalidTarget",
    "InvalidToken",
    "OAuthError",
    "ServerError",
    "TemporarilyUnavailable",
    "TooManyRequests",
    "UnauthorizedClient",
    "UnsupportedGrantType",
    "UnsupportedResponseType",
    "UnsupportedTokenType",
    "UseDPoPNonce",
    "clean_description",
]
