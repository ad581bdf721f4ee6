"""What can go wrong on the client side, as small exception classes.

::

    ClientError
    ├── DiscoveryError                 MCP authorization-server discovery, RFC 9728, RFC 8414
    │   ├── ProtectedResourceMetadataNotFound
    │   ├── ResourceMismatch            RFC 9728 §3.3
    │   ├── AuthorizationServerMetadataNotFound
    │   ├── IssuerMismatch              RFC 8414 §3.3 (checklist C05)
    │   ├── PkceNotSupported            MCP security considerations (C10)
    │   ├── MalformedMetadata           RFC 8414 §2, RFC 9728 §2 (a member not in its form)
    │   └── InsecureUrl                 OAuth 2.1 §1.5 (https, loopback http excepted)
    ├── RegistrationError              MCP client registration
    │   ├── NoRegistrationRoute         (C06: say what to configure)
    │   └── RegistrationRejected        RFC 7591 §3.2.2
    ├── AuthorizationError             OAuth 2.1 §4.1, RFC 9207
    │   ├── UnsafeAuthorizationUrl      (C18)
    │   ├── CallbackTimeout
    │   ├── StateMismatch               (C17)
    │   ├── IssuerResponseMismatch      RFC 9207 §2.4 (C11)
    │   ├── InvalidCallback
    │   └── AuthorizationDenied         RFC 6749 §4.1.2.1, after iss was validated
    ├── TokenEndpointError             RFC 6749 §5.2
    ├── AssertionUnavailable           RFC 7523: the workload token or ID token is not readable
    └── StorageError

Every message says what failed, the value seen and what to change (house rule 11). Discovery
errors carry the :class:`~bastion.client.trace.Trace` of every URL tried.
"""

from __future__ import annotations

from bastion.client.trace import Trace


class ClientError(Exception):
    """Base class of every error raised by ``bastion.client``."""

    def __init__(self, message: str, *, trace: Trace | None = None) -> None:
        super().__init__(message)
        self.trace = trace


class DiscoveryError(ClientError):
    """The server's authorization server could not be found or trusted."""


class ProtectedResourceMetadataNotFound(DiscoveryError):
    """No usable Protected Resource Metadata document (RFC 9728 §3) was found."""


class ResourceMismatch(DiscoveryError):
    """The metadata's ``resource`` is not the resource it was fetched for (RFC 9728 §3.3)."""


class AuthorizationServerMetadataNotFound(DiscoveryError):
    """No authorization server listed by the resource published usable metadata."""


class IssuerMismatch(DiscoveryError):
    """The metadata's ``issuer`` differs from the issuer used to build its URL (RFC 8414 §3.3)."""


class PkceNotSupported(DiscoveryError):
    """The authorization server does not advertise PKCE with S256 (MCP security considerations)."""


class MalformedMetadata(DiscoveryError):
    """A metadata member is not in its RFC 8414 §2 or RFC 9728 §2 form (an array that is not
    an array of strings, a URL that is not one)."""


class InsecureUrl(DiscoveryError):
    """An endpoint is not https (loopback http excepted) or not a plain absolute URL."""


class RegistrationError(ClientError):
    """No client identity could be obtained for the authorization server."""


class NoRegistrationRoute(RegistrationError):
    """Neither pre-registration, a Client ID Metadata Document nor DCR applies."""


class RegistrationRejected(RegistrationError):
    """The registration endpoint refused the request (RFC 7591 §3.2.2)."""


class AuthorizationError(ClientError):
    """The authorization code flow did not complete."""


class UnsafeAuthorizationUrl(AuthorizationError):
    """The authorization URL is not one a browser may be pointed at (checklist C18)."""


class CallbackTimeout(AuthorizationError):
    """No authorization response reached the loopback redirect URI in time."""


class StateMismatch(AuthorizationError):
    """The ``state`` of the authorization response is missing or wrong (checklist C17)."""


class IssuerResponseMismatch(AuthorizationError):
    """The ``iss`` of the authorization response is missing or wrong (RFC 9207 §2.4, C11)."""


class InvalidCallback(AuthorizationError):
    """The authorization response is malformed (a parameter missing or repeated)."""


class AuthorizationDenied(AuthorizationError):
    """The authorization server answered with an error (RFC 6749 §4.1.2.1).

    Raised only after ``state`` and ``iss`` were validated, so ``error`` and ``description`` come
    from the authorization server the client talked to (MCP authorization response validation).
    """

    def __init__(self, error: str, description: str | None) -> None:
        shown = f": {description}" if description else ""
        super().__init__(f"the authorization server refused the authorization: {error}{shown}")
        self.error = error
        self.description = description


class TokenEndpointError(ClientError):
    """The token endpoint refused a request (RFC 6749 §5.2) or answered something unusable."""

    def __init__(self, message: str, *, error: str | None = None, status: int | None = None):
        super().__init__(message)
        self.error = error
        self.status = status


class AssertionUnavailable(ClientError):
    """A configured assertion source (workload token, enterprise ID token) could not be read:
    the file or environment variable is missing, empty, or holds an expired token."""


class StorageError(ClientError):
    """The token store could not be read, written or locked."""


__all__ = [
    "AssertionUnavailable",
    "AuthorizationDenied",
    "AuthorizationError",
    "AuthorizationServerMetadataNotFound",
    "CallbackTimeout",
    "ClientError",
    "DiscoveryError",
    "InsecureUrl",
    "InvalidCallback",
    "IssuerMismatch",
    "IssuerResponseMismatch",
    "MalformedMetadata",
    "NoRegistrationRoute",
    "PkceNotSupported",
    "ProtectedResourceMetadataNotFound",
    "RegistrationError",
    "RegistrationRejected",
    "ResourceMismatch",
    "StateMismatch",
    "StorageError",
    "TokenEndpointError",
    "UnsafeAuthorizationUrl",
]
