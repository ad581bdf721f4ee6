"""Redirect URI registration and matching (OAuth 2.1 §2.3.1, §4.1.1; RFC 8252 §7; A07, C17)."""

from __future__ import annotations

import pytest

from bastion.oauth.redirect_uri import (
    RedirectUriError,
    is_loopback_host,
    matches,
    validate_for_registration,
)


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/cb",
        "http://127.0.0.1/callback",
        "http://127.0.0.1:33418/",
        "http://localhost:6274/oauth/callback",
        "http://[::1]:8080/cb",
    ],
)
def test_a07_https_and_loopback_http_may_be_registered(uri: str) -> None:
    assert validate_for_registration(uri) == uri


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("http://app.example.com/cb", "non-loopback"),
        ("https://app.example.com/cb#frag", "fragment"),
        ("javascript:alert(1)", "not allowed"),
        ("data:text/html,hi", "not allowed"),
        ("file:///etc/passwd", "not allowed"),
        ("vbscript:x", "not allowed"),
        ("/relative/path", "absolute"),
        ("https://app.example.com/c b", "whitespace"),
        ("com.example.app:/cb", "not allowed"),
    ],
)
def test_a07_unsafe_redirect_uris_are_refused(uri: str, why: str) -> None:
    with pytest.raises(RedirectUriError, match=why):
        validate_for_registration(uri)


def test_native_clients_may_use_a_private_use_scheme() -> None:
    """RFC 8252 §7.1: reverse-domain private-use schemes, for application_type native only."""
    assert validate_for_registration("com.example.app:/cb", application_type="native")


def test_a07_exact_match_is_required() -> None:
    registered = ["https://app.example.com/cb"]
    assert matches("https://app.example.com/cb", registered)
    for other in (
        "https://app.example.com/cb/",
        "https://app.example.com/cb?x=1",
        "https://app.example.com/CB",
        "https://evil.example.com/cb",
        "https://app.example.com:8443/cb",
    ):
        assert not matches(other, registered), other


def test_a07_loopback_port_may_vary_rfc8252_section_7_3() -> None:
    registered = ["http://127.0.0.1/callback", "http://[::1]:1/cb", "http://localhost:5/x"]
    assert matches("http://127.0.0.1:53682/callback", registered)
    assert matches("http://[::1]:9999/cb", registered)
    assert matches("http://localhost:6274/x", registered)
    assert not matches("http://127.0.0.1:53682/other", registered)
    assert not matches("http://localhost:53682/callback", registered)  # host differs
    assert not matches("https://127.0.0.1:53682/callback", registered)  # scheme differs


def test_loopback_hosts() -> None:
    assert is_loopback_host("127.0.0.2")
    assert is_loopback_host("[::1]")
    assert is_loopback_host("LOCALHOST")
    assert not is_loopback_host("localhost.evil.com")
    assert not is_loopback_host("10.0.0.1")
    assert not is_loopback_host(None)
