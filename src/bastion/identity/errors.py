"""Why a sign-in through an upstream identity provider failed, in words for the person and the
operator.

::

    FederationError                  a page: title, message, HTTP status
     ├── SignInStateError            state unknown, expired, used, or from another browser (400)
     ├── UpstreamUnreachable         the provider could not be reached (502)
     ├── UpstreamRefused             the provider said no: access_denied, invalid_client… (403/502)
     ├── UpstreamInvalidResponse     the provider answered something bastion cannot trust (502)
     │    └── InvalidIdToken         signature, iss, aud, azp, exp, nonce… (OpenID Connect §3.1.3.7)
     └── AccountNotAllowed           the allow rules refuse this account, or it is disabled (403)

``message`` is shown to the person; ``detail`` (with values seen and the setting to change) goes
to the log only, except for the hint that names what the operator should check.
"""

from __future__ import annotations


class FederationError(Exception):
    """A sign-in through an upstream identity provider failed."""

    status = 400
    title = "Sign-in failed"

    def __init__(self, message: str, *, detail: str = "", hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or message
        self.hint = hint


class SignInStateError(FederationError):
    """The callback's ``state`` does not belong to a sign-in this browser started."""

    title = "Sign-in could not be verified"


class UpstreamUnreachable(FederationError):
    """A request to the provider failed at the network level or timed out."""

    status = 502
    title = "Identity provider unreachable"


class UpstreamRefused(FederationError):
    """The provider answered with an OAuth error."""

    status = 502
    title = "Sign-in refused"

    def __init__(
        self, message: str, *, error: str, detail: str = "", hint: str = "", status: int = 502
    ) -> None:
        super().__init__(message, detail=detail, hint=hint)
        self.error = error
        self.status = status


class UpstreamInvalidResponse(FederationError):
    """The provider's answer is malformed or fails a check."""

    status = 502
    title = "Identity provider error"


class InvalidIdToken(UpstreamInvalidResponse):
    """The id_token fails validation (OpenID Connect Core 1.0 §3.1.3.7)."""

    title = "Sign-in could not be verified"


class AccountNotAllowed(FederationError):
    """The account is authenticated but may not sign in here."""

    status = 403
    title = "Account not allowed"


__all__ = [
    "AccountNotAllowed",
    "FederationError",
    "InvalidIdToken",
    "SignInStateError",
    "UpstreamInvalidResponse",
    "UpstreamRefused",
    "UpstreamUnreachable",
]
