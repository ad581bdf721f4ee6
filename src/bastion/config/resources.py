"""``[[resources]]``: the protected resources tokens may be issued for; and the DPoP settings
of bastion's own resources (``[gateway.dpop]``, ``[registry.dpop]``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bastion.oauth.dpop import DEFAULT_ALGORITHMS, MAX_AGE
from bastion.oauth.jose import SUPPORTED_ALGORITHMS
from bastion.oauth.resource import canonical


class ResourceSettings(BaseModel):
    """A protected resource (MCP server, gateway route, registry) tokens may be issued for."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(description="The resource's canonical URI, sent by clients as `resource`.")
    name: str | None = None
    scopes: list[str] = Field(default_factory=list, description="Scopes this resource accepts.")

    @field_validator("uri")
    @classmethod
    def _canonical(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            raise ValueError(f"resource uri must be an absolute http(s) URI; got {value!r}")
        return canonical(value)


class ResourceDPoPSettings(BaseModel):
    """DPoP (RFC 9449) at one of bastion's resources: the gateway's upstreams (``[gateway.dpop]``)
    or the registry (``[registry.dpop]``). DPoP-bound tokens are always accepted with a valid
    proof; ``require_dpop`` on an upstream or the registry refuses Bearer tokens there."""

    model_config = ConfigDict(extra="forbid")

    algorithms: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALGORITHMS),
        min_length=1,
        description="JWS algorithms accepted in DPoP proofs (the algs of the DPoP challenge and "
        "dpop_signing_alg_values_supported of the resource metadata).",
    )
    max_age: int = Field(
        MAX_AGE,
        ge=5,
        le=600,
        description="Seconds a proof is accepted after its iat; its jti is remembered as long.",
    )
    nonce: bool = Field(
        False,
        description="Demand a nonce of the resource's own in every proof (RFC 9449 section 9): "
        "a proof without it gets 401 use_dpop_nonce and a DPoP-Nonce header. Nonces are made "
        "from the secret key, so every replica accepts the others'.",
    )
    nonce_lifetime: int = Field(
        300, ge=10, le=3600, description="Seconds a nonce stays valid (at least; at most twice)."
    )

    @field_validator("algorithms")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [a for a in value if a not in SUPPORTED_ALGORITHMS]
        if unknown:
            raise ValueError(
                f"unknown DPoP algorithms {unknown!r}; use some of "
                f"{', '.join(SUPPORTED_ALGORITHMS)}"
            )
        return list(dict.fromkeys(value))


__all__ = ["ResourceDPoPSettings", "ResourceSettings"]
