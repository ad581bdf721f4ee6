"""An SSRF guard for outbound fetches whose URL comes from untrusted input.

draft-ietf-oauth-client-id-metadata-document-00 §6.5: an authorization server fetching URLs it
was handed should not reach loopback, private or other special-use addresses (RFC 6890). The guard
sits at the socket level: it resolves the host itself, refuses the connection when any address is
not globally routable, then connects to the vetted address, so a DNS answer that changes between
the check and the connection (rebinding) cannot slip through. TLS still verifies the original
hostname, which httpcore takes from the request URL, not from the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import cast

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: local use, never global


def is_public_address(ip: str | IPAddress) -> bool:
    """Whether ``ip`` is a globally routable unicast address (RFC 6890 special-use excluded).

    IPv4-mapped, NAT64 and 6to4 IPv6 addresses are judged by the IPv4 address they carry.
    """
    address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public_address(address.ipv4_mapped)
        if address in _NAT64:
            return is_public_address(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None:
            return is_public_address(address.sixtofour)
        if address in _LOCAL_NAT64 or address.is_site_local:
            return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


class BlockedAddressError(httpx.ConnectError):
    """The host resolves to an address that is not publicly routable; nothing was sent to it."""

    def __init__(self, host: str, address: IPAddress) -> None:
        super().__init__(
            f"refused to connect to {host}: it resolves to {address}, which is not a public "
            "internet address (SSRF protection). For local development only, set "
            "cimd.allow_private_addresses = true to allow it."
        )
        self.host = host
        self.address = address


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, vets every address, then connects to a vetted IP literal."""

    def __init__(self, timeout: float, allow: Callable[[IPAddress], bool]) -> None:
        self._timeout = timeout
        self._allow = allow
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        limit = self._timeout if timeout is None else min(timeout, self._timeout)
        try:
            async with asyncio.timeout(limit):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took over {limit}s") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        for address in addresses:
            if not self._allow(address):
                raise BlockedAddressError(host, address)
        error: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                return await self._backend.connect_tcp(
                    str(address), port, limit, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


# httpcore and httpx name their transport errors alike; most specific first.
_ERRORS: list[tuple[type[Exception], type[httpx.TransportError]]] = [
    (getattr(httpcore, name), getattr(httpx, name))
    for name in (
        "ConnectTimeout",
        "ReadTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "ConnectError",
        "ReadError",
        "WriteError",
        "RemoteProtocolError",
        "LocalProtocolError",
        "UnsupportedProtocol",
        "TimeoutException",
        "NetworkError",
        "ProtocolError",
    )
]


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for theirs, ours in _ERRORS:
            if isinstance(exc, theirs):
                raise ours(str(exc)) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            await self._stream.aclose()


class _GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore pool that uses the guarded network backend."""

    def __init__(
        self,
        timeout: float,
        allow: Callable[[IPAddress], bool],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            max_connections=20,
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(timeout, allow),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = await self._pool.handle_async_request(core)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(cast(AsyncIterable[bytes], response.stream)),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def guarded_transport(*, allow_private: bool, timeout: float) -> httpx.AsyncBaseTransport:
    """A transport that refuses non-public addresses (draft §6.5), or a plain one if allowed.

    ``timeout`` bounds DNS resolution and each connection attempt, in seconds.
    """
    if allow_private:
        return httpx.AsyncHTTPTransport(trust_env=False)
    return _GuardedTransport(timeout, is_public_address)


__all__ = ["BlockedAddressError", "guarded_transport", "is_public_address"]
