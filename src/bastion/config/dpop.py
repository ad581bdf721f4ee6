"""DPoP (RFC 9449) settings: ``[dpop]`` for the authorization server's token endpoint, and
``[gateway.dpop]`` / ``[registry.dpop]`` for bastion's resources.

DPoP is the client's choice, request by request (a ``DPoP`` header on a token request): with
the section enabled (the default) bastion checks such a proof and binds the tokens it issues
to the proof's key; a client that never sends one keeps getting Bearer tokens. A client
registered with ``dpop_bound_access_tokens`` (RFC 9449 §5.2) must always send one.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bastion.oauth import jose
from bastion.oauth.dpop import DEFAULT_ALGORITHMS, FUTURE_LEEWAY, MAX_AGE


class ProofSettings(BaseModel):
    """How DPoP proofs are checked wherever bastion checks them (RFC 9449 §4.3): the accepted
    algorithms, how old a proof may be, how long a server's nonce lasts."""

    model_config = ConfigDict(extra="forbid")

    algorithms: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALGORITHMS),
        min_length=1,
        description="The JWS algorithms accepted for proofs, published as "
        "dpop_signing_alg_values_supported (RFC 9449 §5.1) and in the algs of a resource's "
        "DPoP challenge (§7.1).",
    )
    max_age: int = Field(
        MAX_AGE,
        ge=5,
        le=600,
        description="Seconds a proof is accepted after its iat (RFC 9449 §11.1); its jti is "
        "remembered that long.",
    )
    nonce_lifetime: int = Field(
        300,
        ge=10,
        le=86400,
        description="Seconds a nonce stays current; one is accepted until the next one is "
        "too (between this and twice this).",
    )

    @field_validator("algorithms")
    @classmethod
    def _asymmetric(cls, algorithms: list[str]) -> list[str]:
        """RFC 9449 §4.3 point 5: asymmetric JWS algorithms only, each one bastion verifies."""
        unknown = [alg for alg in algorithms if alg not in jose.ALGORITHMS]
        if unknown:
            raise ValueError(
                f"dpop.algorithms: {', '.join(unknown)} cannot sign DPoP proofs; use some of "
                f"{', '.join(jose.ALGORITHMS)}"
            )
        return list(dict.fromkeys(algorithms))


class DPoPSettings(ProofSettings):
    """How the token endpoint checks DPoP proofs (RFC 9449 §4.3, §5, §8): ``[dpop]``."""

    enabled: bool = Field(
        True,
        description="Check DPoP proofs on token requests and issue DPoP-bound tokens "
        "(token_type DPoP) to clients that send one. false: DPoP headers are ignored, every "
        "token is a Bearer token (RFC 9449 §5 allows it) and the metadata does not offer DPoP.",
    )
    require_nonce: bool = Field(
        False,
        description="Demand a server-provided nonce in every proof (RFC 9449 §8): a proof "
        "without the current one is answered 400 use_dpop_nonce with a DPoP-Nonce header. "
        "Limits proofs made in advance; costs clients one more round trip.",
    )
    future_leeway: int = Field(
        FUTURE_LEEWAY, ge=0, le=300, description="Seconds a proof's iat may be ahead of now."
    )


class ResourceDPoPSettings(ProofSettings):
    """DPoP (RFC 9449) at one of bastion's resources: the gateway's upstreams (``[gateway.dpop]``)
    or the registry (``[registry.dpop]``). DPoP-bound tokens are always accepted with a valid
    proof; ``require_dpop`` on an upstream or the registry refuses Bearer tokens there."""

    nonce: bool = Field(
        False,
        description="Demand a nonce of the resource's own in every proof (RFC 9449 section 9): "
        "a proof without it gets 401 use_dpop_nonce and a DPoP-Nonce header. Nonces are made "
        "from the secret key, so every replica accepts the others'.",
    )


__all__ = ["DPoPSettings", "ProofSettings", "ResourceDPoPSettings"]
