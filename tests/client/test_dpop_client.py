"""The client's DPoP (RFC 9449) against real servers on 127.0.0.1 whose proofs are checked by
bastion's verifier: refusals first (a second ``use_dpop_nonce`` is the caller's answer, never a
loop), then the proofs (a fresh ``jti`` on every request and retry, ``ath``, ``htu`` without
query), the ``DPoP`` scheme only, the key in the 0600 token file reused by the next run and by
the refresh, and when ``dpop = "auto"`` does not use it."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.client import Authorizer, flow
from bastion.client.auth import BastionAuth
from bastion.client.dpop import DPoPKey
from bastion.client.errors import TokenEndpointError
from bastion.client.settings import ClientSettings, PreRegisteredClient
from bastion.client.storage import FileStorage, MemoryStorage, TokenStorage
from bastion.oauth.dpop import access_token_hash
from bastion.oauth.jose import read_header
from tests.client.dpop_servers import DPoPResource, TokenServer, claims_of
from tests.support.live import serve

LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
BASTION = str(Path(sys.executable).with_name("bastion"))


@asynccontextmanager
async def stack(
    server: TokenServer | None = None, **resource: Any
) -> AsyncIterator[tuple[TokenServer, DPoPResource]]:
    """The authorization server and the MCP endpoint, both listening."""
    server = server or TokenServer()
    rs = DPoPResource(server, **resource)
    async with AsyncExitStack() as running:
        server.base = await running.enter_async_context(serve(server.app()))
        rs.base = await running.enter_async_context(serve(rs.app()))
        yield server, rs


def machine(server: TokenServer, **settings: Any) -> ClientSettings:
    """A client_credentials client of ``server`` (no browser)."""
    pre = PreRegisteredClient(
        issuer=server.issuer,
        client_id="agent",
        client_secret="s3cret",  # type: ignore[arg-type]
        grant_type="client_credentials",
    )
    return ClientSettings(use_keyring=False, pre_registered=[pre], **settings)


async def post(
    settings: ClientSettings, url: str, storage: TokenStorage | None = None, times: int = 1
) -> list[httpx.Response]:
    async with (
        BastionAuth(settings, storage=storage or MemoryStorage()) as auth,
        httpx.AsyncClient(auth=auth, timeout=10) as http,
    ):
        return [await http.post(url, json=LIST) for _ in range(times)]


# -- refusals -----------------------------------------------------------------------------------


async def test_rfc9449_8_a_second_use_dpop_nonce_at_the_token_endpoint_is_surfaced() -> None:
    """§8: one retry with the server's nonce and a new proof; a second use_dpop_nonce is the
    error, with the server's code: no third request."""
    async with (
        stack(TokenServer(nonce_always_stale=True)) as (server, rs),
        Authorizer(machine(server), storage=MemoryStorage()) as auth,
    ):
        with pytest.raises(TokenEndpointError) as caught:
            await auth.login(rs.url)
    assert caught.value.error == "use_dpop_nonce"
    assert [s.status for s in server.seen] == [400, 400]
    first, second = (s.claims for s in server.seen)
    assert "nonce" not in first
    assert second["nonce"] == "n-stale"
    assert first["jti"] != second["jti"]


async def test_rfc9449_9_a_second_use_dpop_nonce_at_the_resource_is_surfaced() -> None:
    """§9: one retry with the resource's nonce; the second 401 use_dpop_nonce reaches the
    caller, and no new authorization is started for it."""
    async with stack(nonce_always_stale=True) as (server, rs):
        (response,) = await post(machine(server), rs.url)
    assert response.status_code == 401
    assert 'error="use_dpop_nonce"' in response.headers["www-authenticate"]
    assert len(server.seen) == 1
    assert [s.status for s in rs.authenticated] == [401, 401]
    first, second = (s.claims for s in rs.authenticated)
    assert second["nonce"] == "r-stale" and first["jti"] != second["jti"]


def test_rfc9449_5_a_dpop_token_without_a_proof_is_refused_by_the_client() -> None:
    """§5: a DPoP token answered to a request that sent no proof is bound to no key of ours:
    unusable, and said so."""
    response = httpx.Response(200, json={"access_token": "x", "token_type": "DPoP"})
    with pytest.raises(TokenEndpointError, match="sent no DPoP proof"):
        flow.parse_token_response(response, "https://as.example/token")


