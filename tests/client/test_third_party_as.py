"""bastion's client against a third-party authorization server: node-oidc-provider.

No bastion authorization server is involved. The AS is node-oidc-provider (npm ``oidc-provider``,
OpenID Certified; tests/support/oidc_provider.py runs it on 127.0.0.1); the MCP server is an app
behind bastion's resource middleware, under uvicorn, whose Protected Resource Metadata names that
AS and which verifies its RFC 9068 JWT access tokens. The client is ``BastionAuth`` /
``Authorizer`` (a token file of the test, no keyring) and, last, the official ``mcp`` SDK client
over :func:`bastion.client.mcp_sdk.connect`. The user signs in and consents on the provider's
development pages, scripted over HTTP (:class:`~tests.support.oidc_provider.OidcProviderUser`).

Every request the client itself makes (discovery, registration, token requests) goes through an
``httpx.AsyncClient`` given to the ``Authorizer`` that records it, so the tests can say exactly
which URLs were tried in which order and what each token request carried.

Needs Node 22 (BASTION_NODE); skipped without it unless BASTION_REQUIRE_NODE=1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc.jwk import ECKey, OKPKey, RSAKey
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.client import (
    Authorizer,
    BastionAuth,
    ClientSettings,
    FileStorage,
    PreRegisteredClient,
)
from bastion.client.errors import IssuerMismatch, IssuerResponseMismatch
from bastion.client.mcp_sdk import connect
from bastion.demo.server import demo_app
from bastion.resource import JwtVerifier, ResourceServerMiddleware, ScopePolicy
from tests.client.browser_user import never_open
from tests.resource.apps import echo_app
from tests.support.live import free_port, serve
from tests.support.oidc_provider import (
    OidcProvider,
    OidcProviderUser,
    confidential_client,
    oidc_provider,
    public_client,
    resource,
)

SCOPES = "mcp:tools notes:write"
LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
AS_WELL_KNOWN = "/.well-known/oauth-authorization-server"
OIDC_WELL_KNOWN = "/.well-known/openid-configuration"


# -- the pieces ----------------------------------------------------------------------------------


class Wire:
    """The Authorizer's own HTTP client (discovery, registration, token requests), recording
    every request it sends."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []
        self.http = httpx.AsyncClient(
            timeout=10, follow_redirects=False, event_hooks={"request": [self._record]}
        )

    async def _record(self, request: httpx.Request) -> None:
        self.sent.append(request)

    def lines(self) -> list[str]:
        """``METHOD URL`` of every request, in order."""
        return [f"{r.method} {r.url}" for r in self.sent]

    def posts(self, url: str) -> list[httpx.Request]:
        return [r for r in self.sent if r.method == "POST" and str(r.url) == url]

    def clear(self) -> None:
        self.sent.clear()


def form(request: httpx.Request) -> dict[str, list[str]]:
    """The form-urlencoded body of a token request."""
    return parse_qs(request.content.decode(), keep_blank_values=True)


class Recorder:
    """ASGI: records the status and Authorization header of every request to the MCP endpoint."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path
        self.seen: list[tuple[int, str | None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        raw = dict(scope["headers"]).get(b"authorization")
        authorization = raw.decode() if raw is not None else None

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.seen.append((int(message["status"]), authorization))
            await send(message)

        await self.app(scope, receive, sending)

    @property
    def statuses(self) -> list[int]:
        return [status for status, _ in self.seen]


@dataclass
class Site:
    """A protected MCP endpoint, its authorization server(s), a user and the client's wire."""

    url: str
    op: OidcProvider
    recorder: Recorder
    user: OidcProviderUser
    wire: Wire
    storage_path: Path
    authorizers: list[Authorizer] = field(default_factory=list)

    @property
    def prm_url(self) -> str:
        return self.url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")

    def authorizer(
        self, *, clock: Callable[[], float] | None = None, open_url: Any = None, **settings: Any
    ) -> Authorizer:
        """A client over the test's token file (a new one is a new process, a restart)."""
        values: dict[str, Any] = {"use_keyring": False, "storage_path": self.storage_path}
        values.update(settings)
        client_settings = ClientSettings(**values)
        extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
        made = Authorizer(
            client_settings,
            storage=FileStorage(self.storage_path),
            open_url=open_url or self.user,
            http=self.wire.http,
            **extra,
        )
        self.authorizers.append(made)
        return made

    async def get_tools(self, authorizer: Authorizer) -> httpx.Response:
        async with (
            BastionAuth(authorizer=authorizer) as auth,
            httpx.AsyncClient(auth=auth, timeout=10) as http,
        ):
            return await http.post(self.url, json=LIST)


