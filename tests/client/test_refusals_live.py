"""What the client must refuse, end to end over real HTTP, against an authorization server that
approves at once and misbehaves on purpose (the shape of the conformance suite's mock), and a
resource server for its tokens. Each test checks the refusal and that nothing was sent that the
refusal should have prevented (no authorization request, no token request).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from bastion.client import Authorizer, BastionAuth, ClientSettings, MemoryStorage
from bastion.client.browser import headless_opener
from bastion.client.discovery import BearerChallenge
from bastion.client.errors import (
    InsecureUrl,
    IssuerMismatch,
    IssuerResponseMismatch,
    PkceNotSupported,
    ProtectedResourceMetadataNotFound,
    ResourceMismatch,
    StateMismatch,
)
from tests.client.servers import RedirectingAS, StubResource
from tests.support.live import serve

LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
CALL = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "x"}}


@asynccontextmanager
async def mock_pair(
    path: str = "", resource: str | None = None, **as_fields: Any
) -> AsyncIterator[tuple[RedirectingAS, StubResource]]:
    """A RedirectingAS (issuer ``<base><path>``) and a StubResource trusting it."""
    auth_server = RedirectingAS(path=path, **as_fields)
    async with serve(auth_server.app()) as base:
        auth_server.base = base
        rs = StubResource(auth_server.issuer, resource=resource)
        async with serve(rs.app()) as rs_base:
            rs.base = rs_base
            yield auth_server, rs


def authorizer(**settings: Any) -> Authorizer:
    return Authorizer(
        ClientSettings(use_keyring=False, **settings),
        storage=MemoryStorage(),
        open_url=headless_opener(),
    )


async def test_the_immediate_redirect_flow_works_with_path_issuer() -> None:
    """Baseline: an issuer with a path (metadata path-inserted, RFC 8414 §3.1), DCR, PKCE,
    ``iss`` equal to the issuer; the retried request succeeds."""
    async with (
        mock_pair(path="/tenant1") as (auth_server, rs),
        BastionAuth(authorizer=authorizer()) as auth,
        httpx.AsyncClient(auth=auth) as http,
    ):
        assert (await http.post(rs.url, json=LIST)).status_code == 200
    assert auth_server.metadata_requests == ["/.well-known/oauth-authorization-server/tenant1"]
    [registration] = auth_server.registrations
    assert registration["application_type"] == "native"
    assert registration["grant_types"] == ["authorization_code", "refresh_token"]
    assert registration["token_endpoint_auth_method"] == "none"
    [token_request] = auth_server.token_requests
    assert token_request["resource"] == rs.url
    assert token_request["client_id"] == "client-1"
    assert auth_server.authorize_requests[0]["resource"] == rs.url


async def test_c05_metadata_naming_another_issuer_is_never_used() -> None:
    """The AS metadata says ``issuer`` https://attacker.example.com: refused (RFC 8414 §3.3);
    its endpoints are never called."""
    async with (
        mock_pair(path="/as", metadata={"issuer": "https://attacker.example.com"}) as (
            auth_server,
            rs,
        ),
        authorizer() as client,
    ):
        with pytest.raises(IssuerMismatch) as caught:
            await client.login(rs.url)
    assert caught.value.trace is not None
    assert auth_server.metadata_requests
    assert not auth_server.registrations
    assert not auth_server.authorize_requests
    assert not auth_server.token_requests


@pytest.mark.parametrize("methods", [None, ["plain"]])
async def test_c10_no_advertised_s256_means_no_authorization(methods: list[str] | None) -> None:
    """``code_challenge_methods_supported`` absent or without S256: the client refuses to
    proceed (MCP security considerations) before registering or authorizing."""
    async with (
        mock_pair(metadata={"code_challenge_methods_supported": methods}) as (
            auth_server,
            rs,
        ),
        authorizer() as client,
    ):
        with pytest.raises(PkceNotSupported, match="S256"):
            await client.login(rs.url)
    assert not auth_server.registrations
    assert not auth_server.authorize_requests


async def test_c01_resource_metadata_for_another_resource_is_refused() -> None:
    """The PRM names resource https://evil.example.com/mcp: refused (RFC 9728 §3.3), no
    authorization request is made."""
    async with (
        mock_pair(resource="https://evil.example.com/mcp") as (auth_server, rs),
        BastionAuth(authorizer=authorizer()) as auth,
        httpx.AsyncClient(auth=auth) as http,
    ):
        with pytest.raises(ResourceMismatch, match=r"evil\.example\.com"):
            await http.post(rs.url, json=LIST)
    assert not auth_server.metadata_requests
    assert not auth_server.authorize_requests


@pytest.mark.parametrize(
    ("iss_mode", "advertised"),
    [("wrong", True), ("wrong", None), ("normalized", True), ("omit", True)],
)
async def test_c11_authorization_response_with_a_wrong_or_missing_iss_is_discarded(
    iss_mode: str, advertised: bool | None
) -> None:
    """RFC 9207 §2.4 as MCP applies it: a present ``iss`` must equal the recorded issuer by
    simple string comparison (a trailing-slash variant is a mismatch), advertised or not; an
    absent one is refused when the server advertises it. The code never reaches a token
    endpoint."""
    async with (
        mock_pair(
            iss_mode=iss_mode,
            metadata={"authorization_response_iss_parameter_supported": advertised},
        ) as (auth_server, rs),
        authorizer() as client,
    ):
        with pytest.raises(IssuerResponseMismatch):
            await client.login(rs.url)
    assert len(auth_server.authorize_requests) == 1
    assert not auth_server.token_requests


async def test_c11_iss_absent_and_not_advertised_proceeds() -> None:
    """Neither advertised nor sent: the client proceeds (the table's last row)."""
    async with (
        mock_pair(
            iss_mode="omit", metadata={"authorization_response_iss_parameter_supported": None}
        ) as (_auth_server, rs),
        authorizer() as client,
    ):
        tokens = await client.login(rs.url)
    assert tokens.access_token == "tok-1"


async def test_c11_error_fields_are_not_acted_on_when_iss_mismatches() -> None:
    """An error response with a wrong ``iss`` is reported as the mismatch, not as the error it
    carries (MCP: on mismatch do not act on or display ``error``)."""
    async with (
        mock_pair(iss_mode="wrong", error="access_denied") as (_, rs),
        authorizer() as client,
    ):
        with pytest.raises(IssuerResponseMismatch) as caught:
            await client.login(rs.url)
    assert "access_denied" not in str(caught.value)
    assert "refused by the test" not in str(caught.value)


@pytest.mark.parametrize("state_mode", ["wrong", "omit"])
async def test_c17_a_response_without_the_right_state_is_discarded(state_mode: str) -> None:
    """``state`` missing or different: the response is discarded (MCP "Open Redirection")."""
    async with mock_pair(state_mode=state_mode) as (auth_server, rs), authorizer() as client:
        with pytest.raises(StateMismatch):
            await client.login(rs.url)
    assert not auth_server.token_requests


async def test_c15_step_up_gives_up_after_three_authorizations() -> None:
    """A server whose 403 can never be satisfied (its AS grants no scope) gets at most three
    authorizations for one request, the first for the 401 (MCP "Step-Up Authorization Flow":
    retry limits); the 403 then reaches the caller."""
    async with mock_pair(granted="") as (auth_server, rs):
        rs.forbid = {"tools/call": "mcp:admin"}
        async with (
            BastionAuth(authorizer=authorizer()) as auth,
            httpx.AsyncClient(auth=auth) as http,
        ):
            response = await http.post(rs.url, json=CALL)
    assert response.status_code == 403
    assert len(auth_server.authorize_requests) == 3
    assert [r.get("scope") for r in auth_server.authorize_requests] == [
        "mcp:basic",
        "mcp:basic mcp:admin",
        "mcp:basic mcp:admin",
    ]


async def test_c16_offline_access_is_added_only_when_the_as_lists_it() -> None:
    """``offline_access`` joins a scoped request when the AS lists it in scopes_supported, and
    not otherwise (MCP "Refresh Tokens")."""
    async with (
        mock_pair(metadata={"scopes_supported": ["mcp:basic", "offline_access"]}) as (
            auth_server,
            rs,
        ),
        authorizer() as client,
    ):
        await client.login(rs.url)
    assert auth_server.authorize_requests[0]["scope"] == "mcp:basic offline_access"
    async with (
        mock_pair(metadata={"scopes_supported": ["mcp:basic"]}) as (auth_server, rs),
        authorizer() as client,
    ):
        await client.login(rs.url)
    assert auth_server.authorize_requests[0]["scope"] == "mcp:basic"


async def test_c06_cimd_client_id_is_used_when_the_as_supports_it() -> None:
    """With client_id_metadata_document_supported and a configured document URL, that URL is
    the client_id and no DCR happens (MCP client registration priority)."""
    url = "https://client.example.com/bastion.json"
    async with (
        mock_pair(metadata={"client_id_metadata_document_supported": True}) as (
            auth_server,
            rs,
        ),
        authorizer(client_metadata_url=url) as client,
    ):
        await client.login(rs.url)
    assert not auth_server.registrations
    assert auth_server.authorize_requests[0]["client_id"] == url
    assert auth_server.token_requests[0]["client_id"] == url


async def test_c19_the_ssrf_guard_refuses_private_addresses() -> None:
    """A client running on a server (``ssrf_guard``): discovery never connects to loopback or
    private addresses, whatever the server's 401 points at (checklist C19)."""
    async with mock_pair() as (auth_server, rs), authorizer(ssrf_guard=True) as client:
        challenge = BearerChallenge(resource_metadata=rs.metadata_url)
        with pytest.raises(InsecureUrl):
            await client.discover(rs.url, challenge)  # http on loopback is refused outright
        https_challenge = BearerChallenge(resource_metadata="https://127.0.0.1:9/prm")
        with pytest.raises(ProtectedResourceMetadataNotFound) as caught:
            await client.discover("https://127.0.0.1:9/mcp", https_challenge)
    assert caught.value.trace is not None
    assert "not a public" in caught.value.trace.steps[-1].detail
    assert not auth_server.metadata_requests
