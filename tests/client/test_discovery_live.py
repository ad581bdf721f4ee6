"""Discovery over real HTTP against servers publishing documents at chosen well-known URLs: the
order of the URLs tried (C01, C04), what is accepted (C05), the choice among several
authorization servers (RFC 9728 §7.6), and the trace kept for ``bastion doctor``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bastion.client.discovery import BearerChallenge, discover
from bastion.client.errors import (
    AuthorizationServerMetadataNotFound,
    IssuerMismatch,
    ProtectedResourceMetadataNotFound,
)
from tests.client.servers import MetadataServer
from tests.support.live import serve

PRM_PATH = "/.well-known/oauth-protected-resource/mcp"
PRM_ROOT = "/.well-known/oauth-protected-resource"


@pytest.fixture
async def site() -> AsyncIterator[MetadataServer]:
    server = MetadataServer()
    async with serve(server.app()) as base:
        server.base = base
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(follow_redirects=False) as client:
        yield client


def prm(site: MetadataServer, resource: str, *issuers: str) -> dict[str, object]:
    return {"resource": resource, "authorization_servers": list(issuers or [site.base])}


async def test_c01_the_challenge_url_is_used_and_nothing_else_probed(
    site: MetadataServer, http: httpx.AsyncClient
) -> None:
    """With ``resource_metadata`` in the challenge, exactly that URL is fetched for the PRM."""
    site.documents["/custom/prm.json"] = prm(site, f"{site.base}/mcp")
    site.documents["/.well-known/oauth-authorization-server"] = site.as_metadata(site.base)
    challenge = BearerChallenge(resource_metadata=f"{site.base}/custom/prm.json")
    found = await discover(http, f"{site.base}/mcp", challenge=challenge)
    assert found.resource == f"{site.base}/mcp"
    assert found.issuer == site.base
    assert site.requested == ["/custom/prm.json", "/.well-known/oauth-authorization-server"]


async def test_c01_path_inserted_then_root(site: MetadataServer, http: httpx.AsyncClient) -> None:
    """No URL in the challenge: the path-inserted well-known URL, then the root one, whose
    document describes the origin (sent later as the ``resource``)."""
    site.documents[PRM_ROOT] = prm(site, site.base)
    site.documents["/.well-known/oauth-authorization-server"] = site.as_metadata(site.base)
    found = await discover(http, f"{site.base}/mcp", challenge=BearerChallenge())
    assert found.resource == site.base
    assert site.requested[:2] == [PRM_PATH, PRM_ROOT]
    steps = [(s.step, s.ok) for s in found.trace.steps]
    assert steps[:3] == [
        ("www-authenticate", True),
        ("protected-resource-metadata", False),
        ("protected-resource-metadata", True),
    ]


async def test_c01_no_metadata_anywhere_is_an_error_naming_the_urls(
    site: MetadataServer, http: httpx.AsyncClient
) -> None:
    """MCP clients must use PRM: without it discovery fails and says where it looked."""
    with pytest.raises(ProtectedResourceMetadataNotFound) as caught:
        await discover(http, f"{site.base}/mcp")
    assert PRM_PATH in str(caught.value)
    assert caught.value.trace is not None
    assert [s.ok for s in caught.value.trace.steps] == [False, False]


async def test_c04_issuer_with_a_path_tries_the_three_urls_in_order(
    site: MetadataServer, http: httpx.AsyncClient
) -> None:
    """For issuer ``<base>/tenant1`` published only at the OIDC path-appended URL, the RFC 8414
    and OIDC path-inserted URLs are tried first, in that order."""
    issuer = f"{site.base}/tenant1"
    site.documents[PRM_PATH] = prm(site, f"{site.base}/mcp", issuer)
    site.documents["/tenant1/.well-known/openid-configuration"] = site.as_metadata(issuer)
    found = await discover(http, f"{site.base}/mcp")
    assert found.issuer == issuer
    assert site.requested[1:] == [
        "/.well-known/oauth-authorization-server/tenant1",
        "/.well-known/openid-configuration/tenant1",
        "/tenant1/.well-known/openid-configuration",
    ]
    assert "/.well-known/oauth-authorization-server" not in site.requested


async def test_c04_issuer_without_a_path_falls_back_to_openid_configuration(
    site: MetadataServer, http: httpx.AsyncClient
) -> None:
    """Without a path: RFC 8414 first, then OpenID Connect Discovery."""
    site.documents[PRM_PATH] = prm(site, f"{site.base}/mcp")
    site.documents["/.well-known/openid-configuration"] = site.as_metadata(site.base)
    await discover(http, f"{site.base}/mcp")
    assert site.requested[1:] == [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ]


async def test_c05_a_document_with_another_issuer_is_skipped(
    site: MetadataServer, http: httpx.AsyncClient
) -> None:
    """A document whose issuer differs is never used; a later URL with the right one is."""
    issuer = f"{site.base}/t"
    site.documents[PRM_PATH] = prm(site, f"{site.base}/mcp", issuer)
    site.documents["/.well-known/oauth-authorization-server/t"] = site.as_metadata(
        "https://attacker.example"
    )
    site.documents["/.well-known/openid-configuration/t"] = site.as_metadata(issuer)
    found = await discover(http, f"{site.base}/mcp")
    assert found.authorization_server.url.endswith("/.well-known/openid-configuration/t")
    refused = [s for s in found.trace.steps if not s.ok]
    assert any("attacker.example" in s.detail for s in refused)


async def test_c05_only_mismatched_documents_is_an_issuer_error(
    site: MetadataServer, http: httpx.AsyncClient
) -> None:
    """When the only document has the wrong issuer, discovery fails with that reason."""
    site.documents[PRM_PATH] = prm(site, f"{site.base}/mcp")
    site.documents["/.well-known/oauth-authorization-server"] = site.as_metadata(f"{site.base}/")
    with pytest.raises(IssuerMismatch):
        await discover(http, f"{site.base}/mcp")


async def test_several_authorization_servers_default_and_preference(
    site: MetadataServer, http: httpx.AsyncClient
) -> None:
    """RFC 9728 §7.6: by default the first listed server that validates (here the second: the
    first publishes nothing); with a preference, the preferred one."""
    first, second, third = (f"{site.base}/{name}" for name in ("a", "b", "c"))
    site.documents[PRM_PATH] = prm(site, f"{site.base}/mcp", first, second, third)
    for issuer, name in ((second, "b"), (third, "c")):
        site.documents[f"/.well-known/oauth-authorization-server/{name}"] = site.as_metadata(issuer)
    assert (await discover(http, f"{site.base}/mcp")).issuer == second
    preferred = await discover(http, f"{site.base}/mcp", preferred_issuers=[third])
    assert preferred.issuer == third
    assert [s.detail for s in preferred.trace.steps][-1] == f"using {third}"


async def test_no_usable_authorization_server_lists_every_reason(
    site: MetadataServer, http: httpx.AsyncClient
) -> None:
    """None of the listed servers can be used: the error names each one's problem."""
    first, second = f"{site.base}/a", f"{site.base}/b"
    site.documents[PRM_PATH] = prm(site, f"{site.base}/mcp", first, second)
    site.documents["/.well-known/oauth-authorization-server/b"] = site.as_metadata(
        second, code_challenge_methods_supported=None
    )
    with pytest.raises(AuthorizationServerMetadataNotFound) as caught:
        await discover(http, f"{site.base}/mcp")
    assert "publishes no metadata" in str(caught.value)
    assert "S256" in str(caught.value)