@asynccontextmanager
async def site(
    tmp_path: Path,
    *,
    app: ASGIApp | None = None,
    authorization_servers: Callable[[OidcProvider], Sequence[str]] | None = None,
    clients: Sequence[dict[str, Any]] | None = None,
    policy: ScopePolicy | None = None,
    port: int | None = None,
    **provider: Any,
) -> AsyncIterator[Site]:
    """node-oidc-provider issuing tokens for ``http://127.0.0.1:<port>/mcp``, and that endpoint
    (the echo app unless ``app``) behind bastion's middleware trusting the provider."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    async with oidc_provider(resources=[resource(url, SCOPES)], clients=clients, **provider) as op:
        verifier = JwtVerifier(issuer=op.issuer, audience=url, jwks_uri=op.jwks_uri)
        protected = ResourceServerMiddleware(
            app or echo_app(),
            resource=url,
            verifier=verifier,
            authorization_servers=(authorization_servers or (lambda o: [o.issuer]))(op),
            scopes_supported=["mcp:tools"],
            policy=policy or ScopePolicy(default=["mcp:tools"]),
        )
        recorder = Recorder(protected, "/mcp")
        user, wire = OidcProviderUser(), Wire()
        running = Site(url, op, recorder, user, wire, tmp_path / "client" / "tokens.json")
        try:
            async with serve(recorder, port=port):
                yield running
        finally:
            for authorizer in running.authorizers:
                await authorizer.aclose()
            await user.aclose()
            await wire.http.aclose()
            await verifier.aclose()


# -- user log-in: discovery, registration, authorization code ------------------------------------


async def test_c01_c04_c05_c08_c10_c11_c12_the_whole_flow_with_dcr_at_oidc_provider(
    tmp_path: Path,
) -> None:
    """401 -> the challenge's resource_metadata (RFC 9728 §5.1) -> the provider's RFC 8414
    metadata, first in MCP's order, issuer identical -> Dynamic Client Registration (RFC 7591,
    application_type native, loopback redirect URI, public client) -> authorization code with
    PKCE S256 and ``resource`` (RFC 8707) -> the provider's response with ``iss`` (RFC 9207),
    checked -> code exchange with verifier and ``resource`` -> one retry with the JWT."""
    async with site(tmp_path, registration=True) as s:
        response = await s.get_tools(s.authorizer())
        assert response.status_code == 200, response.text
        op = s.op
        registration_endpoint = op.metadata["registration_endpoint"]
        assert s.wire.lines() == [
            f"GET {s.prm_url}",
            f"GET {op.issuer}{AS_WELL_KNOWN}",
            f"POST {registration_endpoint}",
            f"POST {op.token_endpoint}",
        ]
        [reg] = s.wire.posts(registration_endpoint)
        [token] = s.wire.posts(op.token_endpoint)
        storage = FileStorage(s.storage_path)
        client = await storage.get_client(op.issuer)
        tokens = await storage.get_tokens(s.url, op.issuer)
    assert tokens is not None
    assert s.recorder.statuses == [401, 200]
    # node-oidc-provider offers DPoP and the middleware takes it: the client binds its token to
    # its key (RFC 9449, dpop = "auto") and presents it in the DPoP scheme (§7.1).
    assert tokens.token_type == "DPoP" and tokens.dpop_jkt is not None
    assert s.recorder.seen == [(401, None), (200, f"DPoP {tokens.access_token}")]
    # DCR (C08): native, loopback, public; stored under the issuer (C09).
    body = httpx.Response(200, content=reg.content).json()
    assert body["application_type"] == "native"
    assert body["token_endpoint_auth_method"] == "none"
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    [redirect_uri] = body["redirect_uris"]
    assert urlsplit(redirect_uri).hostname == "127.0.0.1"
    assert client is not None and client.source == "dcr" and client.issuer == op.issuer
    # The authorization request (C10, C12, C14) and the provider's response (C11).
    params = s.user.params()
    assert s.user.opened[0].startswith(op.authorization_endpoint + "?")
    assert params["client_id"] == [client.client_id]
    assert params["redirect_uri"] == [redirect_uri]
    assert params["code_challenge_method"] == ["S256"]
    assert params["resource"] == [s.url]
    assert params["scope"] == ["mcp:tools offline_access"]  # the challenge's, + offline_access
    assert op.metadata["authorization_response_iss_parameter_supported"] is True
    assert s.user.response_params()["iss"] == [op.issuer]
    # The token request (C12): the code, the PKCE verifier, the same resource.
    sent = form(token)
    assert sent["grant_type"] == ["authorization_code"]
    assert sent["resource"] == [s.url]
    assert sent["client_id"] == [client.client_id]
    assert len(sent["code_verifier"][0]) >= 43
    assert "authorization" not in token.headers
    # What came back: an RFC 9068 JWT for this resource, admitted; no refresh token, as the
    # provider drops offline_access without prompt=consent (C16: never assumed).
    assert tokens.access_token.count(".") == 2
    assert tokens.granted_scopes == ("mcp:tools",)
    assert tokens.refresh_token is None
    assert response.json()["subject"] == "alice"
    assert response.json()["client_id"] == client.client_id


async def test_c04_c05_an_issuer_with_a_path_is_found_at_its_appended_openid_configuration(
    tmp_path: Path,
) -> None:
    """The provider mounted at /oidc serves its metadata only below the issuer. MCP's order for
    an issuer with a path (C04): RFC 8414 path-inserted, OIDC path-inserted (both 404 here),
    then OIDC path-appended, whose issuer is identical (C05). The whole flow then works with
    the issuer's path everywhere (iss included, C11)."""
    async with site(tmp_path, registration=True, mount_path="/oidc") as s:
        op = s.op
        origin = op.issuer.removesuffix("/oidc")
        assert op.issuer == f"{origin}/oidc"
        authorizer = s.authorizer()
        response = await s.get_tools(authorizer)
        assert response.status_code == 200, response.text
        metadata_requests = [line for line in s.wire.lines() if "/.well-known/" in line][1:]
        discovery = await authorizer.discover(s.url)
    assert metadata_requests == [
        f"GET {origin}{AS_WELL_KNOWN}/oidc",
        f"GET {origin}{OIDC_WELL_KNOWN}/oidc",
        f"GET {op.issuer}{OIDC_WELL_KNOWN}",
    ]
    assert discovery.issuer == op.issuer
    assert discovery.authorization_server.url == f"{op.issuer}{OIDC_WELL_KNOWN}"
    assert [(t.step, t.ok) for t in discovery.trace.steps if t.step == "issuer"] == [
        ("issuer", True)
    ]
    assert s.user.opened[0].startswith(f"{op.issuer}/auth?")
    assert s.user.response_params()["iss"] == [op.issuer]


