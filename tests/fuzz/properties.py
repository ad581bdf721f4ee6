"""What every fuzzed response must satisfy, whatever was sent.

- No 5xx (the gateway may answer 502/503/504 when its upstream is in trouble), and never a
  Python traceback or exception text in a body.
- JSON errors of the back-channel endpoints in the RFC's form (RFC 6749 §5.2, RFC 7591 §3.2.2,
  RFC 6750 §3.1, RFC 7009 §2.2.1): a JSON object whose ``error`` is one of the codes of that
  endpoint, an ``error_description`` made only of the characters RFC 6749 §5.2 allows
  (%x20-21 / %x23-5B / %x5D-7E), nothing else but ``error_uri``, ``Cache-Control: no-store``;
  ``invalid_client`` is 401 with ``WWW-Authenticate`` (RFC 6749 §5.2), in the scheme the client
  tried when it authenticated with the Authorization header.
- HTML pages carry no stack trace; redirects of /authorize go to the client's registered URI
  with ``error``, ``iss`` (RFC 9207) and the request's ``state``.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from tests.authserver._tokens import TOKEN_ERRORS  # RFC 6749 §5.2, RFC 8707 §2

# RFC 6749 §5.2: error_description = 1*( %x20-21 / %x23-5B / %x5D-7E ); same for error.
RFC6749_CHARS = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
# What an exception leaking into a response looks like (CPython's traceback, a repr).
LEAKS = re.compile(
    r"Traceback \(most recent call last\)|File \"[^\"]*\.py\", line \d+|"
    r"sqlalchemy\.exc\.|asyncpg\.exceptions|pydantic_core\."
)

# RFC 7591 §3.2.2, and RFC 7592 §3 / RFC 6750 §3.1 for the registration access token (and the
# initial access token, RFC 7591 §3).
REGISTRATION_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_redirect_uri",
        "invalid_client_metadata",
        "invalid_software_statement",
        "unapproved_software_statement",
        "invalid_token",
        "insufficient_scope",
    }
)
# RFC 7662 §2.3 refers to RFC 6749 §5.2 for the errors of the introspection endpoint.
INTROSPECTION_ERRORS = frozenset({"invalid_request", "invalid_client", "unauthorized_client"})
# RFC 7009 §2.2.1: RFC 6749 §5.2's errors plus unsupported_token_type.
REVOCATION_ERRORS = frozenset(
    {"invalid_request", "invalid_client", "unauthorized_client", "unsupported_token_type"}
)
# RFC 6749 §4.1.2.1, RFC 8707 §2 (invalid_target).
AUTHORIZATION_ERRORS = frozenset(
    {
        "invalid_request",
        "unauthorized_client",
        "access_denied",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
        "invalid_target",
    }
)


def describe(response: httpx.Response) -> str:
    """The request and the response, for an assertion message."""
    request = response.request
    sent = request.content[:300] if request.content else b""
    return (
        f"{request.method} {request.url} {sent!r}\n-> {response.status_code} "
        f"{dict(response.headers)!r}\n{response.text[:500]!r}"
    )


def no_server_error(response: httpx.Response, *, upstream_trouble: bool = False) -> None:
    """Status below 500 (or 502/503/504 for a gateway whose upstream failed); no traceback."""
    allowed = {502, 503, 504} if upstream_trouble else set()
    assert response.status_code < 500 or response.status_code in allowed, describe(response)
    assert not LEAKS.search(response.text), describe(response)


def json_error(
    response: httpx.Response, codes: frozenset[str], *, basic_tried: bool = False
) -> dict[str, Any]:
    """The response is an RFC 6749 §5.2 style JSON error with one of ``codes``."""
    no_server_error(response)
    assert response.headers.get("content-type", "").startswith("application/json"), describe(
        response
    )
    body = json.loads(response.content)
    assert isinstance(body, dict), describe(response)
    assert body.get("error") in codes, describe(response)
    assert set(body) <= {"error", "error_description", "error_uri"}, describe(response)
    description = body.get("error_description", "")
    assert isinstance(description, str), describe(response)
    assert RFC6749_CHARS.fullmatch(description), describe(response)
    assert response.headers.get("cache-control") == "no-store", describe(response)
    if body["error"] == "invalid_client":
        # RFC 6749 §5.2: 401 with a challenge when the client authenticated with the header.
        assert response.status_code == 401, describe(response)
        challenge = response.headers.get("www-authenticate", "")
        assert challenge, describe(response)
        if basic_tried:
            assert challenge.lower().startswith("basic"), describe(response)
    elif body["error"] == "invalid_token":
        assert response.status_code == 401, describe(response)
        assert response.headers.get("www-authenticate", "").lower().startswith("bearer")
    elif response.status_code == 401:
        assert response.headers.get("www-authenticate"), describe(response)
    return body


def basic_tried(headers: dict[str, Any]) -> bool:
    """Whether a request authenticated (or tried to) with the Basic scheme in its header."""
    value = headers.get("Authorization", b"")
    raw = value if isinstance(value, bytes) else str(value).encode("latin-1", "replace")
    return raw.strip().lower().startswith(b"basic")


def html_page(response: httpx.Response) -> None:
    """An HTML page (error, log-in, consent) without a stack trace, never cached."""
    no_server_error(response)
    assert response.headers.get("content-type", "").startswith("text/html"), describe(response)
    assert response.headers.get("cache-control") == "no-store", describe(response)


def redirect_params(location: str) -> dict[str, list[str]]:
    """The query parameters of a redirect, grouped by name."""
    grouped: dict[str, list[str]] = {}
    for key, value in parse_qsl(urlsplit(location).query, keep_blank_values=True):
        grouped.setdefault(key, []).append(value)
    return grouped


def error_redirect(
    response: httpx.Response,
    *,
    redirect_uris: list[str],
    issuer: str,
    state: str | None,
    codes: frozenset[str] = AUTHORIZATION_ERRORS,
) -> dict[str, list[str]]:
    """An authorization error response (RFC 6749 §4.1.2.1, RFC 9207 §2): to a registered
    redirect URI, with one ``error`` among ``codes``, ``iss`` and the request's ``state``."""
    location = response.headers["location"]
    base = location.split("?", 1)[0]
    assert any(base == uri.split("?", 1)[0] for uri in redirect_uris), describe(response)
    params = redirect_params(location)
    assert params.get("iss") == [issuer], describe(response)
    assert [*params.get("error", [])] and params["error"][0] in codes, describe(response)
    assert len(params["error"]) == 1, describe(response)
    assert RFC6749_CHARS.fullmatch(params.get("error_description", [""])[0]), describe(response)
    assert params.get("state") == ([state] if state is not None else None), describe(response)
    assert response.headers.get("cache-control") == "no-store", describe(response)
    return params


__all__ = [
    "AUTHORIZATION_ERRORS",
    "INTROSPECTION_ERRORS",
    "REGISTRATION_ERRORS",
    "REVOCATION_ERRORS",
    "RFC6749_CHARS",
    "TOKEN_ERRORS",
    "basic_tried",
    "describe",
    "error_redirect",
    "html_page",
    "json_error",
    "no_server_error",
    "redirect_params",
]