# -- who may: the proofs ------------------------------------------------------------------------


async def test_rfc9449_8_one_retry_with_the_authorization_servers_nonce() -> None:
    """§8: the token request is sent again once, with a new jti and the nonce; the token is
    stored with its type DPoP and the key it is bound to."""
    async with stack(TokenServer(nonce="as-nonce-1")) as (server, rs):
        storage = MemoryStorage()
        async with Authorizer(machine(server), storage=storage) as auth:
            tokens = await auth.login(rs.url)
    assert [s.status for s in server.seen] == [400, 200]
    first, second = (s.claims for s in server.seen)
    assert "nonce" not in first and second["nonce"] == "as-nonce-1"
    assert first["jti"] != second["jti"]
    assert second["htm"] == "POST" and second["htu"] == server.token_endpoint
    assert tokens.token_type == "DPoP"
    assert tokens.dpop_jkt == server.bound[tokens.access_token]
    assert tokens.authorization == f"DPoP {tokens.access_token}"


async def test_rfc9449_9_one_retry_with_the_resources_nonce_then_the_nonce_is_kept() -> None:
    """§9: the request is sent again once with the nonce; the next request carries it at
    once. Every proof has its own jti."""
    async with stack(nonce="rs-nonce-1") as (server, rs):
        responses = await post(machine(server), rs.url, times=2)
    assert [r.status_code for r in responses] == [200, 200]
    assert [s.status for s in rs.authenticated] == [401, 200, 200]
    nonces = [s.claims.get("nonce") for s in rs.authenticated]
    assert nonces == [None, "rs-nonce-1", "rs-nonce-1"]
    jtis = [s.claims["jti"] for s in rs.authenticated]
    assert len(set(jtis)) == 3


async def test_rfc9449_7_1_ath_htu_without_query_and_never_bearer() -> None:
    """§7.1: ``Authorization: DPoP`` with a proof whose ath is the token's hash and whose htu is
    the URI without its query (§4.2); the bound token is never sent as Bearer (§7.2)."""
    async with stack() as (server, rs):
        responses = await post(machine(server), f"{rs.url}?session=1&x=2", times=3)
    assert [r.status_code for r in responses] == [200, 200, 200]
    authenticated = rs.authenticated
    assert len(authenticated) == 3
    for seen in authenticated:
        scheme, _, token = (seen.authorization or "").partition(" ")
        assert scheme == "DPoP"
        assert len(seen.proofs) == 1
        claims = seen.claims
        assert claims["ath"] == access_token_hash(token)
        assert claims["htu"] == rs.url
        assert claims["htm"] == "POST"
    assert len({s.claims["jti"] for s in authenticated}) == 3
    assert not any((s.authorization or "").startswith("Bearer") for s in rs.seen)


async def test_rfc9449_5_the_key_file_is_0600_reused_by_the_next_run_and_the_refresh(
    tmp_path: Path,
) -> None:
    """The key is kept in the 0600 token file; a second run (a new process: new authorizer,
    same file) proves the same key, and refreshes the bound grant with it (§5: the AS checks
    the refresh proof's key against the binding)."""
    path = tmp_path / "client" / "tokens.json"
    async with stack(TokenServer(expires_in=0)) as (server, rs):
        settings = machine(server, expiry_skew=0)
        async with Authorizer(settings, storage=FileStorage(path)) as first:
            tokens = await first.login(rs.url)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert "dpop_keys" in path.read_text()
        async with Authorizer(settings, storage=FileStorage(path)) as second:
            header = await second.authorization(rs.url)
        assert server.seen[-1].form["grant_type"] == "refresh_token"
        assert server.seen[-1].status == 200
        assert header is not None and header.startswith("DPoP ")
        refreshed = header.split(" ", 1)[1]
        assert server.bound[refreshed] == tokens.dpop_jkt
        async with Authorizer(settings, storage=FileStorage(path)) as third:
            again = await third.login(rs.url)
        assert again.dpop_jkt == tokens.dpop_jkt


# -- when DPoP is not used ----------------------------------------------------------------------


