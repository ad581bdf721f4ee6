"""URL rules shared by several settings sections."""

from __future__ import annotations

from bastion.oauth.endpoint_url import EndpointUrlPolicy

# A URL bastion serves at or publishes: http is decided with allow_insecure_http elsewhere.
_SERVICE_URL = EndpointUrlPolicy(http="any", query=False)


def service_url(value: str | None) -> str | None:
    """An absolute http(s) URL without query or fragment, trailing slash removed (public_url,
    jwks_uri of the gateway and the registry)."""
    if value is None:
        return None
    problem = _SERVICE_URL.problem(value)
    if problem in ("query", "fragment"):
        raise ValueError(f"must not have a query or fragment; got {value!r}")
    if problem is not None:
        raise ValueError(f"must be an absolute http(s) URL; got {value!r}")
    return value.rstrip("/")


__all__ = ["service_url"]
