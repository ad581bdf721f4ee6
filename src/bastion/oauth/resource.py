"""Resource indicators (RFC 8707) and canonical server URIs (MCP authorization, RFC 8707 §2)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from bastion.oauth.errors import InvalidTarget


def canonical(uri: str) -> str:
    """The canonical form of a resource URI: lowercase scheme and host, no fragment, default port
    dropped, and no trailing slash unless the path is only "/" (then it is removed too).

    MCP authorization says implementations SHOULD accept uppercase scheme and host and SHOULD use
    the form without a trailing slash.
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and not (
        (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
    ):
        host = f"{host}:{port}"
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, host, path, parts.query, ""))


def check_indicator(uri: str) -> str:
    """Validate one ``resource`` value (RFC 8707 §2): an absolute URI without a fragment."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in range
    except ValueError:
        raise InvalidTarget(f"resource is not a valid URI; got {uri!r}") from None
    if not parts.scheme or not parts.netloc:
        raise InvalidTarget(f"resource must be an absolute URI; got {uri!r}")
    if parts.fragment or "#" in uri:
        raise InvalidTarget("resource must not include a fragment (RFC 8707 section 2)")
    return uri


__all__ = ["canonical", "check_indicator"]
