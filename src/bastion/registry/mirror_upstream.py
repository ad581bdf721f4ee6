"""Reading an upstream registry's ``GET /v0.1/servers`` for a mirror, bounded and checked
(registry OpenAPI 2025-12-01: ``cursor``, ``limit`` at most 100, ``updated_since``,
``include_deleted``, ``search``; answer ``{servers, metadata: {nextCursor, count}}``).

A page is refused as a whole when it is not what the API answers: not JSON, larger than
:data:`MAX_PAGE_BYTES`, more servers than asked for, no ``servers`` array, a cursor that is not a
string or that was already followed (a loop). A refused page stops the run before anything is
written (:mod:`bastion.registry.mirror`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from bastion.config import MirrorSettings
from bastion.registry.problems import Problem
from bastion.registry.times import format_rfc3339
from bastion.registry.validation import parse_object

PAGE_LIMIT = 100
MAX_PAGE_BYTES = 4 * 1024 * 1024
MAX_CURSOR = 1024
# What one run reads at most: beyond it, the run stops as at max_pages and the next continues.
MAX_PASS_BYTES = 64 * 1024 * 1024


class UpstreamUnavailable(Exception):
    """The upstream could not be read (network, status): what failed and what to do."""


class UpstreamRefused(Exception):
    """The upstream answered something that is not a registry page: nothing of the run is kept."""


@dataclass
class UpstreamPass:
    """What one run read: the page items in order, and the cursor to continue from when it
    stopped at the page limit (None: the listing is complete)."""

    items: list[Any] = field(default_factory=list)
    next_cursor: str | None = None
    pages: int = 0


async def _get_page(
    http: httpx.AsyncClient, url: str, params: dict[str, str], seconds: float
) -> bytes:
    try:
        async with http.stream(
            "GET",
            url,
            params=params,
            headers={"Accept": "application/json"},
            timeout=httpx.Timeout(seconds),
            follow_redirects=False,
        ) as response:
            if response.status_code != 200:
                text = (await response.aread())[:200].decode("utf-8", "replace")
                raise UpstreamUnavailable(
                    f"{url} answered {response.status_code} ({text!r}); check the mirror's url "
                    "and that the upstream is up"
                )
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_PAGE_BYTES:
                    raise UpstreamRefused(
                        f"{url} answered a page larger than {MAX_PAGE_BYTES} bytes"
                    )
            return bytes(body)
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(
            f"cannot read {url}: {exc.__class__.__name__}: {exc}; check the mirror's url, the "
            "network, and timeout_seconds"
        ) from None


def _page(body: bytes, url: str) -> tuple[list[Any], str | None]:
    try:
        document = parse_object(body)
    except Problem as problem:
        reasons = "; ".join(e.message for e in problem.errors)
        raise UpstreamRefused(f"{url} did not answer JSON: {reasons or problem.detail}") from None
    servers = document.get("servers")
    if not isinstance(servers, list):
        raise UpstreamRefused(f"{url} did not answer a server list (no servers array)")
    if len(servers) > PAGE_LIMIT:
        raise UpstreamRefused(f"{url} answered {len(servers)} servers for limit={PAGE_LIMIT}")
    metadata = document.get("metadata", {})
    if not isinstance(metadata, dict):
        raise UpstreamRefused(f"{url} answered a metadata member that is not an object")
    cursor = metadata.get("nextCursor")
    if cursor is not None and (not isinstance(cursor, str) or len(cursor) > MAX_CURSOR):
        raise UpstreamRefused(
            f"{url} answered a nextCursor that is not a string of at most {MAX_CURSOR} characters"
        )
    return servers, cursor or None


async def read_pass(
    mirror: MirrorSettings,
    http: httpx.AsyncClient,
    *,
    since: int | None,
    cursor: str | None,
    include_deleted: bool,
    max_bytes: int = MAX_PASS_BYTES,
) -> UpstreamPass:
    """Read at most ``mirror.max_pages`` pages, and no more pages once ``max_bytes`` were read,
    from ``cursor`` (None: the first page) of the servers changed after ``since`` (Unix ms;
    None: every server)."""
    url = f"{mirror.url}/v0.1/servers"
    found = UpstreamPass()
    seen: set[str] = set()
    read = 0
    while found.pages < mirror.max_pages and read < max_bytes:
        params = {"limit": str(PAGE_LIMIT)}
        if since is not None:
            params["updated_since"] = format_rfc3339(since)
        if include_deleted:
            params["include_deleted"] = "true"
        if mirror.search:
            params["search"] = mirror.search
        if cursor:
            params["cursor"] = cursor
        body = await _get_page(http, url, params, mirror.timeout_seconds)
        read += len(body)
        servers, cursor = _page(body, url)
        found.pages += 1
        found.items += servers
        if cursor is None:
            return found
        if cursor in seen:
            raise UpstreamRefused(f"{url} answered the cursor {cursor[:80]!r} twice (a loop)")
        seen.add(cursor)
    found.next_cursor = cursor
    return found


__all__ = [
    "MAX_PAGE_BYTES",
    "MAX_PASS_BYTES",
    "PAGE_LIMIT",
    "UpstreamPass",
    "UpstreamRefused",
    "UpstreamUnavailable",
    "read_pass",
]