async def test_redirects_are_not_followed_for_metadata(
    site: MetadataServer, http: httpx.AsyncClient
) -> None:
    """A well-known URL that redirects is reported in the trace, not followed."""
    site.documents[PRM_PATH] = 302
    site.documents[PRM_ROOT] = 500
    with pytest.raises(ProtectedResourceMetadataNotFound) as caught:
        await discover(http, f"{site.base}/mcp")
    assert caught.value.trace is not None
    details = [s.detail for s in caught.value.trace.steps]
    assert details == ["HTTP 302", "HTTP 500"]


async def test_legacy_2025_03_26_mode_uses_the_origin_as_authorization_server(
    site: MetadataServer, http: httpx.AsyncClient
) -> None:
    """Off by default (PRM is required); with ``legacy_2025_03_26`` a server without PRM is
    treated as that revision said: its origin is the AS, metadata at the root, else the default
    endpoints /authorize, /token, /register."""
    with pytest.raises(ProtectedResourceMetadataNotFound):
        await discover(http, f"{site.base}/mcp")
    fallback = await discover(http, f"{site.base}/mcp", legacy_2025_03_26=True)
    assert fallback.issuer == site.base
    assert fallback.authorization_server.token_endpoint == f"{site.base}/token"
    site.documents["/.well-known/oauth-authorization-server"] = site.as_metadata(
        site.base, token_endpoint=f"{site.base}/oauth/token"
    )
    found = await discover(http, f"{site.base}/mcp", legacy_2025_03_26=True)
    assert found.authorization_server.token_endpoint == f"{site.base}/oauth/token"
