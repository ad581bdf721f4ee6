"""Signed identity headers: the gateway's replacement for token passthrough (R05).

HMAC-SHA256 (RFC 2104) over a canonical string; see bastion.gateway.identity.
"""

from __future__ import annotations

import pytest

from bastion.gateway.identity import (
    SIGNATURE,
    SUBJECT,
    TIMESTAMP,
    IdentityError,
    sign_identity_headers,
    verify_identity_headers,
)

SECRET = b"an-identity-secret-of-at-least-32-bytes!"
AUDIENCE = "https://gw.example/mcp/notes"
NOW = 1_800_000_000.0


def signed(**overrides: object) -> dict[str, str]:
    values: dict[str, object] = {
        "subject": "alice",
        "client_id": "vscode",
        "scopes": ["mcp:tools", "notes:read"],
        "audience": AUDIENCE,
        "now": lambda: NOW,
        **overrides,
    }
    return sign_identity_headers(SECRET, **values)  # type: ignore[arg-type]


def test_signed_headers_verify_and_give_back_the_caller() -> None:
    """What the gateway signs, verify_identity_headers accepts, names in any case."""
    headers = {k.upper(): v for k, v in signed().items()}
    identity = verify_identity_headers(headers, SECRET, audience=AUDIENCE, now=lambda: NOW + 5)
    assert identity.subject == "alice"
    assert identity.client_id == "vscode"
    assert identity.scopes == {"mcp:tools", "notes:read"}
    assert identity.audience == AUDIENCE
    assert identity.timestamp == int(NOW)


def test_values_outside_visible_ascii_round_trip_percent_encoded() -> None:
    """Header values are visible ASCII; others (and spaces, %) are percent-encoded."""
    headers = signed(subject=" zoë 100% ", client_id="a b")
    assert headers[SUBJECT] == "%20zo%C3%AB%20100%25%20"
    identity = verify_identity_headers(headers, SECRET, now=lambda: NOW)
    assert identity.subject == " zoë 100% "
    assert identity.client_id == "a b"


@pytest.mark.parametrize("name", ["X-Bastion-Subject", "X-Bastion-Scopes", "X-Bastion-Audience"])
def test_an_altered_header_fails_the_signature(name: str) -> None:
    """Any change to a signed value invalidates the signature."""
    headers = signed()
    headers[name] = "mallory"
    with pytest.raises(IdentityError, match="signature"):
        verify_identity_headers(headers, SECRET, now=lambda: NOW)


def test_another_key_fails_the_signature() -> None:
    with pytest.raises(IdentityError, match="signature"):
        verify_identity_headers(signed(), b"x" * 40, now=lambda: NOW)


def test_stale_or_future_headers_are_refused() -> None:
    """Replays are bounded by max_age, in both directions (clock skew)."""
    with pytest.raises(IdentityError, match="older"):
        verify_identity_headers(signed(), SECRET, max_age=60, now=lambda: NOW + 61)
    with pytest.raises(IdentityError, match="older"):
        verify_identity_headers(signed(), SECRET, max_age=60, now=lambda: NOW - 61)


def test_headers_signed_for_another_upstream_are_refused() -> None:
    """Upstreams sharing the key cannot replay each other's headers when they pass audience."""
    with pytest.raises(IdentityError, match="signed for"):
        verify_identity_headers(
            signed(), SECRET, audience="https://gw.example/mcp/other", now=lambda: NOW
        )


def test_missing_headers_are_named() -> None:
    headers = signed()
    del headers[TIMESTAMP]
    del headers[SIGNATURE]
    with pytest.raises(IdentityError, match="X-Bastion-Timestamp, X-Bastion-Signature"):
        verify_identity_headers(headers, SECRET, now=lambda: NOW)


def test_string_secret_is_accepted_for_convenience() -> None:
    identity = verify_identity_headers(signed(), SECRET.decode(), now=lambda: NOW)
    assert identity.subject == "alice"
