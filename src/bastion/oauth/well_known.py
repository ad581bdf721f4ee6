"""Well-known URI construction for issuers and resources (RFC 8414 §3.1, RFC 9728 §3.1,
OpenID Connect Discovery 1.0 §4)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

AS_METADATA = "oauth-authorization-server"
OPENID_CONFIGURATION = "openid-configuration"
PROTECTED_RESOURCE = "oauth-protected-resource"


def inserted(base: str, name: str) -> str:
    """``https://h/.well-known/<name>/<path>``: the suffix inserted between host and path."""
    parts = urlsplit(base)
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, f"/.well-known/{name}{path}", "", ""))


def appended(base: str, name: str) -> str:
    """``https://h/<path>/.well-known/<name>``: the OpenID Connect Discovery 1.0 form."""
    parts = urlsplit(base)
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, f"{path}/.well-known/{name}", "", ""))


def metadata_paths(issuer: str) -> list[str]:
    """The request paths at which an AS with this issuer serves its metadata.

    RFC 8414 path-inserted, OIDC path-inserted (as MCP clients try it), and OIDC path-appended.
    """
    urls = {
        inserted(issuer, AS_METADATA),
        inserted(issuer, OPENID_CONFIGURATION),
        appended(issuer, OPENID_CONFIGURATION),
    }
    return sorted(urlsplit(u).path for u in urls)


__all__ = [
    "AS_METADATA",
    "OPENID_CONFIGURATION",
    "PROTECTED_RESOURCE",
    "appended",
    "inserted",
    "metadata_paths",
]