async def test_c04_an_openid_only_provider_is_found_at_the_root_openid_configuration(
    tmp_path: Path,
) -> None:
    """A provider that serves only OpenID Connect Discovery (no RFC 8414 document): for an
    issuer without a path the second root form is tried after the first (C04)."""
    async with site(tmp_path, registration=True, well_known=["openid-configuration"]) as s:
        response = await s.get_tools(s.authorizer())
        assert response.status_code == 200, response.text
        op = s.op
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{op.issuer}{AS_WELL_KNOWN}")).status_code == 404
        assert [line for line in s.wire.lines() if "/.well-known/" in line][1:] == [
            f"GET {op.issuer}{AS_WELL_KNOWN}",
            f"GET {op.issuer}{OIDC_WELL_KNOWN}",
        ]


async def test_c05_a_resource_naming_the_issuer_with_a_trailing_slash_is_refused(
    tmp_path: Path,
) -> None:
    """The resource's metadata names ``http://127.0.0.1:<port>/`` while the provider's issuer
    has no trailing slash: not identical, so its metadata is not used (RFC 8414 §3.3) and no
    browser is opened."""
    async with site(
        tmp_path, registration=True, authorization_servers=lambda op: [op.issuer + "/"]
    ) as s:
        with pytest.raises(IssuerMismatch) as caught:
            await s.get_tools(s.authorizer(open_url=never_open))
    assert f"says issuer '{s.op.issuer}', not '{s.op.issuer}/'" in str(caught.value)
    assert s.user.opened == []
    assert not [r for r in s.wire.sent if r.method == "POST"]


