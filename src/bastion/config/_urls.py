"""URL rules shared by several settings sections."""

from __future__ import annotations

from urllib.parse import urlsplit


def service_url(value: str | None) -> str | None:
    """An absolute http(s) URL without query or fragment, trailing slash removed (public_url,
    jwks_uri of the gateway and the registry)."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an absolute http(s) URL; got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"must not have a query or fragment; got {value!r}")
    return value.rstrip("/")


__all__ = ["service_url"]
