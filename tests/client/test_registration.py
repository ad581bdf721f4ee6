"""Client identity (MCP "Client Registration"): priority (C06), the DCR request (C08), binding
to the issuer (C03, C09), and client authentication at the token endpoint (OAuth 2.1 §2.4,
RFC 7523)."""

from __future__ import annotations

import base64
import warnings
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey
from pydantic import SecretStr

from bastion.client.client_auth import ASSERTION_TYPE, authenticate, basic_authorization
from bastion.client.errors import NoRegistrationRoute
from bastion.client.models import AuthorizationServerMetadata, RegisteredClient
from bastion.client.registration import client_metadata_document, existing_client, register
from bastion.client.settings import ClientSettings, PreRegisteredClient
from bastion.client.storage import MemoryStorage
from tests.client.servers import MetadataServer
from tests.support.live import serve

CIMD = "https://client.example.com/bastion.json"


def metadata(issuer: str, **fields: Any) -> AuthorizationServerMetadata:
    values: dict[str, Any] = {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/token",
        "authorization_endpoint": f"{issuer}/authorize",
        "registration_endpoint": f"{issuer}/register",
        "scopes_supported": None,
        "code_challenge_methods_supported": ("S256",),
        "token_endpoint_auth_methods_supported": None,
        "grant_types_supported": None,
        "iss_parameter_supported": True,
        "client_id_metadata_document_supported": True,
        "url": f"{issuer}/.well-known/oauth-authorization-server",
        "raw": {},
    }
    values.update(fields)
    return AuthorizationServerMetadata(**values)


@pytest.fixture
async def registrar() -> AsyncIterator[MetadataServer]:
    server = MetadataServer()
    async with serve(server.app()) as base:
        server.base = base
        yield server


async def test_c06_priority_pre_registered_then_cimd_then_stored_dcr() -> None:
    """Pre-registered credentials for this issuer first; then the CIMD URL when the AS supports
    it; then a registration stored for this issuer; else None (DCR comes next)."""
    issuer = "https://as.example.com"
    storage = MemoryStorage()
    await storage.set_client(issuer, RegisteredClient(issuer, "dcr-1", "dcr"))
    pre = PreRegisteredClient(issuer=issuer, client_id="pre", client_secret=SecretStr("s"))
    both = ClientSettings(pre_registered=[pre], client_metadata_url=CIMD)
    found = await existing_client(both, storage, metadata(issuer))
    assert found is not None
    assert (found.source, found.client_id) == ("pre-registered", "pre")
    cimd = await existing_client(
        ClientSettings(client_metadata_url=CIMD), storage, metadata(issuer)
    )
    assert cimd is not None
    assert (cimd.source, cimd.client_id, cimd.token_endpoint_auth_method) == (
        "cimd",
        CIMD,
        "none",
    )
    no_cimd = metadata(issuer, client_id_metadata_document_supported=False)
    stored = await existing_client(ClientSettings(client_metadata_url=CIMD), storage, no_cimd)
    assert stored is not None
    assert stored.client_id == "dcr-1"
    assert await existing_client(ClientSettings(), MemoryStorage(), no_cimd) is None


async def test_c03_c09_credentials_are_bound_to_their_issuer_exactly() -> None:
    """Neither pre-registered nor stored credentials of another issuer are used, even when the
    issuers differ only by a trailing slash."""
    issuer = "https://as.example.com"
    storage = MemoryStorage()
    await storage.set_client(f"{issuer}/", RegisteredClient(f"{issuer}/", "other", "dcr"))
    pre = PreRegisteredClient(issuer=f"{issuer}/", client_id="pre")
    settings = ClientSettings(pre_registered=[pre])
    no_cimd = metadata(issuer, client_id_metadata_document_supported=False)
    assert await existing_client(settings, storage, no_cimd) is None


async def test_expired_dcr_secrets_are_not_used() -> None:
    """RFC 7591 §3.2.1 ``client_secret_expires_at`` in the past: register again."""
    issuer = "https://as.example.com"
    storage = MemoryStorage()
    expired = RegisteredClient(
        issuer, "old", "dcr", "client_secret_basic", "s", client_secret_expires_at=1
    )
    await storage.set_client(issuer, expired)
    no_cimd = metadata(issuer, client_id_metadata_document_supported=False)
    assert await existing_client(ClientSettings(), storage, no_cimd) is None


