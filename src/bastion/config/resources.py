"""``[[resources]]``: the protected resources tokens may be issued for."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

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


__all__ = ["ResourceSettings"]
