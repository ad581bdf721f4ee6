"""The SSRF guard (draft-ietf-oauth-client-id-metadata-document-00 §6.5, checklist A03, C19).

Blocked destinations are pointed at a real listener on 127.0.0.1 that counts connections, so
each test proves the guard refused before connecting. No traffic leaves loopback: other blocked
addresses are refused before any socket is opened.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bastion.net.ssrf import (
    BlockedAddressError,
    _GuardedTransport,
    guarded_transport,
    is_public_address,
)

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class CountingServer:
    """A loopback TCP listener that answers any request with 200 "ok" and counts connections."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ANSWER)
        await writer.drain()
        writer.close()


@pytest.fixture
async def listener() -> AsyncIterator[CountingServer]:
    server = CountingServer()
    tcp = await asyncio.start_server(server._handle, "127.0.0.1", 0)
    server.port = tcp.sockets[0].getsockname()[1]
    async with tcp:
        yield server


def guarded_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=guarded_transport(allow_private=False, timeout=1.0))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "198.18.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "fec0::1",
        "ff02::1",
        "2001:db8::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::1",
        "2002:a00:1::1",
        "2002:7f00:1::1",
    ],
)
def test_a03_special_use_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_global_unicast_addresses_are_public(address: str) -> None:
    assert is_public_address(address)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/",
        "https://127.0.0.1:{port}/",
        "http://localhost:{port}/",
        "https://localhost:{port}/client.json",
        "http://[::ffff:127.0.0.1]:{port}/",
        "http://2130706433:{port}/",  # 127.0.0.1 as a decimal integer
    ],
)
async def test_a03_loopback_refused_before_connecting(listener: CountingServer, url: str) -> None:
    async with guarded_client() as client:
        with pytest.raises(BlockedAddressError) as caught:
            await client.get(url.format(port=listener.port))
    assert listener.connections == 0
    assert "127.0.0.1" in str(caught.value)
    assert "cimd.allow_private_addresses" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://10.1.2.3/", "10.1.2.3"),
        ("https://[::1]/", "::1"),
        ("https://[fd00::1]:8443/", "fd00::1"),
        ("http://[64:ff9b::a9fe:a9fe]/", "64:ff9b::a9fe:a9fe"),
    ],
)
async def test_a03_private_and_metadata_addresses_refused(url: str, address: str) -> None:
    async with guarded_client() as client:
        with pytest.raises(BlockedAddressError) as caught:
            await client.get(url)
    error = caught.value
    assert str(error.address) == address
    assert error.request.url == httpx.URL(url)
    assert f"it resolves to {address}" in str(error)


async def test_blocked_error_is_a_connect_error() -> None:
    async with guarded_client() as client:
        with pytest.raises(httpx.ConnectError, match="SSRF protection"):
            await client.get("http://127.0.0.1:9/")


def loopback_permitting_client() -> httpx.AsyncClient:
    """The guarded transport with loopback admitted, to drive its real request path locally."""
    return httpx.AsyncClient(transport=_GuardedTransport(1.0, lambda ip: ip.is_loopback))


async def test_guarded_transport_connects_to_the_vetted_address(listener: CountingServer) -> None:
    async with loopback_permitting_client() as client:
        first = await client.get(f"http://localhost:{listener.port}/a")
        second = await client.get(f"http://localhost:{listener.port}/b")
    assert (first.status_code, first.text, second.text) == (200, "ok", "ok")
    assert first.headers["content-type"] == "text/plain"
    assert listener.connections == 2


async def test_guarded_transport_maps_transport_errors() -> None:
    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
        await writer.drain()
        writer.close()

    tcp = await asyncio.start_server(truncated, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    async with tcp, loopback_permitting_client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"http://127.0.0.1:{port}/")
    async with loopback_permitting_client() as client:
        with pytest.raises(httpx.ConnectError):  # the listener is gone: connection refused
            await client.get(f"http://127.0.0.1:{port}/")


async def test_allow_private_gives_a_plain_transport(listener: CountingServer) -> None:
    transport = guarded_transport(allow_private=True, timeout=1.0)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(f"http://127.0.0.1:{listener.port}/")
    assert response.text == "ok"
    assert listener.connections == 1


def self_signed_for_localhost(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server TLS context with a certificate for DNS name localhost only; a client trusting it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return server, ssl.create_default_context(cafile=str(cert_file))


async def test_tls_verifies_the_url_hostname_not_the_vetted_ip(tmp_path: Path) -> None:
    server_tls, client_tls = self_signed_for_localhost(tmp_path)
    counter = CountingServer()
    tcp = await asyncio.start_server(counter._handle, "127.0.0.1", 0, ssl=server_tls)
    port = tcp.sockets[0].getsockname()[1]
    transport = _GuardedTransport(1.0, lambda ip: ip.is_loopback, ssl_context=client_tls)
    async with tcp, httpx.AsyncClient(transport=transport) as client:
        # The socket goes to 127.0.0.1, yet the certificate for "localhost" verifies.
        response = await client.get(f"https://localhost:{port}/")
        assert response.text == "ok"
        # The same certificate does not cover the IP literal: verification is real.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(f"https://127.0.0.1:{port}/")
