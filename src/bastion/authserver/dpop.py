"""DPoP at the token endpoint (RFC 9449 §5, §8, §11.1; X01, X04).

:meth:`TokenEndpointDPoP.check` runs for every token request, whatever its grant, once the
client is authenticated: without a ``DPoP`` header it answers None (Bearer tokens), except for
a client registered with ``dpop_bound_access_tokens`` (§5.2); with one, the proof is checked
(:func:`bastion.oauth.dpop.verify_proof`: ``POST`` to this server's token endpoint, its
``iat`` window, the nonce when ``[dpop] require_nonce``), its ``jti`` is spent in the database
so that no process accepts it twice (§11.1), and its key's thumbprint is what the grant binds
the tokens to.

Nonces (§8) are stateless (:class:`bastion.oauth.dpop_nonce.DPoPNonces`) under a key derived
from the server's secret key: every process of one deployment makes and accepts the same ones.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from starlette.requests import Request

from bastion.config.dpop import DPoPSettings
from bastion.oauth.dpop import DPoPError, DPoPProof, verify_proof
from bastion.oauth.dpop_nonce import DPoPNonces
from bastion.oauth.errors import InvalidDPoPProof, InvalidRequest, UseDPoPNonce
from bastion.oauth.replay import ReplayGuard
from bastion.store.clients import Client

REPLAY_PURPOSE = "dpop-token"
_NONCE_CONTEXT = b"bastion dpop nonce: as"


def nonce_secret(secret_key: str) -> bytes:
    """The key of the authorization server's DPoP nonces, derived from its secret key."""
    return hmac.new(secret_key.encode(), _NONCE_CONTEXT, hashlib.sha256).digest()


@dataclass(frozen=True)
class TokenEndpointDPoP:
    """The token endpoint's DPoP checks: ``settings`` (``[dpop]``), the ``token_url`` proofs
    must name in ``htu`` (the endpoint as clients reach it through the issuer), the nonces and
    the replay guard shared by every process."""

    settings: DPoPSettings
    token_url: str
    nonces: DPoPNonces
    replays: ReplayGuard

    def _nonce(self) -> DPoPNonces | None:
        return self.nonces if self.settings.require_nonce else None

    async def check(self, request: Request, client: Client, now: int) -> DPoPProof | None:
        """The verified DPoP proof of a token request, or None when it carries none (then the
        tokens are Bearer tokens); raise invalid_dpop_proof, use_dpop_nonce (with the nonce to
        use) or invalid_request."""
        values = request.headers.getlist("dpop")
        if not values:
            if client.metadata.dpop_bound_access_tokens:
                # RFC 9449 §5.2 says MUST reject but names no error code; the request lacks a
                # part this client must send: invalid_request (RFC 6749 §5.2).
                raise InvalidRequest(
                    f"client {client.client_id} is registered with dpop_bound_access_tokens: "
                    "send a DPoP proof with every token request (RFC 9449 section 5.2)"
                )
            return None
        if not self.settings.enabled:
            # RFC 9449 §5: an AS may issue Bearer tokens to a DPoP request (token_type says so).
            return None
        try:
            proof = verify_proof(
                values,
                method=request.method,
                uri=self.token_url,
                now=now,
                allowed_algorithms=self.settings.algorithms,
                nonce=self._nonce(),
                max_age=self.settings.max_age,
                future_leeway=self.settings.future_leeway,
            )
        except DPoPError as exc:
            if exc.code == "use_dpop_nonce":
                raise UseDPoPNonce(str(exc), nonce=self.nonces.current(now)) from None
            raise InvalidDPoPProof(str(exc)) from None
        window_end = proof.iat + self.settings.max_age + self.settings.future_leeway
        if not await self.replays.first_use(f"{proof.jkt} {proof.jti}", window_end, now):
            raise InvalidDPoPProof(
                "this DPoP proof was already used (its jti was seen): make a new proof for "
                "each request (RFC 9449 section 11.1)"
            )
        return proof

    def response_headers(self, proof: DPoPProof | None, now: int) -> dict[str, str]:
        """Headers for the answer to a DPoP request: with nonces on, the current nonce, so
        that a client holding one from the previous window moves on (RFC 9449 §8.2)."""
        if proof is None or not self.settings.enabled or not self.settings.require_nonce:
            return {}
        return {"DPoP-Nonce": self.nonces.current(now)}


__all__ = ["REPLAY_PURPOSE", "TokenEndpointDPoP", "nonce_secret"]
