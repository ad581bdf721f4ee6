"""Whether the gateway's upstreams can be reached, for ``/readyz`` (a detail, not a condition).

An HTTP upstream is reachable when a TCP connection to its host and port opens; a stdio
upstream when its program can be found (its processes start per session, so there is nothing
running to ask). Which upstream failed, and its address, go to the log, never to the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Sequence
from urllib.parse import urlsplit

from bastion.config import UpstreamSettings
from bastion.logs import get_logger
from bastion.ops.health import Check, Outcome

log = get_logger("bastion.gateway")

CONNECT_TIMEOUT = 1.5


async def _reachable(upstream: UpstreamSettings) -> bool:
    if upstream.url is None:
        program = (upstream.command or [""])[0]
        return bool(program) and shutil.which(program) is not None
    parts = urlsplit(upstream.url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, port), CONNECT_TIMEOUT
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def upstreams_check(upstreams: Sequence[UpstreamSettings]) -> Check:
    """Reports how many upstreams cannot be reached. The gateway registers it with
    :meth:`~bastion.ops.health.Readiness.inform`, so it never makes the gateway not ready: the
    gateway's replicas share the same upstreams, so one broken upstream would take every
    replica out of the load balancer at once, and the upstreams that work with it; a request
    for the broken one gets its own 502 instead."""
    down: set[str] = set()

    async def check() -> Outcome:
        found = await asyncio.gather(*(_reachable(upstream) for upstream in upstreams))
        failed = {u.name for u, ok in zip(upstreams, found, strict=True) if not ok}
        for name in sorted(failed - down):
            log.warning("readiness: upstream %s cannot be reached", name)
        for name in sorted(down - failed):
            log.warning("readiness: upstream %s can be reached again", name)
        down.clear()
        down.update(failed)
        if not failed:
            return Outcome(True)
        return Outcome(False, f"{len(failed)} of {len(upstreams)} unreachable")

    return check


__all__ = ["CONNECT_TIMEOUT", "upstreams_check"]
