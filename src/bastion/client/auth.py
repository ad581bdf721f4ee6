"""``BastionAuth``: MCP authorization as an ``httpx.Auth`` (httpx drives the generator: it sends
each request the flow yields and sends the response back in).

::

    async with BastionAuth(ClientSettings(client_metadata_url=...)) as auth:
        async with httpx.AsyncClient(auth=auth) as client:
            await client.post("https://mcp.example.com/mcp", json=...)

Per request: the stored token goes in the ``Authorization`` header only (MCP "Token
Requirements", checklist C13); a 401 runs discovery, registration and authorization (or the
client credentials grant) and the request is retried once; a token about to expire is refreshed
first; a 403 ``insufficient_scope`` triggers step-up authorization (C15, at most
``max_authorizations`` per request). The flow holds no lock while the request is in flight, so a
long-lived stream never blocks other requests (unlike a lock held around the whole flow).

A DPoP-bound token (RFC 9449) goes as ``Authorization: DPoP <token>`` with a fresh proof in the
``DPoP`` header on every request, each retry included (§7.1); a ``DPoP-Nonce`` the server sends
is used from then on, and a 401 ``DPoP error="use_dpop_nonce"`` is answered once, with a new
proof carrying it (§9). A second such 401 is the caller's answer.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, MutableMapping, Sequence
from typing import Protocol, TypeVar

import httpx

from bastion.client.authorizer import Attempt, Authorizer
from bastion.client.browser import OpenUrl
from bastion.client.dpop import asks_for_nonce
from bastion.client.settings import ClientSettings
from bastion.client.storage import TokenStorage


class _Headers(Protocol):
    def get_list(self, key: str, split_commas: bool = False) -> list[str]: ...


class _Request(Protocol):
    @property
    def url(self) -> object: ...
    @property
    def method(self) -> str: ...
    @property
    def headers(self) -> MutableMapping[str, str]: ...
    async def aread(self) -> bytes: ...


class _Response(Protocol):
    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> _Headers: ...


RequestT = TypeVar("RequestT", bound=_Request)


async def authorized_flow(
    authorizer: Authorizer, request: RequestT, resource: str | None = None
) -> AsyncGenerator[RequestT, _Response]:
    """The auth flow shared by the httpx and httpx2 adapters: yield the request with its header;
    on a 401/403 ask the authorizer and yield it again with the new header (bounded).

    Tokens are kept per ``resource`` when given (a registry: every API path below the registry
    URL is one protected resource), else per request URL (an MCP endpoint). The body is read
    first, as it may be sent again."""
    await request.aread()
    url = resource or str(request.url)
    target = str(request.url)
    header = await authorizer.authorization(url)
    await _present(authorizer, request, header)
    response = yield request
    authorizer.nonces.remember("resource", target, _nonce(response))
    attempt = Attempt()
    for _ in range(authorizer.settings.max_authorizations + 3):
        challenges: Sequence[str] = response.headers.get_list("www-authenticate")
        if response.status_code == 401 and "DPoP" in request.headers and asks_for_nonce(challenges):
            if attempt.dpop_nonce_retried or not _nonce(response):
                return  # RFC 9449 §9: one retry with the server's nonce, not a loop
            attempt.dpop_nonce_retried = True
            await _present(authorizer, request, header)  # a new proof, with the nonce
            response = yield request
            authorizer.nonces.remember("resource", target, _nonce(response))
            continue
        new = await authorizer.reconsider(url, response.status_code, challenges, header, attempt)
        if new is None:
            return
        header = new
        await _present(authorizer, request, header)
        response = yield request
        authorizer.nonces.remember("resource", target, _nonce(response))


def _nonce(response: _Response) -> str | None:
    """The ``DPoP-Nonce`` a server sent (RFC 9449 §8, §9), if any."""
    values = response.headers.get_list("dpop-nonce")
    return values[0] if values else None


async def _present(authorizer: Authorizer, request: _Request, header: str | None) -> None:
    """Put ``header`` in ``Authorization`` and, for a DPoP-bound token, a fresh proof in
    ``DPoP`` (RFC 9449 §7.1); never a stale proof from an earlier attempt."""
    request.headers.pop("DPoP", None)
    if header is None:
        return
    request.headers["Authorization"] = header
    proof = await authorizer.dpop_proof(header, request.method, str(request.url))
    if proof is not None:
        request.headers["DPoP"] = proof


class BastionAuth(httpx.Auth):
    """MCP authorization for an ``httpx.AsyncClient`` (see the module docstring).

    Give it settings (and optionally a token store and a URL opener), or an existing
    :class:`Authorizer` to share tokens and logins between clients. ``resource`` fixes the
    protected resource for every request (e.g. a registry URL whose API paths lie below it);
    by default each request's own URL is the resource (an MCP endpoint).
    """

    requires_request_body = True  # the body is sent again after a 401 or 403

    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        storage: TokenStorage | None = None,
        open_url: OpenUrl | None = None,
        authorizer: Authorizer | None = None,
        resource: str | None = None,
    ) -> None:
        self.authorizer = authorizer or Authorizer(settings, storage=storage, open_url=open_url)
        self.resource = resource

    def __repr__(self) -> str:
        return f"BastionAuth(storage={self.authorizer.storage!r})"

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("BastionAuth does network I/O: use it with httpx.AsyncClient")

    def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        return authorized_flow(self.authorizer, request, self.resource)

    async def aclose(self) -> None:
        """Close the authorizer (its HTTP client, logins still waiting)."""
        await self.authorizer.aclose()

    async def __aenter__(self) -> BastionAuth:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


__all__ = ["BastionAuth", "authorized_flow"]
