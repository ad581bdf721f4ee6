"""``[[workload_identities]]``: workloads that obtain tokens with a token from their platform
(RFC 7523 jwt-bearer, SEP-1933; docs/workload-identity.md).

Each rule trusts one issuer (a Kubernetes cluster, GitHub Actions, a SPIFFE trust domain) for
tokens whose audience, subject and other claims match, and names the pre-registered machine
client such a workload authenticates as, with no client secret at all.
"""

from __future__ import annotations

import re
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bastion.oauth.endpoint_url import EndpointUrlPolicy

_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
ClaimValue = str | int | bool


def _url(value: str, what: str) -> str:
    """https, or http on a loopback host (a development issuer)."""
    problem = EndpointUrlPolicy().problem(value)
    if problem == "http":
        raise ValueError(f"{what} uses http on a non-loopback host ({value}); use https")
    if problem is not None:
        raise ValueError(f"{what} must be an absolute https URL without fragment; got {value!r}")
    return value


def subject_pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` as a regular expression matching whole subjects: ``*`` stands for any run
    of characters (``:`` and ``/`` included), everything else is literal."""
    return re.compile(
        "".join(".*" if p == "*" else re.escape(p) for p in re.split(r"(\*)", pattern))
    )


class WorkloadIdentityRule(BaseModel):
    """One ``[[workload_identities]]`` rule: tokens of ``issuer`` for ``audience`` whose ``sub``
    matches ``subject`` and whose ``claims`` are as given authenticate as ``client``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME, description="Names the rule in logs and the audit trail.")
    issuer: str = Field(description="The token's iss, exactly (no trailing-slash tolerance).")
    jwks_uri: str | None = Field(
        None,
        description="Where the issuer's signing keys are. Default: the jwks_uri of its OpenID "
        "Connect discovery document (<issuer>/.well-known/openid-configuration).",
    )
    audience: str | None = Field(
        None, description="The aud the token must carry. Default: bastion's issuer."
    )
    subject: str = Field(
        min_length=1,
        description="The token's sub: exact, or a pattern where * matches anything, e.g. "
        '"system:serviceaccount:ci:*" or "repo:acme/app:ref:refs/heads/main".',
    )
    claims: dict[str, ClaimValue] = Field(
        default_factory=dict,
        description='Other claims that must be equal, e.g. { repository_owner = "acme" }.',
    )
    client: str = Field(
        min_length=1,
        description="The pre-registered machine client the workload authenticates as "
        "(bastion clients add --grant urn:ietf:params:oauth:grant-type:jwt-bearer).",
    )
    scopes: list[str] | None = Field(
        None,
        description="At most these scopes; the client's access rules still apply. Default: "
        "what the access rules give the client.",
    )
    single_use: bool = Field(
        True,
        description="Refuse a token presented a second time (its jti, or the token itself "
        "when it has none). Set false for platforms that hand a workload the same token for "
        "a while (Kubernetes projected tokens, SPIRE's cached JWT-SVIDs).",
    )
    max_lifetime: int = Field(
        86400,
        ge=60,
        description="Seconds: tokens expiring later than this from now are refused.",
    )
    allow_private_addresses: bool = Field(
        False,
        description="Fetch discovery and keys from loopback or private addresses (an issuer "
        "inside your network). It disables the SSRF guard for this issuer.",
    )
    timeout: float = Field(10.0, gt=0, le=60, description="Seconds per request to the issuer.")

    @field_validator("issuer", "jwks_uri")
    @classmethod
    def _urls(cls, value: str | None, info: object) -> str | None:
        if value is None:
            return None
        return _url(value, str(getattr(info, "field_name", "url")))

    @field_validator("claims")
    @classmethod
    def _claims(cls, value: dict[str, ClaimValue]) -> dict[str, ClaimValue]:
        taken = sorted(set(value) & {"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})
        if taken:
            raise ValueError(
                f"claims cannot test {', '.join(taken)}: use issuer, subject and audience"
            )
        return value

    @cached_property
    def subject_regex(self) -> re.Pattern[str]:
        """:func:`subject_pattern` of ``subject``."""
        return subject_pattern(self.subject)

    def matches(self, claims: dict[str, object]) -> bool:
        """Whether a verified token's ``sub`` and ``claims`` are this rule's (``iss`` and
        ``aud`` are checked with the signature)."""
        sub = claims.get("sub")
        if not isinstance(sub, str) or self.subject_regex.fullmatch(sub) is None:
            return False
        for name, wanted in self.claims.items():
            found = claims.get(name)
            if type(found) is not type(wanted) or found != wanted:
                return False
        return True


__all__ = ["WorkloadIdentityRule", "subject_pattern"]