async def test_dpop_auto_needs_a_resource_that_takes_dpop_tokens() -> None:
    """``auto``: the AS offers DPoP but the resource offers Bearer only (no DPoP challenge, no
    DPoP in its metadata): no proof, a Bearer token, the resource works."""
    async with stack(dpop=False) as (server, rs):
        (response,) = await post(machine(server), rs.url)
    assert response.status_code == 200
    assert not server.seen[0].proofs
    assert (rs.authenticated[0].authorization or "").startswith("Bearer ")


@pytest.mark.parametrize(("mode", "proofs"), [("never", False), ("always", True)])
async def test_dpop_never_and_always(mode: str, proofs: bool) -> None:
    """``never``: no proof even where both sides offer DPoP; ``always``: a proof even where
    the AS does not advertise it."""
    server = TokenServer(advertise_dpop=mode == "never")
    async with stack(server, dpop=True) as (server, rs):
        (response,) = await post(machine(server, dpop=mode), rs.url)
    assert response.status_code == 200
    assert bool(server.seen[0].proofs) is proofs
    scheme = (rs.authenticated[0].authorization or "").split(" ")[0]
    assert scheme == ("DPoP" if proofs else "Bearer")


def test_rfc9449_4_2_a_proof_of_the_key_module() -> None:
    """The proof itself: typ dpop+jwt, ES256, public jwk only, htu without query or fragment."""
    key = DPoPKey.generate()
    proof = key.proof("get", "https://mcp.example.com/a/b?q=1#frag", access_token="tok", nonce="n")
    header = read_header(proof)
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256"
    assert set(header["jwk"]) == {"kty", "crv", "x", "y"}
    claims = claims_of(proof)
    assert claims["htm"] == "GET" and claims["htu"] == "https://mcp.example.com/a/b"
    assert claims["ath"] == access_token_hash("tok") and claims["nonce"] == "n"
    assert DPoPKey.from_jwk(key.to_jwk()).jkt == key.jkt


async def bastion(*args: str) -> tuple[int, str, str]:
    """The real ``bastion`` executable in a new process (bounded)."""
    proc = await asyncio.create_subprocess_exec(
        BASTION,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_rfc9449_two_cli_runs_share_the_stored_key(tmp_path: Path) -> None:
    """``bastion login`` twice, two processes, a workload client of client.toml: both grants
    carry a proof of one key, kept in the 0600 token file; ``whoami`` shows the binding."""
    token_file = tmp_path / "workload.jwt"
    token_file.write_text("workload-token")
    config = tmp_path / "client.toml"
    async with stack(TokenServer(refresh_tokens=False)) as (server, rs):
        config.write_text(
            "use_keyring = false\n"
            f'storage_path = "{tmp_path / "state" / "tokens.json"}"\n'
            "[[pre_registered]]\n"
            f'issuer = "{server.issuer}"\n'
            'client_id = "reports-job"\n'
            'grant_type = "jwt-bearer"\n'
            f'assertion_file = "{token_file}"\n'
        )
        for _ in range(2):
            code, _, err = await bastion("login", rs.url, "--client-config", str(config))
            assert code == 0, err
        code, out, err = await bastion("whoami", rs.url, "--json", "--client-config", str(config))
    assert code == 0, err
    assert [s.form["assertion"] for s in server.seen] == ["workload-token"] * 2
    keys = {server.bound[f"at-{n}"] for n in (1, 2)}
    assert len(keys) == 1
    shown = json.loads(out)
    assert shown["token_type"] == "DPoP" and shown["dpop_jkt"] in keys
    stored = tmp_path / "state" / "tokens.json"
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600


async def test_rfc9449_5_without_its_key_a_bound_refresh_token_is_not_sent(
    tmp_path: Path,
) -> None:
    """The key a grant is bound to was deleted from the store: its refresh token cannot be
    used (it would be refused), so it is not sent; a new grant with a new key follows."""
    path = tmp_path / "tokens.json"
    async with stack(TokenServer(expires_in=0)) as (server, rs):
        settings = machine(server, expiry_skew=0)
        async with Authorizer(settings, storage=FileStorage(path)) as first:
            before = await first.login(rs.url)
        document = json.loads(path.read_text())
        del document["dpop_keys"]
        path.write_text(json.dumps(document))
        (response,) = await post(settings, rs.url, storage=FileStorage(path))
    assert response.status_code == 200
    grants = [s.form["grant_type"] for s in server.seen]
    assert grants == ["client_credentials", "client_credentials"]
    assert server.bound["at-2"] != before.dpop_jkt
