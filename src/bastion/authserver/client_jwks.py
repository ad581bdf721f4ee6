"""The JWK Sets that private_key_jwt clients publish at their ``jwks_uri`` (RFC 7591 §2,
RFC 7523 §3), fetched and cached per URL.

- Fetched through the SSRF guard (as Client ID Metadata Documents are: ``cimd.timeout``,
  ``cimd.allow_private_addresses``), over https only (http on a loopback host), at most
  :data:`MAX_BYTES`, a 200 answer with a JWK Set.
- Kept as HTTP says (``Cache-Control: max-age`` less ``Age``, or ``Expires``), else
  :data:`DEFAULT_TTL` seconds, and never less than :data:`MIN_TTL` nor more than
  :data:`MAX_TTL`: a key set asking not to be cached would otherwise be fetched on every token
  request, which is what this cache is for.
- An assertion naming a ``kid`` the cached set lacks (the client rotated its key) fetches the set
  again at once, but at most once per :data:`REFETCH_INTERVAL` seconds per URL, so that made-up
  kids cannot turn the token endpoint into a fetcher of the client's URL.
- Concurrent requests for one URL wait for a single fetch; at most :data:`MAX_ENTRIES` URLs are
  kept (the least recently used go first). A stale set is never used. After a failed fetch the
  URL is not tried again for :data:`REFETCH_INTERVAL` seconds (token requests meanwhile get
  invalid_client at once): a client registered with a slow or dead URL cannot make every token
  request wait for the timeout, nor make the server fetch once per request.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

import httpx

from bastion import safe_json
from bastion.authserver.cimd import cache_lifetime
from bastion.clock import Clock
from bastion.logs import get_logger
from bastion.net.ssrf import BlockedAddressError, guarded_transport
from bastion.oauth import jose
from bastion.oauth.client_metadata import jwks_uri_problem
from bastion.oauth.errors import InvalidClient

log = get_logger("bastion.client_jwks")

DEFAULT_TTL = 300
MIN_TTL = 60
MAX_TTL = 86400
REFETCH_INTERVAL = 10
MAX_ENTRIES = 1000
MAX_BYTES = 64 * 1024


@dataclass
class _Entry:
    keys: jose.UsableKeys
    expires_at: int
    refetched_at: int | None = None  # the last fetch an unknown kid asked for


class ClientJwks:
    """The key sets of clients registered with a ``jwks_uri``; made once per app."""

    def __init__(
        self,
        *,
        allow_private: bool,
        timeout: float,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._clock = clock
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            transport=transport or guarded_transport(allow_private=allow_private, timeout=timeout),
            timeout=timeout,
            headers={
                "Accept": "application/jwk-set+json, application/json",
                "Accept-Encoding": "identity",
                "User-Agent": "mcp-bastion",
            },
            follow_redirects=False,
        )
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._failed: OrderedDict[str, tuple[int, InvalidClient]] = OrderedDict()
        self._fetching: dict[str, asyncio.Lock] = {}

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()

    async def keys(self, uri: str, *, kid: str | None = None) -> jose.UsableKeys:
        """The key set at ``uri``, fresh enough and, when ``kid`` is given, holding it if the
        client now publishes it; InvalidClient when it cannot be had."""
        if problem := jwks_uri_problem(uri):
            raise InvalidClient(f"the client's jwks_uri {problem}", detail=uri)
        lock = self._fetching.setdefault(uri, asyncio.Lock())
        try:
            async with lock:
                return await self._keys(uri, kid)
        finally:
            if not lock.locked() and self._fetching.get(uri) is lock:
                del self._fetching[uri]

    async def _keys(self, uri: str, kid: str | None) -> jose.UsableKeys:
        now = self._clock()
        entry = self._cache.get(uri)
        if entry is not None and entry.expires_at <= now:
            del self._cache[uri]
            entry = None
        if entry is None:
            entry = await self._fetch(uri, now)
        elif kid is not None and kid not in entry.keys.kids:
            last = entry.refetched_at
            if last is None or last + REFETCH_INTERVAL <= now:
                log.info("jwks_uri %s: no key %r in the cached set; fetching it again", uri, kid)
                entry.refetched_at = now  # also when the fetch fails: the limit holds
                fetched = await self._fetch(uri, now)
                fetched.refetched_at = now
                entry = fetched
        self._cache.move_to_end(uri)
        return entry.keys

    async def _fetch(self, uri: str, now: int) -> _Entry:
        failed = self._failed.get(uri)
        if failed is not None and failed[0] + REFETCH_INTERVAL > now:
            raise InvalidClient(failed[1].description, detail=failed[1].detail)
        self._failed.pop(uri, None)
        try:
            entry = await self._get(uri, now)
        except InvalidClient as exc:
            self._failed[uri] = (now, exc)
            while len(self._failed) > MAX_ENTRIES:
                self._failed.popitem(last=False)
            raise
        self._cache[uri] = entry
        while len(self._cache) > MAX_ENTRIES:
            self._cache.popitem(last=False)
        return entry

    async def _get(self, uri: str, now: int) -> _Entry:
        try:
            async with asyncio.timeout(self._timeout):
                async with self._http.stream("GET", uri) as response:
                    body = await _read(response)
                    headers = response.headers
        except (TimeoutError, httpx.TimeoutException):
            raise InvalidClient(
                "could not fetch the client's jwks_uri",
                detail=f"{uri}: no complete answer within {self._timeout} s (cimd.timeout)",
            ) from None
        except BlockedAddressError as exc:
            raise InvalidClient("could not fetch the client's jwks_uri", detail=str(exc)) from None
        except (httpx.HTTPError, ValueError) as exc:
            raise InvalidClient(
                "could not fetch the client's jwks_uri", detail=f"{uri}: {exc}"
            ) from None
        try:
            keys = jose.usable_keys(safe_json.loads(body))
        except ValueError:  # not JSON, or NotAJwkSet
            raise InvalidClient(
                "the client's JWK Set cannot be used", detail=f"{uri} is not a JWK Set"
            ) from None
        lifetime = cache_lifetime(headers, now, default=DEFAULT_TTL, maximum=MAX_TTL)
        return _Entry(keys, now + max(MIN_TTL, lifetime or 0))


async def _read(response: httpx.Response) -> bytes:
    """The body of a 200 answer, at most MAX_BYTES; ValueError otherwise."""
    if response.status_code != 200:
        raise ValueError(f"answered HTTP {response.status_code}; 200 is required")
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BYTES:
        raise ValueError(f"the key set is larger than {MAX_BYTES} bytes")
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > MAX_BYTES:
            raise ValueError(f"the key set is larger than {MAX_BYTES} bytes")
    return bytes(body)


__all__ = [
    "DEFAULT_TTL",
    "MAX_BYTES",
    "MAX_ENTRIES",
    "MAX_TTL",
    "MIN_TTL",
    "REFETCH_INTERVAL",
    "ClientJwks",
]
