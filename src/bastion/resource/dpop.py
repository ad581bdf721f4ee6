"""DPoP at a resource server (RFC 9449 §7): the proof that comes with an ``Authorization: DPoP``
request, the key binding of the token, replay and nonces.

:class:`ResourceDPoP` holds what a resource decides about DPoP: the algorithms it accepts in
proofs (``algs`` of its challenges, ``dpop_signing_alg_values_supported`` of its metadata),
whether it accepts DPoP-bound tokens only (``required``), how old a proof may be, where it
records the ``jti`` of the proofs it accepted (§11.1: in this process, or in the database that
every replica shares) and whether it demands nonces of its own (§9). The middleware calls
:meth:`ResourceDPoP.proof` before the token is verified and :meth:`ResourceDPoP.accept` after.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from bastion.clock import Clock, system_clock
from bastion.oauth.dpop import (
    DEFAULT_ALGORITHMS,
    FUTURE_LEEWAY,
    MAX_AGE,
    DPoPError,
    DPoPProof,
    verify_proof,
)
from bastion.oauth.dpop_nonce import DPoPNonces
from bastion.oauth.errors import InvalidToken
from bastion.oauth.replay import MemoryReplayGuard, ReplayGuard
from bastion.resource.principal import Principal


class ResourceDPoP:
    """How one resource checks DPoP (see the module docstring).

    ``algorithms``: the JWS algorithms accepted in proofs; ``required``: refuse Bearer tokens,
    bound or not (the metadata says ``dpop_bound_access_tokens_required``); ``replay``: where
    the ``jti`` of accepted proofs are kept (default: this process only); ``nonces``: demand
    nonces made with this key (RFC 9449 §9), None for none; ``max_age`` and ``future_leeway``:
    the seconds a proof's ``iat`` may lie behind or ahead of ``clock``.
    """

    def __init__(
        self,
        *,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        required: bool = False,
        replay: ReplayGuard | None = None,
        nonces: DPoPNonces | None = None,
        max_age: int = MAX_AGE,
        future_leeway: int = FUTURE_LEEWAY,
        clock: Clock = system_clock,
    ) -> None:
        if not algorithms:
            raise ValueError("a resource that takes DPoP must accept at least one algorithm")
        if max_age < 1 or future_leeway < 0:
            raise ValueError("max_age must be positive and future_leeway not negative")
        self.algorithms = tuple(algorithms)
        self.required = required
        self.replay: ReplayGuard = replay if replay is not None else MemoryReplayGuard()
        self.nonces = nonces
        self.max_age = max_age
        self.future_leeway = future_leeway
        self.clock = clock

    def __repr__(self) -> str:
        return (
            f"ResourceDPoP(algorithms={self.algorithms!r}, required={self.required}, "
            f"replay={self.replay!r}, nonces={self.nonces!r})"
        )

    def nonce(self) -> str | None:
        """The nonce to hand out now in ``DPoP-Nonce`` (RFC 9449 §9), if nonces are demanded."""
        return self.nonces.current(self.clock()) if self.nonces is not None else None

    def proof(
        self, header_values: Sequence[str], *, method: str, uri: str, token: str
    ) -> DPoPProof:
        """Check the request's proof (RFC 9449 §4.3, with ``ath`` for ``token``, §7.1) for
        ``method`` and ``uri`` (the request's URI as clients address it). Raises
        :class:`~bastion.oauth.dpop.DPoPError` (``invalid_dpop_proof`` or ``use_dpop_nonce``)."""
        if not header_values:
            raise DPoPError(
                "invalid_dpop_proof",
                "the DPoP scheme needs a DPoP proof in a DPoP header (RFC 9449 section 7.1)",
            )
        return verify_proof(
            header_values,
            method=method,
            uri=uri,
            now=self.clock(),
            allowed_algorithms=self.algorithms,
            nonce=self.nonces,
            access_token=token,
            max_age=self.max_age,
            future_leeway=self.future_leeway,
        )

    async def accept(self, proof: DPoPProof, principal: Principal) -> None:
        """Accept ``proof`` for the verified token of ``principal``: the token must be bound to
        the proof's key (RFC 9449 §6, §7.1; InvalidToken otherwise), and the proof never seen
        before by this resource (§11.1; DPoPError ``invalid_dpop_proof`` for a replay)."""
        if principal.jkt is None:
            raise InvalidToken(
                "the access token is not DPoP-bound (no cnf.jkt), so it cannot be sent with the "
                "DPoP scheme"
                + (
                    ": this resource takes DPoP-bound tokens only; ask the authorization server "
                    "for one with a DPoP proof"
                    if self.required
                    else "; send it with the Bearer scheme"
                )
            )
        if principal.jkt != proof.jkt:
            raise InvalidToken(
                "invalid DPoP key binding: the proof is signed with another key than the one "
                "the token is bound to (cnf.jkt, RFC 9449 section 6)"
            )
        now = self.clock()
        expires_at = proof.iat + self.max_age + self.future_leeway
        if not await self.replay.first_use(f"{proof.jkt} {proof.jti}", expires_at, now):
            raise DPoPError(
                "invalid_dpop_proof",
                "this DPoP proof was used before (its jti): make a new proof for each request "
                "(RFC 9449 section 11.1)",
            )


def derived_nonces(secret: bytes, *, context: str, lifetime: int = 300) -> DPoPNonces:
    """The nonces of a resource (RFC 9449 §9) under a key derived from ``secret`` for
    ``context``: every process holding the same secret makes and accepts the same nonces, and
    they are not the authorization server's (§9: a resource's nonces are its own)."""
    key = hmac.new(secret, f"bastion resource dpop nonce {context}".encode(), hashlib.sha256)
    return DPoPNonces(key.digest(), lifetime=lifetime)


__all__ = ["ResourceDPoP", "derived_nonces"]
