"""Signing keys: generation, encryption at rest, rotation with overlap, and the JWKS.

Rotation never leaves a verifier with a gap: a new key is published in the JWKS ``prepublish``
seconds before it starts signing, and the keys it replaces stay published until every token they
signed has expired. Every process reloads the key set from the database at most ``refresh``
seconds apart, so a rotation made by one process (or by ``bastion keys rotate``) reaches all.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import ECKey, KeyParameters, KeySet, OKPKey, RSAKey

from bastion.clock import Clock, system_clock
from bastion.logs import get_logger
from bastion.ops import metrics
from bastion.store import keys as key_rows
from bastion.store.database import Database
from bastion.store.keys import KeyRecord
from bastion.tokens.cipher import Cipher, SecretKeyError

log = get_logger("bastion.tokens.keys")
JWK = ECKey | OKPKey | RSAKey

ALGORITHMS = ("ES256", "Ed25519", "EdDSA", "RS256")


def generate(alg: str, kid: str) -> JWK:
    """Generate a private key for ``alg`` (ES256: P-256; Ed25519, EdDSA: Ed25519; RS256: RSA)."""
    params: KeyParameters = {"kid": kid, "alg": alg, "use": "sig"}
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters=params, private=True)
    if alg in ("Ed25519", "EdDSA"):
        return OKPKey.generate_key("Ed25519", parameters=params, private=True)
    if alg == "RS256":
        return RSAKey.generate_key(3072, parameters=params, private=True)
    raise ValueError(f"unsupported signing algorithm {alg!r}; choose one of {ALGORITHMS}")


def import_jwk(data: dict[str, Any]) -> JWK:
    """Import a JWK dict of any supported key type."""
    kty = data.get("kty")
    if kty == "EC":
        return ECKey.import_key(data)
    if kty == "OKP":
        return OKPKey.import_key(data)
    if kty == "RSA":
        return RSAKey.import_key(data)
    raise ValueError(f"unsupported key type {kty!r}")


@dataclass(frozen=True)
class SigningKey:
    """A loaded key: what signs and what is published."""

    kid: str
    alg: str
    key: JWK
    public_jwk: dict[str, Any]
    activates_at: int
    retire_at: int | None


class KeyManager:
    """Loads, caches and rotates the signing keys kept (encrypted) in the database."""

    def __init__(
        self,
        db: Database,
        cipher: Cipher,
        *,
        alg: str,
        token_ttl: int,
        prepublish: int = 0,
        refresh: int = 30,
        clock: Clock = system_clock,
    ) -> None:
        self.db = db
        self.cipher = cipher
        self.alg = alg
        self.token_ttl = token_ttl
        self.prepublish = prepublish
        self.refresh = refresh
        self.clock = clock
        self._keys: list[SigningKey] = []
        self._loaded_at = -(10**9)
        self._jwks: dict[str, Any] = {"keys": []}
        self._verify_set = KeySet([])

    async def load(self) -> None:
        """(Re)load the published keys from the database; make the first key if there is none."""
        now = self.clock()
        async with self.db.connect() as conn:
            rows = await key_rows.live(conn, now)
        if not any(r.activates_at <= now for r in rows):
            await self._create(self.alg, activates_at=now, now=now)
            async with self.db.connect() as conn:
                rows = await key_rows.live(conn, now)
        keys = []
        for r in rows:
            private = self.cipher.decrypt(r.private_jwk_encrypted, bound_to=r.kid)
            keys.append(
                SigningKey(
                    kid=r.kid,
                    alg=r.alg,
                    key=import_jwk(json.loads(private)),
                    public_jwk=dict(r.public_jwk),
                    activates_at=r.activates_at,
                    retire_at=r.retire_at,
                )
            )
        self._keys = keys
        self._loaded_at = now
        metrics.signing_key_activated(max(k.activates_at for k in keys if k.activates_at <= now))
        self._jwks = {"keys": [k.public_jwk for k in keys]}
        self._verify_set = KeySet([import_jwk(k.public_jwk) for k in keys])

    def can_sign(self) -> bool:
        """Whether a key that may sign now is loaded (memory only, no I/O)."""
        now = self.clock()
        return any(k.activates_at <= now for k in self._keys)

    async def _fresh(self) -> None:
        if self.clock() - self._loaded_at >= self.refresh:
            # One request reloads; those arriving meanwhile use the keys already loaded.
            self._loaded_at = self.clock()
            try:
                await self.load()
            except SecretKeyError as exc:
                if not self._keys:
                    raise
                # Another process stored a key this one cannot open: keep serving with the
                # keys loaded, and tell the operator (every key_refresh seconds).
                log.error(
                    "cannot reload the signing keys, keeping the %d loaded: %s Give every "
                    "process the same secret_key (and previous_secret_keys) and restart this one.",
                    len(self._keys),
                    exc,
                )

    async def signing_key(self) -> SigningKey:
        """The key that signs now: the newest one whose activation time has come."""
        await self._fresh()
        now = self.clock()
        active = [k for k in self._keys if k.activates_at <= now]
        return active[-1]

    async def published(self) -> list[SigningKey]:
        """Every key in the JWKS now, oldest activation first."""
        await self._fresh()
        return list(self._keys)

    async def jwks(self) -> dict[str, Any]:
        """The public JWK Set (RFC 7517 §5), pre-published and retiring keys included."""
        await self._fresh()
        return self._jwks

    async def verification_keys(self) -> KeySet:
        """The published keys as a joserfc KeySet, for verifying tokens this AS issued."""
        await self._fresh()
        return self._verify_set

    async def rotate(self, *, alg: str | None = None, prepublish: int | None = None) -> str:
        """Create a new key; it signs after ``prepublish`` seconds, old keys retire after the
        longest lifetime of a token they may have signed. Returns the new kid."""
        now = self.clock()
        delay = self.prepublish if prepublish is None else prepublish
        async with self.db.connect() as conn:
            latest = max((r.activates_at for r in await key_rows.live(conn, now)), default=0)
        # Activation times strictly increase, so "the newest active key" is never a tie.
        kid = await self._create(
            alg or self.alg, activates_at=max(now + delay, latest + 1), now=now
        )
        self._loaded_at = -(10**9)
        await self.load()
        return kid

    async def _create(self, alg: str, *, activates_at: int, now: int) -> str:
        kid = secrets.token_urlsafe(12)
        key = generate(alg, kid)
        public = key.as_dict(private=False)
        public.update(kid=kid, alg=alg, use="sig")
        sealed = self.cipher.encrypt(
            json.dumps(key.as_dict(private=True)).encode("utf-8"), bound_to=kid
        )
        async with self.db.transaction() as conn:
            await key_rows.purge(conn, now)
            await key_rows.insert(
                conn,
                KeyRecord(
                    kid=kid,
                    alg=alg,
                    public_jwk=public,
                    private_jwk_encrypted=sealed,
                    created_at=now,
                    activates_at=activates_at,
                    retire_at=None,
                ),
            )
            await key_rows.schedule_retirement(
                conn, activates_at + self.token_ttl + 60, except_kid=kid
            )
        return kid


__all__ = ["ALGORITHMS", "JWK", "KeyManager", "SigningKey", "generate", "import_jwk"]
