"""DPoP on the client side (RFC 9449): the key, the proofs, the nonces.

- :class:`DPoPKey`: an ES256 (P-256) key pair. One key per (authorization server, client_id),
  made on first use and kept in the token store next to the tokens it binds (keyring or the
  0600 token file, :mod:`bastion.client.storage`), so a refresh after a restart proves the same
  key (§5: a public client's refresh token is bound to it) and two authorization servers or
  clients never see the same key (their tokens cannot be linked by ``cnf.jkt``).
- :meth:`DPoPKey.proof`: a proof JWT (§4.2): header ``typ`` ``dpop+jwt``, ``alg`` ES256, the
  public ``jwk``; claims ``jti`` (fresh, 128 bits or more), ``htm``, ``htu`` (the target URI
  without query and fragment), ``iat``, with an access token its hash ``ath`` (§7.1) and a
  server-provided ``nonce`` when there is one (§8, §9).
- :class:`Nonces`: the last ``DPoP-Nonce`` each server sent, per origin and role (token
  endpoint or resource: an authorization server and a resource on one origin keep separate
  nonces), remembered from every answer (§8: also from successful ones).
- :func:`wanted`: whether a token request carries a proof: ``dpop`` setting ``never``, ``always``,
  or ``auto``: the authorization server's metadata lists ES256 in
  ``dpop_signing_alg_values_supported`` (§5.1) AND the resource takes DPoP tokens (its 401
  offers the ``DPoP`` scheme, §7.1, or its metadata lists ``dpop_signing_alg_values_supported``
  or ``dpop_bound_access_tokens_required``, RFC 9728 §2). Many MCP servers accept Bearer only
  while their authorization server (Okta, Auth0, node-oidc-provider) offers DPoP: a bound token
  would lock the client out of them.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from bastion.client.settings import DPoPMode
from bastion.oauth.dpop import access_token_hash
from bastion.oauth.www_authenticate import parse_challenges

Role = Literal["token", "resource"]
ALG = "ES256"
PROOF_TYPE = "dpop+jwt"
SCHEME = "DPoP"


class DPoPKey:
    """An ES256 key pair for DPoP proofs; ``repr`` shows its thumbprint only."""

    def __init__(self, key: ECKey) -> None:
        if key.get("crv") != "P-256" or not key.is_private:
            raise ValueError("a DPoP key must be a private P-256 EC key")
        self._key = key
        self.public_jwk: dict[str, str] = {
            k: str(v)
            for k, v in key.as_dict(private=False).items()
            if k in ("kty", "crv", "x", "y")
        }
        self.jkt: str = key.thumbprint()  # RFC 7638 SHA-256, what cnf.jkt holds (§6.1)

    def __repr__(self) -> str:
        return f"DPoPKey(jkt={self.jkt!r})"

    @classmethod
    def generate(cls) -> DPoPKey:
        """A new random P-256 key."""
        return cls(ECKey.generate_key("P-256", private=True))

    @classmethod
    def from_jwk(cls, data: Mapping[str, object]) -> DPoPKey:
        """Read back :meth:`to_jwk`; ValueError when it is not a private P-256 JWK."""
        try:
            return cls(ECKey.import_key(dict(data)))  # type: ignore[arg-type]
        except (JoseError, TypeError, KeyError) as exc:
            raise ValueError(f"not a private P-256 JWK: {exc}") from None

    def to_jwk(self) -> dict[str, str]:
        """The private JWK, as the token store keeps it."""
        return {k: str(v) for k, v in self._key.as_dict(private=True).items()}

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
        now: Callable[[], float] = time.time,
    ) -> str:
        """A DPoP proof JWT for one request (RFC 9449 §4.2; ``ath`` §7.1; ``nonce`` §8, §9)."""
        claims: dict[str, object] = {
            "jti": secrets.token_urlsafe(24),
            "htm": method.upper(),
            "htu": htu(url),
            "iat": int(now()),
        }
        if access_token is not None:
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        header = {"typ": PROOF_TYPE, "alg": ALG, "jwk": self.public_jwk}
        payload = json.dumps(claims, separators=(",", ":")).encode()
        return jws.serialize_compact(header, payload, self._key, algorithms=[ALG])


def htu(url: str) -> str:
    """The ``htu`` of a request to ``url``: its target URI without query and fragment
    (RFC 9449 §4.2)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


@dataclass
class Nonces:
    """The last ``DPoP-Nonce`` of each server (RFC 9449 §8, §9), per role and origin."""

    _seen: dict[tuple[Role, str], str] = field(default_factory=dict)

    def get(self, role: Role, url: str) -> str | None:
        """The nonce to put in the next proof for ``url``, if the server gave one."""
        return self._seen.get((role, _origin(url)))

    def remember(self, role: Role, url: str, nonce: str | None) -> None:
        """Keep a ``DPoP-Nonce`` answer header value (a non-empty one only)."""
        if nonce:
            self._seen[(role, _origin(url))] = nonce.strip()


def advertises_es256(raw: Mapping[str, object]) -> bool:
    """Whether AS metadata lists ES256 in ``dpop_signing_alg_values_supported`` (§5.1)."""
    algs = raw.get("dpop_signing_alg_values_supported")
    return isinstance(algs, list) and ALG in algs


def resource_takes_dpop(
    challenge_algs: Sequence[str] | None, prm: Mapping[str, object] | None
) -> bool:
    """Whether the resource offered the DPoP scheme in its challenge (``challenge_algs`` not
    None) or advertises DPoP in its Protected Resource Metadata (RFC 9728 §2)."""
    if challenge_algs is not None:
        return True
    if prm is None:
        return False
    algs = prm.get("dpop_signing_alg_values_supported")
    listed = isinstance(algs, list) and bool(algs)
    return listed or prm.get("dpop_bound_access_tokens_required") is True


def wanted(mode: DPoPMode, as_metadata: Mapping[str, object], resource_takes_it: bool) -> bool:
    """Whether a token request to this authorization server carries a DPoP proof."""
    if mode == "never":
        return False
    return mode == "always" or (advertises_es256(as_metadata) and resource_takes_it)


def asks_for_nonce(www_authenticate: Sequence[str]) -> bool:
    """Whether a resource's 401 is a DPoP challenge with ``error="use_dpop_nonce"`` (§9)."""
    challenges = parse_challenges(", ".join(www_authenticate))
    return any(c.scheme == "dpop" and c.get("error") == "use_dpop_nonce" for c in challenges)


@dataclass(frozen=True)
class Prover:
    """A key and the nonce memory, for the token requests of one grant."""

    key: DPoPKey
    nonces: Nonces
    now: Callable[[], float] = time.time

    def token_proof(self, token_endpoint: str) -> str:
        """A proof for a POST to the token endpoint, with its last nonce (§5, §8)."""
        nonce = self.nonces.get("token", token_endpoint)
        return self.key.proof("POST", token_endpoint, nonce=nonce, now=self.now)


__all__ = [
    "ALG",
    "SCHEME",
    "DPoPKey",
    "DPoPMode",
    "Nonces",
    "Prover",
    "Role",
    "advertises_es256",
    "asks_for_nonce",
    "htu",
    "resource_takes_dpop",
    "wanted",
]
