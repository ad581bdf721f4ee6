"""A token request cut off on the way (a replica behind the load balancer died holding it,
docs/replicas.md): HAProxy answers 502 when it was the first request on the client's
connection and closes the connection without an answer otherwise. A proxy must not repeat a
non-idempotent request (RFC 9110 §9.2.2); the client decides. It repeats a client credentials
request (it redeems nothing) once, and never a code or refresh token redemption (a second
redemption of a code the server had redeemed is a replay, OAuth 2.1 §4.1.3).

The token endpoint is a raw HTTP/1.1 server on 127.0.0.1 that plays one scripted answer per
request: ``"502"`` (HAProxy's own error page), ``"cut"`` (the connection closed without an
answer), ``"ok"`` (a token)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from bastion.client import flow
from bastion.client.errors import TokenEndpointError
from bastion.client.flow import AuthorizationRequest
from bastion.client.models import AuthorizationServerMetadata, RegisteredClient

ISSUER = "http://127.0.0.1"
TOKEN = {"access_token": "at", "token_type": "Bearer", "expires_in": 300}
HAPROXY_502 = (
    b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 107\r\ncache-control: no-cache\r\n"
    b"content-type: text/html\r\nconnection: close\r\n\r\n"
    b"<html><body><h1>502 Bad Gateway</h1>\n"
    b"The server returned an invalid or incomplete response.\n</body></html>\n"
)
CLIENT = RegisteredClient(
    issuer=ISSUER,
    client_id="machine",
    source="preregistered",
    token_endpoint_auth_method="client_secret_post",
    client_secret="s",
    grant_type="client_credentials",
)


@dataclass
class Script:
    """The answers still to play, and the form of every request received."""

    answers: list[str]
    forms: list[str] = field(default_factory=list)


def _answer(kind: str, status: int = 200) -> bytes:
    if kind == "502":
        return HAPROXY_502
    body = json.dumps(TOKEN if kind == "ok" else {"error": "temporarily_unavailable"}).encode()
    head = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
    return f"{head}content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body


@asynccontextmanager
async def token_endpoint(*answers: str) -> AsyncIterator[tuple[str, Script]]:
    """Serve ``answers`` in turn, one per request (one request per connection); yield the
    endpoint's URL and the script."""
    script = Script(list(answers))

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        script.forms.append((await reader.readexactly(length)).decode())
        kind = script.answers.pop(0)
        if kind == "json502":
            writer.write(_answer(kind, 502))
        elif kind != "cut":
            writer.write(_answer(kind))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/token", script


def _metadata(token_endpoint: str) -> AuthorizationServerMetadata:
    return AuthorizationServerMetadata(
        issuer=ISSUER,
        token_endpoint=token_endpoint,
        authorization_endpoint=f"{ISSUER}/authorize",
        registration_endpoint=None,
        scopes_supported=None,
        code_challenge_methods_supported=("S256",),
        token_endpoint_auth_methods_supported=None,
        grant_types_supported=None,
        iss_parameter_supported=True,
        client_id_metadata_document_supported=False,
        url=f"{ISSUER}/.well-known/oauth-authorization-server",
        raw={},
    )


def _authorization(resource: str) -> AuthorizationRequest:
    return AuthorizationRequest(
        url=f"{ISSUER}/authorize",
        state="state",
        verifier="v" * 43,
        redirect_uri="http://127.0.0.1:5555/callback",
        expected_issuer=ISSUER,
        iss_required=True,
        resource=resource,
        scopes=(),
        client_id=CLIENT.client_id,
    )


# -- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", ["502", "cut"])
async def test_rfc9110_s9_2_2_a_code_redemption_cut_off_is_not_sent_again(cut: str) -> None:
    """The authorization code grant, cut off: one request only, and the caller is told."""
    async with token_endpoint(cut, "ok") as (url, script), httpx.AsyncClient() as http:
        with pytest.raises(TokenEndpointError) as refused:
            await flow.exchange_code(
                http, _metadata(url), CLIENT, _authorization("https://mcp.example"), "code-1"
            )
    assert len(script.forms) == 1
    assert "grant_type=authorization_code" in script.forms[0]
    assert url in str(refused.value)


@pytest.mark.parametrize("cut", ["502", "cut"])
async def test_rfc9110_s9_2_2_a_refresh_cut_off_is_not_sent_again(cut: str) -> None:
    """The refresh token grant, cut off: one request only (the token may have been rotated)."""
    async with token_endpoint(cut, "ok") as (url, script), httpx.AsyncClient() as http:
        with pytest.raises(TokenEndpointError):
            await flow.refresh(http, ISSUER, url, CLIENT, "rt-1", "https://mcp.example")
    assert len(script.forms) == 1


async def test_the_token_endpoints_own_502_is_its_answer_not_a_cut() -> None:
    """A 502 in JSON comes from the token endpoint itself (RFC 6749 §5.2 form): no retry."""
    async with token_endpoint("json502", "ok") as (url, script), httpx.AsyncClient() as http:
        with pytest.raises(TokenEndpointError) as refused:
            await flow.client_credentials(http, _metadata(url), CLIENT, "https://mcp.example")
    assert len(script.forms) == 1
    assert refused.value.status == 502
    assert refused.value.error == "temporarily_unavailable"


async def test_client_credentials_cut_off_twice_gives_up() -> None:
    """One more attempt, not more: the second cut is the caller's error."""
    async with token_endpoint("502", "cut", "ok") as (url, script), httpx.AsyncClient() as http:
        with pytest.raises(TokenEndpointError):
            await flow.client_credentials(http, _metadata(url), CLIENT, "https://mcp.example")
    assert len(script.forms) == 2


# -- what is allowed -----------------------------------------------------------------------------


@pytest.mark.parametrize("cut", ["502", "cut"])
async def test_client_credentials_cut_off_once_is_sent_again(cut: str) -> None:
    """OAuth 2.1 §4.2: the grant redeems nothing, so the client asks again, authenticated again
    (a fresh client assertion for private_key_jwt), and gets its token."""
    async with token_endpoint(cut, "ok") as (url, script), httpx.AsyncClient() as http:
        token = await flow.client_credentials(http, _metadata(url), CLIENT, "https://mcp.example")
    assert token.access_token == "at"
    assert len(script.forms) == 2
    assert all("grant_type=client_credentials" in f for f in script.forms)
    assert all("client_secret=s" in f for f in script.forms)
