"""Feeds that keep a :class:`~bastion.resource.revocation.RevocationList` current.

A :class:`RevocationFeed` is a :class:`~bastion.follower.Follower`: a background task, started
and stopped in the app's lifespan, that retries with bounded backoff and logs a problem once. It
never raises into the app: while the source cannot be reached the list keeps what it holds, and
what was revoked meanwhile arrives when the source is back (each feed reloads everything then).

:class:`HttpRevocationFeed` is for resource servers that cannot reach bastion's database (a
third party's app using :mod:`bastion.resource`): it long-polls the authorization server's
revocation document, ``<issuer>/revocations``, which answers as soon as the list changes. The
database feed of bastion's own processes is
:class:`~bastion.store.revocation_feed.DatabaseRevocationFeed`.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from bastion.follower import Follower
from bastion.oauth.endpoint_url import ANY_HTTP
from bastion.resource.revocation import MAX_DOCUMENT_BYTES, RevocationList, parse_document
from bastion.resource.verifier import read_limited

log = logging.getLogger("bastion.revocations")

DEFAULT_WAIT = 25
# A 304 sooner than this after asking means the server did not hold the request (it ignores
# `wait`); the next request waits out the rest rather than spinning.
_MIN_POLL = 1.0


class RevocationFeed(Follower):
    """Follows a source of revocations into ``revocations``; ``ready`` is set while the list
    holds everything the source had."""

    topic = "revocations"
    consequence = "tokens revoked meanwhile keep working here until it is back"

    def __init__(self, revocations: RevocationList) -> None:
        super().__init__(log)
        self.revocations = revocations


class HttpRevocationFeed(RevocationFeed):
    """Keep ``revocations`` current from an authorization server's revocation document.

    ``url`` is bastion's ``<issuer>/revocations``. The first request fetches the whole list;
    each next one sends its ``ETag`` in ``If-None-Match`` with ``wait`` seconds, and the server
    holds it until the list changes (200 with the new list) or the time is up (304). A change
    at the authorization server therefore reaches this list within a round trip. ``http``
    (default: one made here and closed by :meth:`aclose`) must allow ``wait`` seconds of read
    time.
    """

    def __init__(
        self,
        url: str,
        revocations: RevocationList,
        *,
        http: httpx.AsyncClient | None = None,
        wait: int = DEFAULT_WAIT,
    ) -> None:
        if ANY_HTTP.problem(url) is not None:
            raise ValueError(f"the revocation document's URL must be absolute http(s); got {url!r}")
        if not 0 <= wait <= 300:
            raise ValueError("wait must be between 0 and 300 seconds")
        super().__init__(revocations)
        self.url = url
        self.wait = wait
        self.hint = "check the URL and that the authorization server is up"
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, read=wait + 10.0), follow_redirects=False
        )

    def __repr__(self) -> str:
        return f"HttpRevocationFeed({self.url!r})"

    @property
    def source(self) -> str:
        return self.url

    async def aclose(self) -> None:
        """Stop following; close the HTTP client if this feed made it."""
        await super().aclose()
        if self._own_http:
            await self._http.aclose()

    async def _follow(self) -> None:
        etag: str | None = None
        while True:
            started = time.monotonic()
            headers = {"Accept": "application/json"}
            params = {}
            if etag is not None:
                headers["If-None-Match"] = etag
                params["wait"] = str(self.wait)
            body, etag_seen = await self._get(headers, params, etag is not None)
            if body is None:
                left = _MIN_POLL - (time.monotonic() - started)
                if left > 0:
                    await asyncio.sleep(left)
            else:
                grants, tokens = parse_document(body)
                self.revocations.update(grants, tokens)
                if not etag_seen:
                    raise ValueError(
                        "the answer has no ETag: is this a bastion revocation document?"
                    )
                etag = etag_seen
                self._ready()
            self.revocations.prune()

    async def _get(
        self, headers: dict[str, str], params: dict[str, str], conditional: bool
    ) -> tuple[bytes | None, str | None]:
        """GET the document: its body (None for 304) and ETag."""
        timeout = httpx.Timeout(10.0, read=self.wait + 10.0)
        async with self._http.stream(
            "GET", self.url, headers=headers, params=params, timeout=timeout
        ) as response:
            if response.status_code == 304 and conditional:
                return None, response.headers.get("etag")
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            body = await read_limited(response, MAX_DOCUMENT_BYTES, "the document")
            return body, response.headers.get("etag")


__all__ = ["DEFAULT_WAIT", "HttpRevocationFeed", "RevocationFeed"]
