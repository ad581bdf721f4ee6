"""The revocation list of a resource server (bastion.resource.revocation): revoked grants
(``grant_id``) and access tokens (``jti``, RFC 7519 §4.1.7), each kept until its expiry plus a
grace that covers the verifiers' ``exp`` leeway; the version waiters follow; the JSON document
the authorization server publishes and its ETag (RFC 9110 §8.8.3)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bastion.resource import Principal, RevocationCheck, RevocationList
from bastion.resource.revocation import GRACE, parse_document

NOW = 1_800_000_000


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def principal(*, grant_id: str | None = None, jti: str | None = None) -> Principal:
    claims: dict[str, Any] = {"sub": "alice"}
    if grant_id is not None:
        claims["grant_id"] = grant_id
    return Principal(
        subject="alice",
        client_id="app",
        scopes=frozenset(),
        claims=claims,
        token_id=jti,
        expires_at=NOW + 600,
    )


def test_a_revoked_grant_covers_every_token_carrying_it_and_nothing_else() -> None:
    revoked = RevocationList(clock=Clock())
    assert isinstance(revoked, RevocationCheck)
    assert revoked.add("grant", "family-1", NOW + 600)
    assert revoked.is_revoked(principal(grant_id="family-1", jti="a"))
    assert revoked.is_revoked(principal(grant_id="family-1", jti="b"))
    assert not revoked.is_revoked(principal(grant_id="family-2", jti="a"))
    assert not revoked.is_revoked(principal())
    assert revoked.covers("family-1", None) and not revoked.covers(None, "family-1")


def test_a_revoked_token_covers_that_jti_only() -> None:
    revoked = RevocationList(clock=Clock())
    revoked.add("token", "jti-1", NOW + 600)
    assert revoked.is_revoked(principal(grant_id="family-1", jti="jti-1"))
    assert not revoked.is_revoked(principal(grant_id="jti-1", jti="jti-2"))
    assert revoked.covers(None, "jti-1")


def test_unknown_kinds_are_refused_and_empty_values_ignored() -> None:
    revoked = RevocationList(clock=Clock())
    with pytest.raises(ValueError, match="grant or a token"):
        revoked.add("user", "alice", NOW + 600)  # type: ignore[arg-type]
    assert not revoked.add("grant", "", NOW + 600)
    assert len(revoked) == 0


def test_entries_stay_for_the_grace_after_expiry_then_pruning_drops_them() -> None:
    """A verifier accepts a token up to its leeway past exp: the entry outlives exp by the
    grace, and only pruning (never the check) looks at the clock."""
    clock = Clock()
    revoked = RevocationList(clock=clock)
    revoked.add("grant", "short", NOW + 10)
    revoked.add("token", "long", NOW + 1000)
    clock.now = NOW + 10 + GRACE - 1
    assert revoked.prune() == 0
    assert revoked.covers("short", None)
    clock.now = NOW + 10 + GRACE
    assert revoked.prune() == 1
    assert not revoked.covers("short", None) and revoked.covers(None, "long")
    clock.now = NOW + 1000 + GRACE
    assert revoked.prune() == 1
    assert len(revoked) == 0
    assert revoked.prune() == 0


def test_an_entry_past_its_grace_is_not_added() -> None:
    clock = Clock()
    revoked = RevocationList(clock=clock)
    assert not revoked.add("grant", "old", NOW - GRACE)
    assert revoked.version == 0


def test_adding_again_changes_nothing_unless_it_expires_later() -> None:
    revoked = RevocationList(clock=Clock())
    revoked.add("grant", "g", NOW + 100)
    version = revoked.version
    assert not revoked.add("grant", "g", NOW + 50)
    assert not revoked.add("grant", "g", NOW + 100)
    assert revoked.version == version
    assert revoked.add("grant", "g", NOW + 200)
    assert revoked.version == version + 1


def test_update_merges_many_entries_in_one_change() -> None:
    revoked = RevocationList(clock=Clock())
    revoked.add("grant", "kept", NOW + 100)
    assert revoked.update({"g1": NOW + 100, "g2": NOW + 100}, {"t1": NOW + 100}) == 3
    assert revoked.version == 2
    assert all(revoked.covers(g, None) for g in ("kept", "g1", "g2"))
    assert revoked.update({"g1": NOW + 100}, {}) == 0
    assert revoked.version == 2


async def test_waiters_wake_on_the_next_change_and_time_out_without_one() -> None:
    revoked = RevocationList(clock=Clock())
    assert not await revoked.wait_changed(revoked.version, 0.01)
    assert revoked.waiters == 0
    waiting = asyncio.ensure_future(revoked.wait_changed(revoked.version, 10))
    await asyncio.sleep(0)
    assert revoked.waiters == 1
    revoked.add("token", "t", NOW + 60)
    assert await asyncio.wait_for(waiting, 5)
    assert revoked.waiters == 0
    assert await revoked.wait_changed(0, 10)  # behind already: no wait at all


def test_the_document_lists_grants_and_tokens_with_a_content_etag() -> None:
    """Two lists with the same content have the same ETag, whatever their history, so every
    process of a deployment tags the same list alike."""
    one = RevocationList(clock=Clock())
    one.add("grant", "g", NOW + 100)
    one.add("token", "t", NOW + 200)
    etag, body = one.document()
    assert json.loads(body) == {"grants": {"g": NOW + 100}, "tokens": {"t": NOW + 200}}
    assert etag.startswith('"') and etag.endswith('"')
    assert one.document() == (etag, body)
    other = RevocationList(clock=Clock())
    other.update({"g": NOW + 50}, {"t": NOW + 200})
    other.add("grant", "g", NOW + 100)
    assert other.document() == (etag, body)
    one.add("token", "t2", NOW + 200)
    assert one.document()[0] != etag
    assert parse_document(one.document()[1]) == (
        {"g": NOW + 100},
        {"t": NOW + 200, "t2": NOW + 200},
    )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"grants": {}}', "'tokens'"),
        (b'{"grants": {"g": "soon"}, "tokens": {}}', "'grants'"),
        (b'{"grants": {"g": true}, "tokens": {}}', "'grants'"),
    ],
)
def test_a_document_that_is_not_a_revocation_list_is_refused(body: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_document(body)
