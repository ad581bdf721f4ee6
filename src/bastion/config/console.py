"""``[console]``: the web console at ``/admin`` and every person's page at ``/account``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ConsoleSettings(BaseModel):
    """Who may administer bastion in a browser, and how recent their sign-in must be for
    actions that remove, revoke, rotate or disable."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True,
        description="Serve /admin (for administrators) and /account (for every signed-in "
        "person) on the authorization server's listener.",
    )
    admin_groups: list[str] = Field(
        default_factory=list,
        description="Members of these groups are administrators, besides local users made with "
        "`bastion users add --admin`: groups mapped from an identity provider, e.g. "
        '["platform-admins"].',
    )
    fresh_sign_in: int = Field(
        300,
        ge=30,
        le=86400,
        description="Seconds after signing in during which an administrator may remove, "
        "revoke, rotate, disable or reset; later, bastion asks them to sign in again first.",
    )


__all__ = ["ConsoleSettings"]
