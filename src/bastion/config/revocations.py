"""``[revocations]``: how revoked grants and tokens reach every resource."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bastion.config._urls import service_url


class RevocationSettings(BaseModel):
    """How revoked grants and tokens reach every resource (the gateway, the registry, and any
    server using ``bastion.resource``) without a call to the AS per request; see
    docs/deployment.md, "Revocation"."""

    model_config = ConfigDict(extra="forbid")

    poll_interval: float = Field(
        0.25,
        gt=0,
        le=10,
        description="Seconds between reads of the revocations table on SQLite (PostgreSQL "
        "announces each revocation with NOTIFY instead).",
    )
    feed: Literal["database", "http"] = Field(
        "database",
        description="How the gateway, and a registry on its own origin, learn of revocations: "
        "from bastion's database (the same database_url and database_schema; nothing is "
        "migrated from there), or from the AS's revocation document over HTTP (for a gateway "
        "that cannot reach the database).",
    )
    url: str | None = Field(
        None, description='The revocation document for feed = "http"; default <issuer>/revocations.'
    )
    max_wait: int = Field(
        25,
        ge=1,
        le=60,
        description="Longest the AS holds a GET /revocations?wait=N before answering 304, and "
        "what the HTTP feed asks for.",
    )
    max_waiters: int = Field(
        1000,
        ge=1,
        description="Long polls of /revocations one AS process holds at once; beyond, 503 with "
        "Retry-After (each resource-server process holds one).",
    )

    @field_validator("url")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return service_url(value)


__all__ = ["RevocationSettings"]
