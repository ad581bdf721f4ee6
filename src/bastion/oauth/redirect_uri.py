"""Redirect URI rules.

- Registration (RFC 7591 §2, OAuth 2.1 §2.3.1, RFC 8252 §7): absolute URI, no fragment; https, or
  http only for loopback hosts; never javascript:, data:, file: or vbscript:. Private-use schemes
  (RFC 8252 §7.1, reverse-DNS with a dot) are allowed for native clients.
- Matching (OAuth 2.1 §4.1.1, MCP security considerations): exact string comparison, except that
  for loopback IP redirect URIs the port is ignored (RFC 8252 §7.3).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

FORBIDDEN_SCHEMES = frozenset({"javascript", "data", "file", "vbscript", "about", "blob"})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


class RedirectUriError(ValueError):
    """A redirect URI that may not be registered; the message says why."""


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_uri(uri: str) -> bool:
    """True when ``uri`` is an http URI on a loopback host (RFC 8252 §7.3)."""
    try:
        parts = urlsplit(uri)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme == "http" and is_loopback_host(parts.hostname)


def validate_for_registration(uri: str, *, application_type: str = "web") -> str:
    """Check one redirect URI a client wants to register; return it unchanged or raise.

    ``application_type`` follows OpenID Connect Registration §2: web clients use https (loopback
    http is tolerated for local development), native clients use loopback http or a private-use
    scheme.
    """
    if not isinstance(uri, str) or not uri or len(uri) > 2000:
        raise RedirectUriError("redirect URI must be a non-empty string of at most 2000 characters")
    if any(c.isspace() for c in uri):
        raise RedirectUriError(f"redirect URI {uri!r} contains whitespace")
    if any(c < " " or c == "\x7f" for c in uri):
        raise RedirectUriError(f"redirect URI {uri!r} contains control characters")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in range
    except ValueError:
        raise RedirectUriError(f"redirect URI {uri!r} is not a valid URI") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise RedirectUriError(f"redirect URI {uri!r} is not an absolute URI")
    if scheme in FORBIDDEN_SCHEMES:
        raise RedirectUriError(f"redirect URI scheme {scheme!r} is not allowed")
    if "#" in uri:
        raise RedirectUriError(f"redirect URI {uri!r} must not contain a fragment (RFC 6749 3.1.2)")
    if scheme == "https":
        if not parts.hostname:
            raise RedirectUriError(f"redirect URI {uri!r} has no host")
        return uri
    if scheme == "http":
        if not is_loopback_host(parts.hostname):
            raise RedirectUriError(
                f"redirect URI {uri!r} uses http on a non-loopback host; use https, or http only "
                "with localhost, 127.0.0.1 or [::1]"
            )
        return uri
    # A private-use URI scheme (RFC 8252 §7.1) for native apps: reverse domain name with a dot.
    if application_type == "native" and "." in scheme:
        return uri
    raise RedirectUriError(
        f"redirect URI scheme {scheme!r} is not allowed; use https, loopback http, or (native "
        "clients) a reverse-domain private-use scheme"
    )


def matches(requested: str, registered: list[str]) -> bool:
    """Whether ``requested`` matches one registered redirect URI.

    Exact string match; for http loopback IP literals and localhost the port may differ
    (RFC 8252 §7.3), everything else (scheme, host, path, query) must be identical.
    """
    if requested in registered:
        return True
    try:
        req = urlsplit(requested)
    except ValueError:  # not a URI at all (e.g. an unclosed IPv6 bracket): matches nothing
        return False
    if req.scheme != "http" or not is_loopback_host(req.hostname) or req.fragment:
        return False
    for candidate in registered:
        reg = urlsplit(candidate)
        if (
            reg.scheme == "http"
            and reg.hostname == req.hostname
            and is_loopback_host(reg.hostname)
            and reg.path == req.path
            and reg.query == req.query
            and reg.username == req.username
            and reg.password == req.password
        ):
            return True
    return False


__all__ = [
    "FORBIDDEN_SCHEMES",
    "RedirectUriError",
    "is_loopback_host",
    "is_loopback_uri",
    "matches",
    "validate_for_registration",
]
