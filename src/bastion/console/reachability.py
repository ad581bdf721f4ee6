"""Whether the servers this one depends on answer: the gateway's HTTP upstreams and the
identity providers' discovery (or token) endpoints, for the overview's warnings.

Every check runs at once with one short timeout (:data:`TIMEOUT`); the page waits no longer
than that, whatever the checks do. Any HTTP answer counts as reachable (an MCP endpoint answers
a bare GET with 401, 405 or 406); no answer, a refused connection or a failed TLS handshake
does not. Results are kept :data:`KEEP` seconds per process, so reloading the overview does not
knock on every upstream again. What is shown names the upstream and its host, never an error's
text (which could carry a URL with credentials).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from bastion.config import Settings
from bastion.identity.providers import resolve

TIMEOUT = 2.0
KEEP = 60.0


@dataclass(frozen=True)
class Target:
    """A server to check: what it is (``gateway upstream``, ``identity provider``), its name,
    the URL asked."""

    kind: str
    name: str
    url: str

    @property
    def host(self) -> str:
        """Where it is, without credentials, path or query."""
        parts = urlsplit(self.url)
        return f"{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}"


@dataclass(frozen=True)
class Reach:
    """The result of one check: reachable, or why not (a fixed phrase)."""

    target: Target
    reachable: bool
    reason: str | None = None


_cache: dict[str, tuple[float, bool, str | None]] = {}


def targets_of(settings: Settings) -> list[Target]:
    """The gateway's HTTP upstreams and the identity providers of ``settings``."""
    found = [Target("gateway upstream", u.name, u.url) for u in settings.gateway.upstreams if u.url]
    for provider in settings.upstreams:
        spec = resolve(provider)
        url = spec.discovery_url or spec.token_endpoint or spec.authorization_endpoint
        if url and "{" not in url:
            found.append(Target("identity provider", provider.name, url))
    return found


def _reason(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {TIMEOUT:g} s"
    if isinstance(exc, httpx.ConnectError):
        return "the connection failed"
    return "the request failed"


async def _check(http: httpx.AsyncClient, target: Target) -> tuple[bool, str | None]:
    try:
        request = http.build_request("GET", target.url)
        response = await http.send(request, stream=True)  # headers only: never read a stream
        await response.aclose()
    except Exception as exc:  # any failure of any kind means: not reachable
        return False, _reason(exc)
    return True, None


async def check(targets: list[Target], *, within: float = TIMEOUT) -> list[Reach]:
    """Check every target at once (results known from the last :data:`KEEP` seconds are
    reused); returns within ``within`` seconds."""
    now = time.monotonic()
    known = {t.url: _cache[t.url] for t in targets if t.url in _cache}
    fresh = {url: v for url, v in known.items() if now - v[0] < KEEP}
    wanted = list({t.url for t in targets if t.url not in fresh})
    if wanted:
        async with httpx.AsyncClient(
            timeout=within, follow_redirects=False, trust_env=False
        ) as http:
            tasks = {url: asyncio.create_task(_check(http, _of(targets, url))) for url in wanted}
            _, late = await asyncio.wait(tasks.values(), timeout=within)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            for url, task in tasks.items():
                reachable: bool = False
                reason: str | None = f"no answer within {within:g} s"
                if task not in late:
                    reachable, reason = task.result()
                fresh[url] = _cache[url] = (now, reachable, reason)
    return [Reach(t, fresh[t.url][1], fresh[t.url][2]) for t in targets]


def _of(targets: list[Target], url: str) -> Target:
    return next(t for t in targets if t.url == url)


__all__ = ["KEEP", "TIMEOUT", "Reach", "Target", "check", "targets_of"]