@pytest.mark.parametrize("answer", ["code", "error"])
async def test_c11_an_authorization_response_from_another_provider_is_discarded(
    tmp_path: Path, answer: str
) -> None:
    """A mix-up (RFC 9207 §1): the browser ends up at another real provider, where the same
    client_id exists, and its genuine authorization response (the request's own state, iss
    naming that provider) reaches the client. The iss is not the issuer the request was sent
    to: the response is discarded, a code is redeemed nowhere, and an error (the other
    provider does not know the resource: invalid_target) is not reported as the answer."""
    port = free_port()
    known = [resource(f"http://127.0.0.1:{port}/mcp")] if answer == "code" else []
    async with (
        oidc_provider(resources=known, clients=[public_client("app")]) as other,
        site(tmp_path, clients=[public_client("app")], port=port) as s,
    ):

        async def misled(url: str) -> None:
            endpoint = s.op.authorization_endpoint
            assert url.startswith(endpoint + "?")
            await s.user(other.authorization_endpoint + url.removeprefix(endpoint))

        pre = PreRegisteredClient(issuer=s.op.issuer, client_id="app")
        with pytest.raises(IssuerResponseMismatch) as caught:
            await s.get_tools(s.authorizer(pre_registered=[pre], open_url=misled))
        token_requests = [r for r in s.wire.sent if r.method == "POST"]
    response = s.user.response_params()
    assert response["iss"] == [other.issuer]
    assert response["state"] == s.user.params()["state"]
    if answer == "code":
        assert "code" in response
    else:
        assert response["error"] == ["invalid_target"]
    assert str(caught.value) == (
        f"the authorization response came with iss {other.issuer!r}, not the issuer the request "
        f"was sent to ({s.op.issuer!r}); discarded as a possible mix-up attack (RFC 9207 §2.4)"
    )
    assert token_requests == []
    assert s.recorder.statuses == [401]


async def test_c06_a_pre_registered_client_is_used_before_dcr(tmp_path: Path) -> None:
    """The provider offers DCR, but a pre-registered public client for exactly its issuer is
    configured: that one is used (C06) and nothing is registered."""
    async with site(tmp_path, registration=True, clients=[public_client("app")]) as s:
        pre = PreRegisteredClient(issuer=s.op.issuer, client_id="app")
        response = await s.get_tools(s.authorizer(pre_registered=[pre]))
        assert response.status_code == 200, response.text
        assert not s.wire.posts(s.op.metadata["registration_endpoint"])
        [token] = s.wire.posts(s.op.token_endpoint)
        stored_client = await FileStorage(s.storage_path).get_client(s.op.issuer)
    assert s.user.params()["client_id"] == ["app"]
    assert form(token)["client_id"] == ["app"]
    assert form(token)["resource"] == [s.url]
    assert stored_client is None
    assert response.json()["client_id"] == "app"


async def test_c03_c09_credentials_of_one_provider_are_not_used_at_another(
    tmp_path: Path,
) -> None:
    """The resource lists two providers; the client prefers the second (RFC 9728 §7.6), for
    which it has no credentials: it registers there by DCR rather than presenting the client_id
    pre-registered at the first (MCP "Authorization Server Binding")."""
    async with (
        oidc_provider(clients=[public_client("app")]) as first,
        site(
            tmp_path, registration=True, authorization_servers=lambda op: [first.issuer, op.issuer]
        ) as s,
    ):
        pre = PreRegisteredClient(issuer=first.issuer, client_id="app")
        authorizer = s.authorizer(pre_registered=[pre], preferred_issuers=[s.op.issuer])
        response = await s.get_tools(authorizer)
        assert response.status_code == 200, response.text
        assert not any(line.startswith(f"GET {first.issuer}") for line in s.wire.lines())
        [reg] = s.wire.posts(s.op.metadata["registration_endpoint"])
        client = await FileStorage(s.storage_path).get_client(s.op.issuer)
    assert client is not None and client.source == "dcr"
    assert s.user.opened[0].startswith(s.op.authorization_endpoint)
    assert s.user.params()["client_id"] == [client.client_id] != ["app"]
    assert reg.headers.get("authorization") is None


# -- refresh (C16) -------------------------------------------------------------------------------


