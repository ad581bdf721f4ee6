"""`bastion doctor URL` (bastion.doctor) against servers broken on purpose and against
bastion's own authorization server, gateway and registry, all on real loopback HTTP.

Each broken server is diagnosed by the failing check that names its fault, with a fix that says
what to change; a healthy chain has no failing check.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion.authserver.admin import list_clients
from bastion.authserver.app import create_app
from bastion.client import ClientSettings, PreRegisteredClient
from bastion.config import ResourceSettings, Settings
from bastion.doctor import Check, Diagnosis, Kind, diagnose
from bastion.doctor.endpoints import MADE_UP_CODE
from bastion.gateway import create_gateway_app
from bastion.serve import create_combined_app
from tests.client.conftest import Stack
from tests.client.servers import RedirectingAS, ResourceServer, StubResource
from tests.registry.harness import registry_settings
from tests.support.clients import machine_client
from tests.support.live import free_port, serve

SETTINGS = ClientSettings(use_keyring=False)
VSCODE = "mcp oauth: disabled"


@asynccontextmanager
async def broken(
    *, issuer: str | None = None, token_error: str | None = "invalid_grant", **fields: Any
) -> AsyncIterator[tuple[RedirectingAS, StubResource]]:
    """A third-party-like authorization server and a resource pointing at it (or at ``issuer``),
    each on its own port; ``fields`` go to the AS (``metadata``, ``error``) or, prefixed ``rs_``,
    to the resource."""
    rs_fields = {k[3:]: v for k, v in fields.items() if k.startswith("rs_")}
    as_fields = {k: v for k, v in fields.items() if not k.startswith("rs_")}
    authz = RedirectingAS(token_error=token_error, **as_fields)
    async with serve(authz.app()) as as_base:
        authz.base = as_base
        rs = StubResource(issuer or authz.issuer, **rs_fields)
        async with serve(rs.app()) as rs_base:
            rs.base = rs_base
            yield authz, rs


def open_server() -> Starlette:
    """A tiny app answering 200 to anything: an MCP server that needs no token."""

    async def ok(request: Request) -> JSONResponse:
        return JSONResponse({"jsonrpc": "2.0", "id": 1, "result": {"tools": []}})

    return Starlette(routes=[Route("/open", ok, methods=["POST"])])


def misdirecting(issuer: str) -> Starlette:
    """A resource whose challenge names a metadata URL with nothing there, while the document
    is at the path-inserted well-known URL."""

    async def mcp(request: Request) -> JSONResponse:
        challenge = f'Bearer resource_metadata="{request.base_url}wrong-place"'
        return JSONResponse({}, 401, headers={"WWW-Authenticate": challenge})

    async def metadata(request: Request) -> JSONResponse:
        resource = f"{request.base_url}mcp"
        return JSONResponse({"resource": resource, "authorization_servers": [issuer]})

    return Starlette(
        routes=[
            Route("/mcp", mcp, methods=["POST"]),
            Route("/.well-known/oauth-protected-resource/mcp", metadata),
        ]
    )


def only(diagnosis: Diagnosis, name: str) -> Check:
    """The one check of that name."""
    [check] = [c for c in diagnosis.checks if c.name == name]
    return check


def failing(diagnosis: Diagnosis) -> list[str]:
    return [c.name for c in diagnosis.failed]


def names(diagnosis: Diagnosis) -> list[str]:
    return [c.name for c in diagnosis.checks]


# ------------------------------------------------------------------------------ broken servers
async def test_a_standards_following_third_party_chain_passes_every_step() -> None:
    async with broken() as (authz, rs):
        found = await diagnose(rs.url, SETTINGS)
    assert found.ok, [(c.name, c.detail) for c in found.failed]
    assert found.kind == "mcp" and found.resource == rs.url
    assert names(found) == [
        "request",
        "www-authenticate",
        "prm-url",
        "prm-resource",
        "authorization-servers",
        "as-metadata-url",
        "issuer",
        "pkce",
        "registration-pre-registered",
        "registration-cimd",
        "registration-dcr",
        "registration",
        "authorization-endpoint",
        "token-endpoint",
        "resource-parameter",
    ]
    assert 'scope="mcp:basic"' in only(found, "www-authenticate").detail
    # The authorization request carried PKCE S256, the resource and the challenged scope (C12,
    # C14); the token request a made-up code and the same resource.
    [sent] = authz.authorize_requests
    assert sent["resource"] == rs.url and sent["code_challenge_method"] == "S256"
    assert sent["scope"] == "mcp:basic" and sent["client_id"] == "client-1"
    [token] = authz.token_requests
    assert token["code"] == MADE_UP_CODE and token["resource"] == rs.url
    # The temporary registration was native, and its survival is reported (no RFC 7592 token).
    assert authz.registrations[0]["application_type"] == "native"
    assert "stays registered" in only(found, "registration-dcr").detail


async def test_c01_no_protected_resource_metadata_fails_with_the_url_to_serve() -> None:
    async with broken(rs_serve_metadata=False) as (_, rs):
        found = await diagnose(rs.url, SETTINGS)
    assert failing(found) == ["prm-url", "prm-url", "prm"]
    header, root = [c for c in found.checks if c.name == "prm-url"]
    assert header.url == rs.metadata_url and "HTTP 404" in header.detail
    assert root.url is not None and root.url.endswith("/.well-known/oauth-protected-resource")
    fix = only(found, "prm").fix or ""
    assert rs.metadata_url in fix and f'"resource": "{rs.url}"' in fix and VSCODE in fix
    assert "as-metadata-url" not in names(found)


async def test_c01_metadata_for_another_resource_fails_the_resource_check() -> None:
    async with broken(rs_resource="http://127.0.0.1:9/elsewhere") as (_, rs):
        found = await diagnose(rs.url, SETTINGS)
    assert failing(found) == ["prm-resource"]
    check = only(found, "prm-resource")
    assert "http://127.0.0.1:9/elsewhere" in check.detail
    assert rs.url in (check.fix or "") and "RFC 9728" in (check.fix or "")


async def test_c02_r02_401_without_www_authenticate_fails_but_discovery_goes_on() -> None:
    async with broken(rs_challenge=False) as (_, rs):
        found = await diagnose(rs.url, SETTINGS)
    assert failing(found) == ["www-authenticate"]
    check = only(found, "www-authenticate")
    assert check.detail == "the 401 has no WWW-Authenticate header"
    assert "WWW-Authenticate: Bearer" in (check.fix or "") and VSCODE in (check.fix or "")
    # Without a challenge the client looks at the well-known URL, where the document is.
    [prm] = [c for c in found.checks if c.name == "prm-url"]
    assert prm.status == "ok" and prm.url == rs.metadata_url


async def test_c05_issuer_mismatch_fails_and_names_both_issuers() -> None:
    async with broken(metadata={"issuer": "https://evil.example.com"}) as (authz, rs):
        found = await diagnose(rs.url, SETTINGS)
        issuer = authz.issuer
    assert failing(found) == ["as-metadata-url", "as-metadata-url", "issuer"]
    check = only(found, "issuer")
    assert "https://evil.example.com" in check.detail
    assert repr(issuer) in (check.fix or "") and "RFC 8414 §3.3" in (check.fix or "")
    assert "pkce" not in names(found)  # metadata with a wrong issuer is never used


async def test_c04_metadata_urls_are_tried_in_the_spec_order() -> None:
    async with broken(metadata={"issuer": "https://evil.example.com"}) as (authz, rs):
        found = await diagnose(rs.url, SETTINGS)
        issuer = authz.issuer
    assert [c.url for c in found.checks if c.name == "as-metadata-url"] == [
        f"{issuer}/.well-known/oauth-authorization-server",
        f"{issuer}/.well-known/openid-configuration",
    ]


async def test_c10_no_s256_fails_pkce_and_the_authorization_request_is_not_sent() -> None:
    async with broken(metadata={"code_challenge_methods_supported": ["plain"]}) as (authz, rs):
        found = await diagnose(rs.url, SETTINGS)
    assert failing(found) == ["pkce"]
    check = only(found, "pkce")
    assert "['plain']" in check.detail
    assert '["S256"]' in (check.fix or "") and VSCODE in (check.fix or "")
    assert only(found, "authorization-endpoint").status == "skip"
    assert authz.authorize_requests == []


async def test_c06_no_registration_route_fails_with_what_to_configure() -> None:
    async with broken(metadata={"registration_endpoint": None}) as (authz, rs):
        found = await diagnose(rs.url, SETTINGS)
        issuer = authz.issuer
    assert failing(found) == ["registration"]
    fix = only(found, "registration").fix or ""
    assert "pre_registered" in fix and repr(issuer) in fix and VSCODE in fix
    assert only(found, "resource-parameter").status == "skip"
    # The token endpoint is still checked, with a client_id it cannot know.
    assert only(found, "token-endpoint").status == "ok"


async def test_c06_a_pre_registered_client_comes_first_and_no_client_is_registered() -> None:
    async with broken(metadata={"registration_endpoint": None}) as (authz, rs):
        settings = ClientSettings(
            use_keyring=False,
            pre_registered=[PreRegisteredClient(issuer=authz.issuer, client_id="operator-given")],
        )
        found = await diagnose(rs.url, settings)
    assert found.ok, failing(found)
    assert only(found, "registration-pre-registered").status == "ok"
    assert "operator-given" in only(found, "registration").detail
    assert authz.authorize_requests[0]["client_id"] == "operator-given"
    assert authz.registrations == []


async def test_c06_dcr_refused_fails_the_route_and_the_verdict() -> None:
    async with broken(metadata={"registration_endpoint": "http://127.0.0.1:1/register"}) as (
        _,
        rs,
    ):
        found = await diagnose(rs.url, SETTINGS)
    assert failing(found) == ["registration-dcr", "registration"]
    assert "request failed" in only(found, "registration-dcr").detail
    assert "pre-register" in (only(found, "registration-dcr").fix or "")


async def test_unreachable_authorization_server_on_a_closed_port_fails() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with broken(issuer=closed) as (_, rs):
        found = await diagnose(rs.url, SETTINGS)
    assert failing(found)[-1] == "as-metadata"
    check = only(found, "as-metadata")
    assert check.detail.startswith(f"authorization server {closed} is unreachable")
    assert "authorization_servers" in (check.fix or "") and VSCODE in (check.fix or "")


async def test_unreachable_token_endpoint_fails() -> None:
    closed = f"http://127.0.0.1:{free_port()}/token"
    async with broken(metadata={"token_endpoint": closed}) as (_, rs):
        found = await diagnose(rs.url, SETTINGS)
    assert failing(found) == ["token-endpoint"]
    check = only(found, "token-endpoint")
    assert check.url == closed and check.detail.startswith("unreachable")


async def test_a_token_endpoint_that_accepts_a_made_up_code_fails() -> None:
    async with broken(token_error=None) as (_, rs):
        found = await diagnose(rs.url, SETTINGS)
    assert failing(found) == ["token-endpoint"]
    assert "invalid_grant" in (only(found, "token-endpoint").fix or "")


async def test_c12_resource_refused_with_invalid_target_fails() -> None:
    async with broken(error="invalid_target", token_error="invalid_target") as (authz, rs):
        found = await diagnose(rs.url, SETTINGS)
        issuer = authz.issuer
    assert failing(found) == ["resource-parameter"]
    check = only(found, "resource-parameter")
    assert check.url == issuer
    assert "authorization request" in check.detail and "token request" in check.detail
    assert rs.url in (check.fix or "") and "RFC 8707" in (check.fix or "")
    assert VSCODE in (check.fix or "")


async def test_a_scope_the_authorization_server_refuses_warns() -> None:
    async with broken(error="invalid_scope") as (_, rs):
        found = await diagnose(rs.url, SETTINGS)
    assert found.ok
    check = only(found, "authorization-endpoint")
    assert check.status == "warn" and "error=invalid_scope" in check.detail
    assert "scopes" in (check.fix or "")


async def test_r02_a_challenge_without_resource_metadata_warns_and_the_path_url_is_used() -> None:
    async with broken() as (authz, _):
        rs = ResourceServer(authz.issuer, "", header_points_to_metadata=False)
        async with serve(rs.app()) as rs_base:
            rs.base = rs_base
            found = await diagnose(rs.url, SETTINGS)
    assert found.ok, failing(found)
    check = only(found, "www-authenticate")
    assert check.status == "warn" and "resource_metadata (none)" in check.detail
    assert "resource_metadata=" in (check.fix or "")
    [prm] = [c for c in found.checks if c.name == "prm-url"]
    assert prm.status == "ok" and prm.url == rs.metadata_url


async def test_c01_a_header_pointing_nowhere_fails_and_says_where_the_document_is() -> None:
    async with broken() as (authz, _), serve(misdirecting(authz.issuer)) as base:
        found = await diagnose(f"{base}/mcp", SETTINGS)
    assert failing(found) == ["prm-url"]
    header, path = [c for c in found.checks if c.name == "prm-url"]
    assert header.url == f"{base}/wrong-place" and "HTTP 404" in header.detail
    assert f"{base}/.well-known/oauth-protected-resource/mcp" in (header.fix or "")
    assert path.status == "ok"


async def test_c03_several_authorization_servers_one_unreachable_only_warns() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async with broken() as (authz, _):
        rs = StubResource(authz.issuer, issuers=[closed, authz.issuer])
        async with serve(rs.app()) as rs_base:
            rs.base = rs_base
            found = await diagnose(rs.url, SETTINGS)
            preferred = await diagnose(
                rs.url, ClientSettings(use_keyring=False, preferred_issuers=[authz.issuer])
            )
            issuer = authz.issuer
    assert found.ok, failing(found)
    check = only(found, "as-metadata")
    assert check.status == "warn" and "another authorization server" in check.detail
    assert only(found, "authorization-servers").detail == f"{closed}, {issuer}"
    # RFC 9728 §7.6: the preferred one is diagnosed first.
    assert preferred.checks[5].url == f"{issuer}/.well-known/oauth-authorization-server"
    assert "(preferred:" in only(preferred, "authorization-servers").detail


async def test_without_registering_no_client_is_created_and_the_resource_is_not_tested() -> None:
    async with broken() as (authz, rs):
        found = await diagnose(rs.url, SETTINGS, register_client=False)
        registrations = authz.registrations
    assert found.ok, failing(found)
    assert registrations == []
    assert only(found, "registration").detail == "Dynamic Client Registration (not tried)"
    assert only(found, "resource-parameter").status == "skip"


async def test_a_server_that_needs_no_token_is_reported_and_nothing_more() -> None:
    async with serve(open_server()) as base:
        found = await diagnose(f"{base}/open", SETTINGS, kind="mcp")
    assert [c.status for c in found.checks] == ["warn"]
    assert "HTTP 200" in found.checks[0].detail


async def test_a_wrong_url_is_a_404_with_the_fix() -> None:
    async with broken() as (_, rs):
        found = await diagnose(f"{rs.base}/nope", SETTINGS, kind="mcp")
    assert failing(found) == ["request"] and len(found.checks) == 1
    assert "/mcp" in (found.checks[0].fix or "")


async def test_an_http_url_on_another_host_is_refused_before_any_request() -> None:
    found = await diagnose("http://mcp.example.com/mcp", SETTINGS)
    assert failing(found) == ["url"] and "https" in (found.checks[0].fix or "")


async def test_the_diagnosis_serialises_to_json() -> None:
    async with broken(rs_serve_metadata=False) as (_, rs):
        found = await diagnose(rs.url, SETTINGS)
    data = json.loads(json.dumps(found.to_json()))
    assert data["ok"] is False and data["kind"] == "mcp" and data["url"] == rs.url
    assert data["counts"]["fail"] == 3
    assert set(data["checks"][0]) == {"name", "status", "detail", "url", "fix"}


# ------------------------------------------------------------------------- bastion's own stack
async def test_bastion_as_and_resource_pass_and_the_temporary_client_is_deleted(
    stack: Stack,
) -> None:
    """C01, C04, C05, C06, C10, C12 against bastion's AS: DCR is the route (no configuration),
    the temporary client is deleted again (RFC 7592)."""
    found = await diagnose(stack.rs.url, stack.client_settings())
    assert found.ok, [(c.name, c.detail) for c in found.failed]
    assert [c for c in found.checks if c.status == "warn"] == []
    assert only(found, "registration-cimd").status == "skip"  # supported, no URL configured
    assert "deleted again" in only(found, "registration-dcr").detail
    assert "accepted by the authorization request" in only(found, "resource-parameter").detail
    assert "invalid_grant" in only(found, "token-endpoint").detail
    assert await list_clients(stack.settings) == []


async def test_bastion_as_with_a_pre_registered_machine_client_gets_a_token(
    stack: Stack,
) -> None:
    created = await machine_client(stack.settings, name="agent")
    settings = stack.client_settings(
        pre_registered=[
            PreRegisteredClient(
                issuer=stack.issuer,
                client_id=created.client_id,
                client_secret=created.secret,
                grant_type="client_credentials",
            )
        ]
    )
    found = await diagnose(stack.rs.url, settings)
    assert found.ok, failing(found)
    assert only(found, "authorization-endpoint").status == "skip"
    assert only(found, "token-endpoint").detail.startswith("issued a token")
    assert "client_credentials" in only(found, "resource-parameter").detail


async def test_c12_bastion_refuses_a_resource_it_does_not_serve(
    make_settings: Callable[..., Settings],
) -> None:
    """The AS of a resource that is not among its [[resources]]: invalid_target."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings = make_settings(
        issuer=issuer,
        resources=[ResourceSettings(uri=f"{issuer}/other", name="other", scopes=["mcp:tools"])],
    )
    rs = StubResource(issuer, challenge_scope="mcp:tools")
    async with serve(create_app(settings), port=port), serve(rs.app()) as rs_base:
        rs.base = rs_base
        found = await diagnose(rs.url, SETTINGS)
    assert failing(found) == ["resource-parameter"]
    assert "[[resources]]" in (only(found, "resource-parameter").fix or "")


