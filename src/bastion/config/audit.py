"""``[audit]``: the authorization server's audit trail (docs/audit.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AuditSettings(BaseModel):
    """What the authorization server records of sign-ins, consents, grants, registrations and
    operators' changes, and for how long."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True,
        description="Record the authorization server's events in the auth_audit table. Off, "
        "nothing is recorded (for a comparison of costs; an audit gap otherwise).",
    )
    retention_days: int = Field(
        365,
        ge=0,
        description="Days a record is kept; the housekeeping sweep deletes older ones. 0 keeps "
        "them forever.",
    )


__all__ = ["AuditSettings"]
