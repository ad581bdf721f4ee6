"""Proof Key for Code Exchange (RFC 7636), S256 only as OAuth 2.1 §4.1.1 and MCP require."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from bastion.oauth.errors import InvalidGrant, InvalidRequest

# RFC 7636 §4.1: code_verifier = 43*128unreserved; §4.2: S256 challenge is 43 base64url chars.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")

SUPPORTED_METHODS = ("S256",)


def s256(verifier: str) -> str:
    """BASE64URL-ENCODE(SHA256(ASCII(code_verifier))) (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_verifier() -> str:
    """A fresh high-entropy code_verifier (RFC 7636 §4.1, §7.1): 43 characters, 256 bits."""
    return secrets.token_urlsafe(32)


def check_challenge(challenge: str | None, method: str | None) -> str:
    """Validate an authorization request's PKCE parameters and return the challenge.

    PKCE is required (OAuth 2.1 §4.1.1, MCP security considerations) and only S256 is accepted;
    ``plain`` is refused, and a missing method is refused too rather than defaulting to plain
    (RFC 7636 §4.3 defaults to plain, which OAuth 2.1 forbids for our purposes).
    """
    if not challenge:
        raise InvalidRequest("code_challenge is required (PKCE with S256, OAuth 2.1 section 4.1.1)")
    if method != "S256":
        shown = method if method else "(missing)"
        raise InvalidRequest(
            f"code_challenge_method must be S256; got {shown}. The plain method is not supported"
        )
    if not _CHALLENGE.fullmatch(challenge):
        raise InvalidRequest(
            "code_challenge must be 43 base64url characters (RFC 7636 section 4.2)"
        )
    return challenge


def verify(verifier: str | None, challenge: str | None) -> None:
    """Check a token request's code_verifier against the stored challenge (RFC 7636 §4.6).

    A verifier sent for a code that had no challenge is refused: that is a PKCE downgrade attempt
    (RFC 9700 §2.1.1).
    """
    if challenge is None:
        if verifier is not None:
            raise InvalidGrant("code_verifier sent for an authorization request without PKCE")
        raise InvalidGrant("authorization code was issued without PKCE")
    if verifier is None:
        raise InvalidRequest("code_verifier is required")
    if not _VERIFIER.fullmatch(verifier):
        raise InvalidGrant("code_verifier must be 43 to 128 unreserved characters (RFC 7636 4.1)")
    if not hmac.compare_digest(s256(verifier), challenge):
        raise InvalidGrant("code_verifier does not match the code_challenge")


__all__ = ["SUPPORTED_METHODS", "check_challenge", "new_verifier", "s256", "verify"]