async def diagnose_gateway(
    make_settings: Callable[..., Settings], kind: Kind = "auto"
) -> tuple[str, Diagnosis]:
    """bastion's authorization server and a gateway with one upstream at ``/mcp/notes``, each on
    its own port; that endpoint's URL and its diagnosis as ``kind``."""
    as_port, gateway_port = free_port(), free_port()
    gateway = f"http://127.0.0.1:{gateway_port}"
    settings = make_settings(
        issuer=f"http://127.0.0.1:{as_port}",
        resources=[
            ResourceSettings(uri=f"{gateway}/mcp/notes", name="notes", scopes=["mcp:tools"])
        ],
        gateway={
            "enabled": True,
            "public_url": gateway,
            "upstreams": [
                {
                    "name": "notes",
                    "path": "/mcp/notes",
                    "url": f"http://127.0.0.1:{free_port()}/mcp",
                    "scopes": ["mcp:tools"],
                    "policy": {"default": ["mcp:tools"]},
                }
            ],
        },
    )
    async with (
        serve(create_app(settings), port=as_port),
        serve(create_gateway_app(settings), port=gateway_port),
    ):
        return f"{gateway}/mcp/notes", await diagnose(f"{gateway}/mcp/notes", SETTINGS, kind=kind)


async def test_bastion_as_and_gateway_pass(make_settings: Callable[..., Settings]) -> None:
    endpoint, found = await diagnose_gateway(make_settings)
    assert found.ok, [(c.name, c.detail) for c in found.failed]
    assert found.resource == endpoint
    assert "deleted again" in only(found, "registration-dcr").detail


