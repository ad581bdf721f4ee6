"""Why the vault could not give an upstream token, for the person and the operator."""

from __future__ import annotations


class VaultError(Exception):
    """An upstream's OAuth failed; ``message`` is safe to show, ``detail`` goes to the log."""

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or message


class ConnectionNeeded(VaultError):
    """The person has no usable grant at the upstream (none yet, or the upstream refused it:
    revoked, expired, ``invalid_grant``): they must sign in there again."""


class UpstreamUnavailable(VaultError):
    """The upstream's authorization server could not be reached or answered something bastion
    cannot use; trying again later may work."""


class UpstreamMisconfigured(VaultError):
    """bastion cannot be a client of the upstream as configured (no metadata, no way to
    register, a client the server refuses): the operator must change the configuration."""


__all__ = ["ConnectionNeeded", "UpstreamMisconfigured", "UpstreamUnavailable", "VaultError"]
