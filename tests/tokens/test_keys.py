"""Signing keys: encryption at rest, rotation with overlap, JWKS (`bastion keys rotate`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from bastion.config import Settings
from bastion.store.database import Database
from bastion.store.schema import signing_keys
from bastion.tokens import access_token
from bastion.tokens.cipher import Cipher, SecretKeyError
from bastion.tokens.keys import KeyManager

SECRET = "a-test-secret-of-more-than-thirty-two-characters"


class Clock:
    def __init__(self, now: int = 1_800_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.effective_database_url, schema=settings.database_schema)
    await database.upgrade()
    yield database
    await database.dispose()


def manager(db: Database, clock: Clock, **kwargs: object) -> KeyManager:
    options: dict[str, object] = {"alg": "ES256", "token_ttl": 600, "prepublish": 300}
    options.update(kwargs)
    return KeyManager(db, Cipher(SECRET), clock=clock, refresh=30, **options)  # type: ignore[arg-type]


async def test_first_load_creates_one_active_key(db: Database) -> None:
    clock = Clock()
    keys = manager(db, clock)
    await keys.load()
    jwks = await keys.jwks()
    assert len(jwks["keys"]) == 1
    assert (await keys.signing_key()).kid == jwks["keys"][0]["kid"]


async def test_private_keys_are_encrypted_at_rest(db: Database) -> None:
    keys = manager(db, Clock())
    await keys.load()
    async with db.connect() as conn:
        row = (await conn.execute(sa.select(signing_keys))).one()
    assert row.private_jwk_encrypted.startswith("v1.")
    assert '"d"' not in row.private_jwk_encrypted
    assert "d" not in row.public_jwk


async def test_jwks_publishes_only_public_parts(db: Database) -> None:
    keys = manager(db, Clock())
    await keys.load()
    for jwk in (await keys.jwks())["keys"]:
        assert "d" not in jwk and jwk["use"] == "sig" and jwk["alg"] == "ES256"


async def test_wrong_secret_key_is_a_clear_error(db: Database) -> None:
    await manager(db, Clock()).load()
    other = KeyManager(
        db, Cipher("another-secret-that-is-also-long-enough!!"), alg="ES256", token_ttl=600
    )
    with pytest.raises(SecretKeyError, match="secret_key"):
        await other.load()


def test_short_secret_key_is_refused() -> None:
    with pytest.raises(SecretKeyError, match="at least 32"):
        Cipher("short")


async def test_rotation_prepublishes_then_switches_then_retires(db: Database) -> None:
    """A verifier that cached the JWKS never sees a token signed by a key it does not know, and
    tokens signed by the old key stay verifiable until they expire."""
    clock = Clock()
    keys = manager(db, clock)
    await keys.load()
    old = await keys.signing_key()
    old_token = access_token.issue(
        old, issuer="i", subject="s", audience="a", client_id="c", scope="", now=clock.now, ttl=600
    )
    new_kid = await keys.rotate()
    published = {k["kid"] for k in (await keys.jwks())["keys"]}
    assert published == {old.kid, new_kid}
    assert (await keys.signing_key()).kid == old.kid  # not yet: pre-publication
    clock.now += 300
    await keys.load()
    assert (await keys.signing_key()).kid == new_kid
    assert (
        access_token.decode_own(
            old_token.token, await keys.verification_keys(), issuer="i", now=clock.now
        )
        is not None
    )
    clock.now += 600 + 60 + 1  # past the old key's last possible token
    await keys.load()
    assert {k["kid"] for k in (await keys.jwks())["keys"]} == {new_kid}


async def test_a_rotation_reaches_every_process(db: Database) -> None:
    """Two managers on one database (two processes): the other sees the new key on refresh."""
    clock = Clock()
    first, second = manager(db, clock), manager(db, clock)
    await first.load()
    await second.load()
    new_kid = await first.rotate(prepublish=0)
    clock.now += 30
    assert (await second.signing_key()).kid == new_kid


@pytest.mark.parametrize("alg", ["ES256", "Ed25519", "EdDSA", "RS256"])
async def test_each_signing_algorithm_issues_verifiable_tokens(db: Database, alg: str) -> None:
    clock = Clock()
    keys = manager(db, clock, alg=alg)
    await keys.load()
    key = await keys.signing_key()
    issued = access_token.issue(
        key,
        issuer="https://as",
        subject="u",
        audience="https://rs",
        client_id="c",
        scope="mcp:tools",
        now=clock.now,
        ttl=60,
    )
    header = json.loads(__import__("base64").urlsafe_b64decode(issued.token.split(".")[0] + "=="))
    assert header == {"alg": alg, "kid": key.kid, "typ": "at+jwt"}
    claims = access_token.decode_own(
        issued.token, await keys.verification_keys(), issuer="https://as", now=clock.now
    )
    assert claims is not None and claims["aud"] == "https://rs" and claims["jti"] == issued.jti
    assert (
        access_token.decode_own(
            issued.token, await keys.verification_keys(), issuer="https://other", now=clock.now
        )
        is None
    )
    assert (
        access_token.decode_own(
            issued.token, await keys.verification_keys(), issuer="https://as", now=clock.now + 61
        )
        is None
    )
