"""PKCE (RFC 7636) with S256 only (OAuth 2.1 §4.1.1; checklist A08)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.oauth import pkce
from bastion.oauth.errors import InvalidGrant, InvalidRequest


def test_s256_matches_rfc7636_appendix_b_example() -> None:
    """RFC 7636 Appendix B: the published verifier/challenge pair."""
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce.s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_a08_challenge_is_required() -> None:
    with pytest.raises(InvalidRequest, match="code_challenge is required"):
        pkce.check_challenge(None, "S256")


@pytest.mark.parametrize("method", ["plain", None, "s256", "S512"])
def test_a08_only_s256_is_accepted(method: str | None) -> None:
    """OAuth 2.1 §4.1.1: plain is refused; a missing method does not default to plain."""
    with pytest.raises(InvalidRequest, match="S256"):
        pkce.check_challenge(pkce.s256(pkce.new_verifier()), method)


@pytest.mark.parametrize(
    "challenge", ["short", "x" * 44, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"]
)
def test_malformed_challenge_is_refused(challenge: str) -> None:
    """RFC 7636 §4.2: an S256 challenge is 43 base64url characters."""
    with pytest.raises(InvalidRequest):
        pkce.check_challenge(challenge, "S256")


def test_a08_verifier_without_challenge_is_a_downgrade() -> None:
    """RFC 9700 §2.1.1: a code_verifier for a code issued without PKCE is refused."""
    with pytest.raises(InvalidGrant, match="without PKCE"):
        pkce.verify(pkce.new_verifier(), None)


def test_missing_verifier_is_invalid_request() -> None:
    with pytest.raises(InvalidRequest):
        pkce.verify(None, pkce.s256(pkce.new_verifier()))


def test_wrong_verifier_is_invalid_grant() -> None:
    with pytest.raises(InvalidGrant, match="does not match"):
        pkce.verify(pkce.new_verifier(), pkce.s256(pkce.new_verifier()))


@given(
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~",
        min_size=43,
        max_size=128,
    )
)
def test_any_valid_verifier_round_trips(verifier: str) -> None:
    """RFC 7636 §4.1: every 43-128 character unreserved verifier verifies its own challenge."""
    pkce.verify(verifier, pkce.check_challenge(pkce.s256(verifier), "S256"))


@pytest.mark.parametrize("verifier", ["a" * 42, "a" * 129, "a" * 42 + " ", "é" * 43])
def test_verifier_outside_the_grammar_is_refused(verifier: str) -> None:
    with pytest.raises(InvalidGrant):
        pkce.verify(verifier, pkce.s256("a" * 43))


def test_a_verifier_or_challenge_with_a_trailing_newline_is_refused() -> None:
    """RFC 7636 §4.1, §4.2: the whole value must match (a "$" anchor would accept a final
    newline; found by fuzzing)."""
    verifier = pkce.new_verifier()
    challenge = pkce.s256(verifier)
    with pytest.raises((InvalidGrant, InvalidRequest)):
        pkce.check_challenge(challenge + "\n", "S256")
    with pytest.raises((InvalidGrant, InvalidRequest)):
        pkce.verify(verifier + "\n", challenge)