async def test_c08_dcr_registers_a_native_loopback_client_and_stores_it(
    registrar: MetadataServer,
) -> None:
    """RFC 7591 §2 with MCP's rules: application_type native, the loopback redirect URI,
    grant_types authorization_code and refresh_token, auth method none when allowed."""
    storage = MemoryStorage()
    found = await _register(registrar, storage, methods=None)
    [body] = registrar.registrations
    assert body == {
        "client_name": "mcp-bastion",
        "redirect_uris": ["http://127.0.0.1:4242/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    }
    assert found.token_endpoint_auth_method == "none"
    assert found.client_secret is None
    assert await storage.get_client(registrar.base) == found


@pytest.mark.parametrize(
    ("methods", "expected"),
    [
        (["none", "client_secret_basic"], "none"),
        (["client_secret_basic"], "client_secret_basic"),
        (["private_key_jwt", "client_secret_post"], "client_secret_post"),
    ],
)
async def test_c08_dcr_asks_for_an_auth_method_the_server_lists(
    registrar: MetadataServer, methods: list[str], expected: str
) -> None:
    """The requested token_endpoint_auth_method is one the AS advertises (``none`` first for a
    native client); a secret method keeps the returned secret."""
    found = await _register(registrar, MemoryStorage(), methods=methods)
    assert registrar.registrations[0]["token_endpoint_auth_method"] == expected
    assert found.token_endpoint_auth_method == expected
    assert (found.client_secret is not None) == (expected != "none")


async def _register(
    registrar: MetadataServer, storage: MemoryStorage, methods: list[str] | None
) -> RegisteredClient:
    async with httpx.AsyncClient() as http:
        return await register(
            http,
            ClientSettings(),
            storage,
            metadata(registrar.base, token_endpoint_auth_methods_supported=methods),
            "http://127.0.0.1:4242/callback",
        )


async def test_c06_no_route_names_what_to_configure() -> None:
    """No pre-registration, no CIMD, no registration_endpoint: the error says which setting to
    add, for which issuer (and that credentials of other issuers are not used)."""
    issuer = "https://as.example.com"
    settings = ClientSettings(
        pre_registered=[PreRegisteredClient(issuer="https://elsewhere", client_id="x")]
    )
    bare = metadata(issuer, registration_endpoint=None, client_id_metadata_document_supported=False)
    async with httpx.AsyncClient() as http:
        with pytest.raises(NoRegistrationRoute) as caught:
            await register(http, settings, MemoryStorage(), bare, "http://127.0.0.1:1/callback")
    message = str(caught.value)
    assert f"issuer {issuer!r}" in message
    assert "pre_registered" in message
    assert "https://elsewhere" in message
    assert "client_metadata_url" in message


def test_client_secret_basic_form_encodes_before_base64() -> None:
    """RFC 6749 §2.3.1: id and secret are application/x-www-form-urlencoded, then joined."""
    header = basic_authorization("id:with space", "p@ss/word")
    decoded = base64.b64decode(header.removeprefix("Basic ")).decode()
    assert decoded == "id%3Awith%20space:p%40ss%2Fword"


@pytest.mark.parametrize(
    ("method", "form_keys", "header"),
    [
        ("none", {"client_id"}, False),
        ("client_secret_post", {"client_id", "client_secret"}, False),
        ("client_secret_basic", set(), True),
    ],
)
def test_token_endpoint_authentication_methods(
    method: Any, form_keys: set[str], header: bool
) -> None:
    """OAuth 2.1 §2.4: where each method puts the credentials."""
    client = RegisteredClient("https://as", "cid", "pre-registered", method, client_secret="s")
    form: dict[str, str] = {}
    headers: dict[str, str] = {}
    authenticate(client, form, headers, issuer="https://as")
    assert set(form) == form_keys
    assert ("Authorization" in headers) == header


def test_private_key_jwt_assertion_targets_the_issuer() -> None:
    """RFC 7523 §3: iss = sub = client_id, aud = the AS issuer, a jti, a short exp; ES256."""
    key = ECKey.generate_key("P-256")
    pem = key.as_pem(private=True).decode()
    client = RegisteredClient(
        "https://as.example.com",
        "machine",
        "pre-registered",
        "private_key_jwt",
        private_key_pem=pem,
    )
    form: dict[str, str] = {}
    authenticate(client, form, {}, issuer="https://as.example.com", now=lambda: 1_000_000.0)
    assert form["client_assertion_type"] == ASSERTION_TYPE
    token = jwt.decode(form["client_assertion"], key)
    assert token.header["alg"] == "ES256"
    claims = token.claims
    assert (claims["iss"], claims["sub"], claims["aud"]) == (
        "machine",
        "machine",
        "https://as.example.com",
    )
    assert claims["exp"] - claims["iat"] == 60
    assert claims["iat"] == 1_000_000
    assert len(claims["jti"]) >= 22


def test_settings_keep_secrets_out_of_reprs() -> None:
    """House rule 11: secrets are masked."""
    pre = PreRegisteredClient(issuer="https://as", client_id="c", client_secret=SecretStr("s3"))
    assert "s3" not in repr(pre)
    client = RegisteredClient("https://as", "c", "dcr", client_secret="s3", private_key_pem="k")
    assert "s3" not in repr(client)


def test_c07_the_client_metadata_document_names_its_own_url() -> None:
    """The document to host: client_id equal to its URL, client_name, loopback redirect_uris
    (draft-ietf-oauth-client-id-metadata-document §4, MCP client registration), refresh_token
    among grant_types (MCP "Refresh Tokens")."""
    document = client_metadata_document(ClientSettings(client_metadata_url=CIMD))
    assert document["client_id"] == CIMD
    assert document["client_name"] == "mcp-bastion"
    assert document["redirect_uris"] == ["http://127.0.0.1/callback"]
    assert "refresh_token" in document["grant_types"]
    with pytest.raises(ValueError, match="not configured"):
        client_metadata_document(ClientSettings())


def test_private_key_jwt_with_an_ed25519_key_signs_eddsa_without_a_warning() -> None:
    """RFC 8037 §3.1: an Ed25519 key signs the assertion with alg EdDSA, the name authorization
    servers accept (node-oidc-provider, bastion's own), without joserfc's RFC 9864 deprecation
    warning reaching the caller (pytest runs with filterwarnings=error)."""
    key = OKPKey.generate_key("Ed25519")
    client = RegisteredClient(
        "https://as.example.com",
        "machine",
        "pre-registered",
        "private_key_jwt",
        private_key_pem=key.as_pem(private=True).decode(),
        signing_alg="Ed25519",
    )
    form: dict[str, str] = {}
    authenticate(client, form, {}, issuer="https://as.example.com")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        token = jwt.decode(form["client_assertion"], key, algorithms=["EdDSA"])
    assert token.header["alg"] == "EdDSA"
    assert token.claims["aud"] == "https://as.example.com"