@pytest.mark.parametrize("dpop", ["never", "auto"])
async def test_c16_refresh_token_is_used_after_expiry_and_after_a_restart(
    tmp_path: Path, dpop: str
) -> None:
    """With a provider that issues refresh tokens to clients allowed the grant: once the access
    token has expired (the client's clock moved past it), the next request is authorized by a
    refresh (OAuth 2.1 §4.3, with ``resource``, RFC 8707 §2.2), without a browser, in this
    process and in a new one over the same token file. The provider rotates a public client's
    Bearer refresh token: every refresh uses the newest one (reusing a rotated one would revoke
    the grant). With DPoP (``auto``: oidc-provider and the middleware both take it) the refresh
    token is bound to the client's key instead (RFC 9449 §5) and not rotated."""
    now = [0.0]
    async with site(tmp_path, registration=True, refresh_tokens="always") as s:
        first = s.authorizer(clock=lambda: now[0], dpop=dpop)
        now[0] = 1_000.0
        response = await s.get_tools(first)
        assert response.status_code == 200, response.text
        storage = FileStorage(s.storage_path)
        before = await storage.get_tokens(s.url, s.op.issuer)
        assert before is not None and before.refresh_token is not None
        assert before.expires_at == 1_000.0 + 3600
        s.wire.clear()
        now[0] = 1_000.0 + 3600 + 1  # expired
        again = await s.get_tools(first)
        assert again.status_code == 200, again.text
        middle = await storage.get_tokens(s.url, s.op.issuer)
        assert s.wire.lines() == [f"POST {s.op.token_endpoint}"]
        refresh = form(s.wire.sent[0])
        # A new process an hour later: the stored refresh token again, no browser.
        s.wire.clear()
        later = [now[0] + 3600 + 1]
        second = s.authorizer(clock=lambda: later[0], open_url=never_open, dpop=dpop)
        third = await s.get_tools(second)
        assert third.status_code == 200, third.text
        after = await storage.get_tokens(s.url, s.op.issuer)
        assert s.wire.lines() == [f"POST {s.op.token_endpoint}"]
    assert refresh["grant_type"] == ["refresh_token"]
    assert refresh["refresh_token"] == [before.refresh_token]
    assert refresh["resource"] == [s.url]
    assert len(s.user.opened) == 1
    assert middle is not None and after is not None
    assert len({before.access_token, middle.access_token, after.access_token}) == 3
    assert form(s.wire.sent[0])["refresh_token"] == [middle.refresh_token]
    assert s.recorder.statuses == [401, 200, 200, 200]
    if dpop == "never":
        assert middle.refresh_token not in (None, before.refresh_token)  # rotated
        assert before.dpop_jkt is None
        scheme = "Bearer"
    else:
        # Bound to the client's DPoP key (RFC 9449 §5), so oidc-provider keeps it instead of
        # rotating it (OAuth 2.1 §4.3.1: sender-constrained or rotated); the same key,
        # reloaded from the token file by the new process, proves it again.
        assert before.dpop_jkt is not None
        assert middle.dpop_jkt == after.dpop_jkt == before.dpop_jkt
        assert middle.refresh_token == before.refresh_token
        scheme = "DPoP"
    assert [auth for _, auth in s.recorder.seen[1:]] == [
        f"{scheme} {t.access_token}" for t in (before, middle, after)
    ]


async def test_c16_without_a_refresh_token_an_expired_login_is_done_again(
    tmp_path: Path,
) -> None:
    """oidc-provider's own rule (no prompt=consent, so offline_access is dropped): no refresh
    token. The client does not assume one (C16): after expiry it sends no stale token, gets the
    401 and authorizes again (the provider's session makes it quick)."""
    now = [1_000.0]
    async with site(tmp_path, registration=True) as s:
        authorizer = s.authorizer(clock=lambda: now[0])
        assert (await s.get_tools(authorizer)).status_code == 200
        now[0] += 3600 + 1
        response = await s.get_tools(authorizer)
        assert response.status_code == 200, response.text
    assert s.recorder.statuses == [401, 200, 401, 200]
    assert s.recorder.seen[2][1] is None  # the expired token was not sent
    assert len(s.user.opened) == 2


# -- machines: client credentials ----------------------------------------------------------------


async def test_client_credentials_with_client_secret_basic(tmp_path: Path) -> None:
    """A machine client pre-registered at the provider (OAuth 2.1 §4.2): no browser, Basic
    authentication (RFC 6749 §2.3.1), ``resource`` and the challenge's scope in the request; the
    provider's JWT names the client as subject."""
    robot = confidential_client("robot", "robot-secret-0123456789")
    async with site(tmp_path, clients=[robot]) as s:
        pre = PreRegisteredClient(
            issuer=s.op.issuer,
            client_id="robot",
            client_secret="robot-secret-0123456789",
            grant_type="client_credentials",
        )
        response = await s.get_tools(s.authorizer(pre_registered=[pre], open_url=never_open))
        assert response.status_code == 200, response.text
        [token] = s.wire.posts(s.op.token_endpoint)
    assert token.headers["authorization"] == "Basic cm9ib3Q6cm9ib3Qtc2VjcmV0LTAxMjM0NTY3ODk="
    assert form(token) == {
        "grant_type": ["client_credentials"],
        "resource": [s.url],
        "scope": ["mcp:tools"],
    }
    assert response.json()["subject"] == "robot"
    assert response.json()["scopes"] == ["mcp:tools"]


