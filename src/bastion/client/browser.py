"""Sending the user to the authorization URL (OAuth 2.1 §4.1.1, RFC 8252 §6).

The opener is a pluggable async callable ``open_url(url)``: :func:`open_in_browser` (the
default) prints the URL for headless use and opens the system browser with :mod:`webbrowser`,
which starts the browser without a shell. :func:`headless_opener` plays the browser for
authorization servers that redirect straight back (tests, the conformance suite, machines).
Only http(s) URLs are ever opened, http only on loopback hosts (checklist C18).
"""

from __future__ import annotations

import asyncio
import sys
import webbrowser
from collections.abc import Awaitable, Callable
from typing import TextIO
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from bastion.client.errors import AuthorizationError, UnsafeAuthorizationUrl
from bastion.oauth.redirect_uri import is_loopback_host

OpenUrl = Callable[[str], Awaitable[None]]
MAX_REDIRECTS = 10


def check_authorization_url(url: str, *, allow_insecure_http: bool = False) -> str:
    """Refuse anything but an absolute https URL (http only on a loopback host) before it goes to
    a browser: no ``javascript:``, ``data:``, ``file:`` or ``vbscript:``, no control characters
    or spaces (checklist C18)."""
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise UnsafeAuthorizationUrl("the authorization URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise UnsafeAuthorizationUrl(f"the authorization URL {url!r} is not a URL") from None
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname:
        if is_loopback_host(parts.hostname) or allow_insecure_http:
            return url
        raise UnsafeAuthorizationUrl(
            f"refusing to open {parts.scheme}://{parts.netloc}: http is only allowed for loopback "
            "authorization servers; the authorization endpoint must use https"
        )
    raise UnsafeAuthorizationUrl(
        f"refusing to open an authorization URL with scheme {parts.scheme!r}: only https (or "
        "loopback http) may be opened"
    )


def open_in_browser(stream: TextIO | None = None) -> OpenUrl:
    """An opener that prints the URL (to stderr by default) and opens the system browser."""

    async def opener(url: str) -> None:
        check_authorization_url(url, allow_insecure_http=True)  # the flow checked the policy
        out = stream if stream is not None else sys.stderr
        print(f"Open this URL in a browser to authorize:\n{url}", file=out, flush=True)
        await asyncio.to_thread(webbrowser.open, url, 2)

    return opener


def headless_opener(
    *, max_redirects: int = MAX_REDIRECTS, timeout: float = 10.0, verify: bool = True
) -> OpenUrl:
    """An opener that GETs the authorization URL without a browser and follows its redirects
    one by one until one leads to the request's ``redirect_uri``, which it then requests
    (delivering the authorization response to the loopback listener).

    For authorization servers that redirect without user interaction (the MCP conformance
    suite's mock server, machine setups). Redirects are followed only to http(s) URLs; the final
    loopback hop is requested exactly once.
    """

    async def opener(url: str) -> None:
        target = _redirect_target(url)
        async with httpx.AsyncClient(
            follow_redirects=False, timeout=timeout, verify=verify
        ) as client:
            current = url
            for _ in range(max_redirects):
                check_authorization_url(current, allow_insecure_http=True)
                response = await client.get(current)
                location = response.headers.get("location")
                if response.status_code not in (301, 302, 303, 307, 308) or not location:
                    raise AuthorizationError(
                        f"the authorization server answered HTTP {response.status_code} instead "
                        "of redirecting back; it needs a person at a browser (use the default "
                        "opener)"
                    )
                current = urljoin(current, location)
                parts = urlsplit(current)
                if (parts.scheme, parts.netloc, parts.path) == target:
                    await client.get(current)
                    return
            raise AuthorizationError(f"more than {max_redirects} redirects from {url}")

    return opener


def _redirect_target(url: str) -> tuple[str, str, str]:
    values = parse_qs(urlsplit(url).query).get("redirect_uri") or []
    if len(values) != 1 or not is_loopback_host(urlsplit(values[0]).hostname):
        raise AuthorizationError("the authorization URL has no loopback redirect_uri")
    parts = urlsplit(values[0])
    return (parts.scheme, parts.netloc, parts.path)


__all__ = ["OpenUrl", "check_authorization_url", "headless_opener", "open_in_browser"]