async def test_g01_an_mcp_endpoint_diagnosed_as_a_registry_fails_and_says_what_it_is(
    make_settings: Callable[..., Settings],
) -> None:
    """The gateway challenges every path below an MCP endpoint, /v0.1/servers too: without a
    look at what the challenge names, `doctor --registry` passed every step of an MCP server."""
    endpoint, found = await diagnose_gateway(make_settings, "registry")
    assert failing(found) == ["registry"]
    assert names(found) == ["request", "www-authenticate", "registry"]
    check = only(found, "registry")
    assert "answers like an MCP endpoint" in check.detail and "scope mcp:tools" in check.detail
    assert f"bastion doctor {endpoint} (without --registry)" in (check.fix or "")


async def diagnose_registry(
    make_settings: Callable[..., Settings], kind: Kind = "auto", **registry: Any
) -> tuple[str, Diagnosis]:
    """bastion's registry (``registry`` overriding its test settings) at ``<issuer>/registry``,
    diagnosed as ``kind``: its URL and the diagnosis."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings = make_settings(issuer=issuer, registry=registry_settings(**registry))
    async with serve(create_combined_app(settings), port=port):
        return f"{issuer}/registry", await diagnose(f"{issuer}/registry", SETTINGS, kind=kind)


async def test_a_registry_diagnosed_as_an_mcp_endpoint_fails_and_says_what_it_is(
    make_settings: Callable[..., Settings],
) -> None:
    registry, found = await diagnose_registry(make_settings, "mcp")
    assert names(found) == ["request"] and failing(found) == ["request"]
    check = only(found, "request")
    assert "HTTP 404" in check.detail and "registry's base URL" in check.detail
    assert f"bastion doctor --registry {registry}" in (check.fix or "")


async def test_g01_a_registry_with_its_own_realm_and_scope_names_still_passes(
    make_settings: Callable[..., Settings],
) -> None:
    """Realm and scope names are the registry's to choose: nothing is held against one whose
    base URL does not answer MCP."""
    names_ = {"read": "catalog.read", "write": "catalog.write", "admin": "catalog.admin"}
    _, found = await diagnose_registry(
        make_settings, "registry", realm="acme", scope_names=names_, scopes=[]
    )
    assert found.ok, [(c.name, c.detail) for c in found.failed]
    assert "registry" not in names(found)
    assert "scope catalog.read" in only(found, "www-authenticate").detail


@pytest.mark.parametrize("kind", ["auto", "registry"])
async def test_g01_bastion_registry_passes_and_is_recognised(
    make_settings: Callable[..., Settings], kind: Kind
) -> None:
    registry, found = await diagnose_registry(make_settings, kind)
    assert found.ok, [(c.name, c.detail) for c in found.failed]
    assert found.kind == "registry" and found.resource == registry
    request = only(found, "request")
    assert request.url == f"{registry}/v0.1/servers?limit=1"
    challenge = only(found, "www-authenticate").detail
    assert "realm mcp-registry" in challenge and "scope mcp-registry:read" in challenge
    assert "resource=" + registry in only(found, "resource-parameter").detail


async def test_g01_a_registry_with_the_earlier_realm_is_recognised_too(
    make_settings: Callable[..., Settings],
) -> None:
    """A registry that still challenges with bastion's earlier realm "MCP Registry" is
    diagnosed as a registry without --registry."""
    _, found = await diagnose_registry(make_settings, realm="MCP Registry")
    assert found.ok, [(c.name, c.detail) for c in found.failed]
    assert found.kind == "registry"
    assert "realm MCP Registry" in only(found, "www-authenticate").detail