def _key(alg: str) -> tuple[str, dict[str, Any]]:
    """A private key in PEM and its public JWK."""
    key: ECKey | RSAKey | OKPKey
    if alg == "ES256":
        key = ECKey.generate_key("P-256")
    elif alg == "RS256":
        key = RSAKey.generate_key(2048)
    else:
        key = OKPKey.generate_key("Ed25519")
    pem = key.as_pem(private=True).decode()
    public = key.as_dict(private=False)
    return pem, {**public, "kid": f"{alg.lower()}-1", "alg": "EdDSA" if alg == "Ed25519" else alg}


@pytest.mark.parametrize("alg", ["ES256", "RS256", "Ed25519"])
async def test_client_credentials_with_private_key_jwt(tmp_path: Path, alg: str) -> None:
    """private_key_jwt (RFC 7523 §2.2): a client assertion signed with the client's key, whose
    public JWK the provider holds; ``aud`` the issuer, which the provider accepts."""
    pem, jwk = _key(alg)
    robot = {
        "client_id": "signer",
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": [],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [jwk]},
    }
    async with site(tmp_path, clients=[robot]) as s:
        pre = PreRegisteredClient(
            issuer=s.op.issuer,
            client_id="signer",
            private_key_pem=pem,
            signing_alg=alg,
            key_id=jwk["kid"],
            grant_type="client_credentials",
        )
        response = await s.get_tools(s.authorizer(pre_registered=[pre], open_url=never_open))
        assert response.status_code == 200, response.text
        [token] = s.wire.posts(s.op.token_endpoint)
    sent = form(token)
    assert sent["client_assertion_type"] == [
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    ]
    assert sent["resource"] == [s.url]
    assert "authorization" not in token.headers
    assert response.json()["subject"] == "signer"


# -- the official mcp SDK client -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_c13_c15_the_mcp_sdk_client_calls_tools_with_oidc_provider_as_the_as(
    tmp_path: Path, mode: str
) -> None:
    """The SDK's ``Client`` over :func:`connect` reaches bastion's demo MCP server behind the
    middleware: the 401 leads to DCR and a log-in at the provider, tools are listed and called;
    ``add_note`` needs notes:write, so its 403 insufficient_scope leads to one step-up for the
    union of scopes, which the provider grants after a new consent (C15)."""
    policy = ScopePolicy(default=["mcp:tools"], tools={"add_note": ["mcp:tools", "notes:write"]})
    async with (
        site(tmp_path, app=demo_app(), policy=policy, registration=True) as s,
        connect(s.url, auth=s.authorizer(), mode=mode) as client,
    ):
        tools = await client.list_tools()
        assert {"echo", "add", "list_notes", "add_note"} <= {t.name for t in tools.tools}
        added = await client.call_tool("add", {"a": 2, "b": 3})
        assert added.is_error is False
        assert added.structured_content == {"result": 5.0}
        noted = await client.call_tool("add_note", {"text": "hello"})
        assert noted.is_error is False, noted
        notes = await client.call_tool("list_notes", {})
        assert notes.is_error is False
        tokens = await FileStorage(s.storage_path).get_tokens(s.url, s.op.issuer)
    requested = [set(s.user.params(i)["scope"][0].split()) for i in range(len(s.user.opened))]
    assert requested == [
        {"mcp:tools", "offline_access"},
        {"mcp:tools", "notes:write", "offline_access"},
    ]
    assert all(s.user.params(i)["resource"] == [s.url] for i in range(2))
    assert s.recorder.statuses.count(403) == 1  # one step-up, then the call went through
    assert all(
        (auth or "").startswith("DPoP ") for status, auth in s.recorder.seen if status != 401
    )
    assert tokens is not None and set(tokens.effective_scopes) >= {"mcp:tools", "notes:write"}
    assert "hello" in str(notes.structured_content)
