"""The endpoint URL rule (RFC 8414 §2, RFC 6749 §3.1, OAuth 2.1 §1.5, RFC 8252 §8.3) with its
policy: one rule that configuration, metadata parsing, the client, federation, client
registration and CIMD all apply, each wording the problem its own way."""

from __future__ import annotations

import pytest

from bastion.oauth.endpoint_url import ANY_HTTP, EndpointUrlPolicy, Problem

LOOPBACK = EndpointUrlPolicy()
STRICT = EndpointUrlPolicy(http="never", query=False, credentials=False)


@pytest.mark.parametrize(
    "url",
    [
        "https://as.example.com",
        "https://as.example.com/token?tenant=a",
        "https://user@as.example.com/token",
        "http://127.0.0.1:8000/token",
        "http://localhost/token",
        "http://[::1]/token",
    ],
)
def test_the_default_policy_takes_https_and_loopback_http(url: str) -> None:
    assert LOOPBACK.problem(url) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://as.example.com:99999/", "invalid"),
        ("https://[::1/", "invalid"),
        ("ftp://as.example.com/", "scheme"),
        ("as.example.com/token", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("https:///token", "no_host"),
        ("https://as.example.com/token#x", "fragment"),
        ("https://as.example.com/token#", "fragment"),
        ("http://as.example.com/token", "http"),
        ("http://10.0.0.1/token", "http"),
    ],
)
def test_each_defect_is_named(url: str, problem: Problem) -> None:
    assert LOOPBACK.problem(url) == problem


def test_syntax_is_judged_before_plain_http() -> None:
    """The order is fixed for every use: parse, scheme, host, credentials, query, fragment,
    then http."""
    assert LOOPBACK.problem("http://as.example.com/#x") == "fragment"
    assert STRICT.problem("http://u@as.example.com/?q#x") == "credentials"
    assert STRICT.problem("http://as.example.com/?q#x") == "query"


@pytest.mark.parametrize(
    ("policy", "url", "problem"),
    [
        (STRICT, "http://127.0.0.1/token", "http"),
        (STRICT, "https://u:p@as.example.com/", "credentials"),
        (STRICT, "https://as.example.com/?a=b", "query"),
        (ANY_HTTP, "http://as.example.com/token", None),
        (ANY_HTTP, "http://as.example.com/token#x", "fragment"),
    ],
)
def test_the_policy_decides_http_query_and_credentials(
    policy: EndpointUrlPolicy, url: str, problem: Problem | None
) -> None:
    assert policy.problem(url) == problem
