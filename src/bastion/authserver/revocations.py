"""The revocation document, ``GET <issuer>/revocations``: the grants and access tokens revoked
while some token they cover is alive, for resource servers that verify JWTs locally and cannot
read bastion's database (:class:`bastion.resource.HttpRevocationFeed`).

- 200 ``application/json``: ``{"grants": {"<grant_id>": <exp>}, "tokens": {"<jti>": <exp>}}``
  with a strong ``ETag`` (RFC 9110 §8.8.3) that is a digest of the content, so every process
  of a deployment tags the same list alike.
- ``If-None-Match`` naming the current tag: 304 (RFC 9110 §13.1.2). With ``?wait=N`` as well
  (seconds, at most ``revocations.max_wait``) the request is held until the list changes (200
  with the new list) or the time is up (304): a long poll, so a revocation reaches a waiting
  resource server within a round trip, and an idle one costs a request every ``max_wait``.
- More than ``revocations.max_waiters`` held requests: 503 with ``Retry-After``.

It needs no authentication, like the JWKS: the document holds random identifiers (refresh family
ids, machine grant ids, jtis) and expiry times, no subject, client or scope, and knowing a
revoked id gives no power over anything. What it does reveal is how many revocations are live.
Every answer is served from memory (one JSON encoding per change of the list), and a held
request is an idle coroutine, bounded by ``max_waiters``. It is not advertised in the RFC 8414
metadata (no registered field names it); resource servers are configured with its URL.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion.authserver.context import server
from bastion.resource.revocation import RevocationList

RETRY_AFTER = "5"


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2: weak comparison against a list of tags, or ``*``."""
    if not if_none_match:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _hold(request: Request, revoked: RevocationList, seconds: int) -> None:
    """Until the list changes, ``seconds`` pass, or the client leaves."""
    changed = asyncio.ensure_future(revoked.wait_changed(revoked.version, seconds))
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({changed, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (changed, gone):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def revocation_list(request: Request) -> Response:
    """GET /revocations[?wait=N]."""
    bastion = server(request)
    config = bastion.settings.revocations
    revoked = bastion.revocations
    raw_wait = request.query_params.get("wait", "0")
    if not raw_wait.isdigit():
        return JSONResponse(
            {
                "error": "invalid_request",
                "error_description": f"wait is a number of seconds (at most {config.max_wait})",
            },
            400,
        )
    wait = min(int(raw_wait), config.max_wait)
    asked = request.headers.get("if-none-match")
    etag, body = revoked.document()
    if wait and _matches(asked, etag):
        if revoked.waiters >= config.max_waiters:
            return JSONResponse(
                {
                    "error": "temporarily_unavailable",
                    "error_description": "too many clients are waiting for revocations; retry",
                },
                503,
                headers={"Retry-After": RETRY_AFTER},
            )
        await _hold(request, revoked, wait)
        etag, body = revoked.document()
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if _matches(asked, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


__all__ = ["revocation_list"]
