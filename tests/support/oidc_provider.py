"""node-oidc-provider (npm ``oidc-provider``) as a real third-party authorization server.

``tests/support/oidc_provider.mjs`` runs under the Node 22 of ``scripts/setup-node.sh``, named by
``BASTION_NODE`` (``.cache/test-env`` exports it). Without it the tests that need the provider
skip, unless ``BASTION_REQUIRE_NODE=1``, where they fail::

    async with oidc_provider(resources=[resource(R)]) as op:
        token = await op.client_credentials(resource=R, scope="mcp:tools")

What the provider is (see the .js file for the exact options): issuer ``http://127.0.0.1:<port>``
(plus ``mount_path`` when given); client_credentials, introspection (RFC 7662), revocation
(RFC 7009), resource indicators (RFC 8707: only the configured resources; JWT access tokens per
RFC 9068 signed ES256 by default, or opaque ones, which alone are introspectable); no Dynamic
Client Registration unless ``registration=True``; static clients (by default a confidential
``service`` client and a public native ``app`` client with PKCE and loopback redirect URIs, any
port); the development login and consent pages (any login name is an account, the password is
ignored; see :func:`log_in` and :class:`BrowserUser`); ES256 and RS256 keys made at start; both
discovery documents (RFC 8414 and OpenID Connect) below the issuer unless ``well_known`` names
fewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from bastion.oauth import pkce

SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
START_TIMEOUT = 30.0  # a start takes ~0.3 s; generous for a loaded CI machine
STOP_TIMEOUT = 5.0
DEFAULT_SCOPE = "mcp:tools files:write"
SERVICE_CLIENT = "service"
PUBLIC_CLIENT = "app"
LOOPBACK_REDIRECT = "http://127.0.0.1/callback"  # any port matches (RFC 8252 §7.3)
_FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')
_FIRST = object()  # default_resource: the first resource
WELL_KNOWN = ("oauth-authorization-server", "openid-configuration")


def resource(
    uri: str, scope: str = DEFAULT_SCOPE, *, format: str = "jwt", alg: str = "ES256"
) -> dict[str, Any]:
    """A resource server the provider issues tokens for (``format``: "jwt" or "opaque")."""
    return {"uri": uri, "scope": scope, "format": format, "alg": alg}


def confidential_client(
    client_id: str = SERVICE_CLIENT,
    secret: str | None = None,
    *,
    resource_scope: str | None = None,
    grant_types: Sequence[str] = ("client_credentials",),
) -> dict[str, Any]:
    """A confidential client (client_secret_basic); ``resource_scope``: the most it may get of
    any resource's scopes (the provider's own ``scope`` metadata only holds OpenID scopes)."""
    metadata: dict[str, Any] = {
        "client_id": client_id,
        "client_secret": secret or secrets.token_urlsafe(24),
        "grant_types": list(grant_types),
        "response_types": ["code"] if "authorization_code" in grant_types else [],
        "redirect_uris": [LOOPBACK_REDIRECT] if "authorization_code" in grant_types else [],
        "token_endpoint_auth_method": "client_secret_basic",
    }
    if resource_scope is not None:
        metadata["resource_scope"] = resource_scope
    return metadata


def public_client(
    client_id: str = PUBLIC_CLIENT, redirect_uris: Sequence[str] = (LOOPBACK_REDIRECT,)
) -> dict[str, Any]:
    """A public native client: authorization code with PKCE (S256, required for it), refresh
    tokens, loopback redirect URIs matched on any port."""
    return {
        "client_id": client_id,
        "application_type": "native",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "redirect_uris": list(redirect_uris),
    }


@dataclass(frozen=True)
class OidcProvider:
    """A running provider: its issuer, RFC 8414 metadata, configuration and stderr log."""

    issuer: str
    metadata: dict[str, Any]
    config: dict[str, Any]
    log_path: Path = field(repr=False)

    @property
    def token_endpoint(self) -> str:
        return str(self.metadata["token_endpoint"])

    @property
    def jwks_uri(self) -> str:
        return str(self.metadata["jwks_uri"])

    @property
    def introspection_endpoint(self) -> str:
        return str(self.metadata["introspection_endpoint"])

    @property
    def revocation_endpoint(self) -> str:
        return str(self.metadata["revocation_endpoint"])

    @property
    def authorization_endpoint(self) -> str:
        return str(self.metadata["authorization_endpoint"])

    def client(self, client_id: str = SERVICE_CLIENT) -> dict[str, Any]:
        """The configured metadata of ``client_id`` (with its ``client_secret``)."""
        for client in self.config["clients"]:
            if client["client_id"] == client_id:
                return dict(client)
        raise KeyError(client_id)

    def log(self) -> str:
        """What the provider wrote on stderr so far (warnings, grant and server errors)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(the provider has stopped; its log is gone)"

    async def client_credentials(
        self,
        *,
        resource: str | None = None,
        scope: str | None = None,
        client_id: str = SERVICE_CLIENT,
    ) -> httpx.Response:
        """POST a client_credentials token request (OAuth 2.1 §4.2, RFC 8707 ``resource``)."""
        client = self.client(client_id)
        form = {"grant_type": "client_credentials"}
        if resource is not None:
            form["resource"] = resource
        if scope is not None:
            form["scope"] = scope
        async with httpx.AsyncClient(timeout=10) as http:
            return await http.post(
                self.token_endpoint,
                data=form,
                auth=(client["client_id"], client["client_secret"]),
            )


def node_binary() -> str:
    """BASTION_NODE, or skip (fail when BASTION_REQUIRE_NODE=1) with how to get it."""
    path = os.environ.get("BASTION_NODE", "")
    if path and os.access(path, os.X_OK):
        return path
    why = f"BASTION_NODE={path} is not executable" if path else "BASTION_NODE is not set"
    message = (
        f"{why}: node-oidc-provider tests need Node 22; run `make test` (scripts/test-setup.sh) "
        "or `bash scripts/setup-node.sh && export BASTION_NODE=$PWD/.cache/node/bin/node22`"
    )
    if os.environ.get("BASTION_REQUIRE_NODE") == "1":
        pytest.fail(message + " (BASTION_REQUIRE_NODE=1)")
    pytest.skip(message)


@contextlib.asynccontextmanager
async def oidc_provider(
    *,
    resources: Sequence[str | Mapping[str, Any]] = (),
    clients: Sequence[Mapping[str, Any]] | None = None,
    default_resource: Any = _FIRST,
    accounts: Mapping[str, Mapping[str, Any]] | None = None,
    ttl: Mapping[str, int] | None = None,
    mount_path: str = "",
    well_known: Sequence[str] = WELL_KNOWN,
    registration: bool = False,
    refresh_tokens: str = "offline_access",
) -> AsyncIterator[OidcProvider]:
    """Start node-oidc-provider on 127.0.0.1 (any free port) for the block.

    ``resources``: URIs (scopes ``DEFAULT_SCOPE``, ES256 JWTs) or :func:`resource` dicts;
    ``clients``: default a :func:`confidential_client` and a :func:`public_client`;
    ``default_resource``: what a request without ``resource`` gets (default the first
    resource; None: no audience, an opaque token); ``accounts``: claims (email, name, groups)
    per login name; ``ttl``: lifetimes in seconds by oidc-provider model name; ``mount_path``:
    the issuer's path (e.g. "/oidc"; nothing is served outside it); ``well_known``: the
    discovery documents served below the issuer; ``registration``: open Dynamic Client
    Registration (RFC 7591); ``refresh_tokens``: "offline_access" (oidc-provider's rule: only
    with offline_access granted, which it drops unless prompt=consent) or "always" (whenever the
    client may use the refresh_token grant).
    """
    node = node_binary()
    specs = [resource(r) if isinstance(r, str) else dict(r) for r in resources]
    if default_resource is _FIRST:
        default_resource = specs[0]["uri"] if specs else None
    config: dict[str, Any] = {
        "resources": specs,
        "defaultResource": default_resource,
        "clients": [dict(c) for c in clients]
        if clients is not None
        else [confidential_client(), public_client()],
        "accounts": dict(accounts or {}),
        "ttl": dict(ttl or {}),
        "mountPath": mount_path,
        "wellKnown": list(well_known),
        "registration": registration,
        "refreshTokens": refresh_tokens,
        "watchStdin": True,  # the provider exits if this process dies without stopping it
    }
    fd, log_name = tempfile.mkstemp(prefix="oidc-provider-", suffix=".log")
    os.close(fd)
    log_path = Path(log_name)
    # O_APPEND: the child's writes always land at the end while the test reads the file.
    with log_path.open("ab") as log_file:
        process = await asyncio.create_subprocess_exec(
            node,
            str(SCRIPT),
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log_file,
        )
    try:
        issuer = await _wait_ready(process, log_path)
        async with httpx.AsyncClient(timeout=10) as http:
            # The first document served, below the issuer (where oidc-provider serves both).
            response = await http.get(f"{issuer}/.well-known/{well_known[0]}")
        response.raise_for_status()
        yield OidcProvider(issuer, response.json(), config, log_path)
    except BaseException:
        # pytest shows captured stderr with the failure: the provider's side of the story.
        sys.stderr.write("oidc-provider log:\n" + log_path.read_text(errors="replace"))
        raise
    finally:
        await _stop(process)
        log_path.unlink(missing_ok=True)


async def _wait_ready(process: asyncio.subprocess.Process, log_path: Path) -> str:
    assert process.stdout is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while (remaining := deadline - loop.time()) > 0:
        try:
            line = await asyncio.wait_for(process.stdout.readline(), remaining)
        except TimeoutError:
            break
        if not line:
            await process.wait()
            raise RuntimeError(
                f"oidc_provider.mjs exited ({process.returncode}) before it was ready:\n"
                + log_path.read_text(errors="replace")
            )
        text = line.decode(errors="replace").strip()
        if text.startswith("READY "):
            return text.removeprefix("READY ")
    raise RuntimeError(
        f"oidc_provider.mjs was not ready within {START_TIMEOUT} s:\n"
        + log_path.read_text(errors="replace")
    )


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Close stdin (the provider exits), then SIGTERM, then SIGKILL: each wait bounded."""
    if process.stdin is not None:
        process.stdin.close()
    for step in (None, process.terminate, process.kill):
        if process.returncode is not None:
            break
        if step is not None:
            with contextlib.suppress(ProcessLookupError):
                step()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
    if process.stdout is not None:
        await process.stdout.read()  # at EOF now: lets the transport close cleanly


async def log_in(
    op: OidcProvider,
    http: httpx.AsyncClient,
    *,
    login: str = "alice",
    client_id: str = PUBLIC_CLIENT,
    redirect_uri: str = "http://127.0.0.1:53682/callback",
    resource: str | None = None,
    scope: str = "mcp:tools",
    extra: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Drive the authorization code flow with PKCE through the provider's development pages,
    then exchange the code; return the token response.

    The pages (devInteractions): GET /auth redirects to /interaction/<uid>, a form posting
    ``prompt=login``, ``login`` (any name: it becomes ``sub``) and ``password`` (ignored) to the
    same URL; then a consent form posting ``prompt=consent``; each answer redirects back to
    /auth/<uid>, and finally to ``redirect_uri`` with ``code``, ``state`` and ``iss``. ``http``
    must keep cookies (the interaction is bound to them) and must not follow redirects.
    ``offline_access`` (a refresh token) is dropped unless ``extra`` has ``prompt=consent``
    (OpenID Connect Core §11, as oidc-provider applies it).
    """
    verifier = pkce.new_verifier()
    state = secrets.token_urlsafe(8)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "code_challenge": pkce.s256(verifier),
        "code_challenge_method": "S256",
    }
    if resource is not None:
        params["resource"] = resource
    params.update(extra or {})
    response = await http.get(op.authorization_endpoint, params=params)
    location = await _interact(http, response, redirect_uri, login)
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query.get("state") == state, query
    assert "code" in query, query
    token_form = {
        "grant_type": "authorization_code",
        "code": query["code"],
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
        "client_id": client_id,
    }
    if resource is not None:
        token_form["resource"] = resource
    token = await http.post(op.token_endpoint, data=token_form)
    assert token.status_code == 200, token.text
    body: dict[str, Any] = token.json()
    return body


async def _interact(
    http: httpx.AsyncClient, response: httpx.Response, redirect_uri: str, login: str
) -> str:
    """Follow the provider's redirects from the authorization endpoint's ``response``, signing in
    as ``login`` and consenting on its development pages, up to the redirect to
    ``redirect_uri``; return that URL (the authorization response) without requesting it."""
    for _ in range(10):  # /auth -> login -> /auth/<uid> -> consent -> /auth/<uid> -> redirect_uri
        assert response.status_code in (302, 303), (response.status_code, response.text)
        location = urljoin(str(response.url), response.headers["location"])
        if location.startswith(redirect_uri):
            return location
        page = await http.get(location)
        if page.status_code != 200:
            response = page
            continue
        action = _FORM_ACTION.search(page.text)
        assert action, page.text
        form = (
            {"prompt": "login", "login": login, "password": "any"}
            if 'name="login"' in page.text
            else {"prompt": "consent"}
        )
        response = await http.post(urljoin(location, action.group(1)), data=form)
    raise AssertionError("the login flow did not reach the redirect URI in 10 steps")


async def authorization_response(
    http: httpx.AsyncClient, url: str, *, redirect_uri: str, login: str = "alice"
) -> dict[str, str]:
    """Open the authorization request ``url``, sign in as ``login`` and consent on the
    provider's development pages; the query of the redirect to ``redirect_uri`` (code, state,
    iss), which is not requested. ``http`` keeps cookies and does not follow redirects."""
    location = await _interact(http, await http.get(url), redirect_uri, login)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


class OidcProviderUser:
    """A scripted user at a browser for the provider's development pages: the ``open_url`` of
    bastion's client (``Authorizer(open_url=user)``).

    ``await user(url)`` opens the authorization URL, signs in as ``login`` and consents (the
    cookies are kept between calls, a browser session), then requests the authorization
    response at the client's loopback ``redirect_uri``. ``opened`` holds the authorization URLs,
    ``responses`` the authorization responses (the redirects back, with code, state and iss).
    """

    def __init__(self, login: str = "alice") -> None:
        self.login = login
        self.opened: list[str] = []
        self.responses: list[str] = []
        self._browser = httpx.AsyncClient(timeout=10, follow_redirects=False)

    def params(self, index: int = -1) -> dict[str, list[str]]:
        """The query parameters of an opened authorization URL."""
        return parse_qs(urlsplit(self.opened[index]).query, keep_blank_values=True)

    def response_params(self, index: int = -1) -> dict[str, list[str]]:
        """The query parameters of an authorization response."""
        return parse_qs(urlsplit(self.responses[index]).query, keep_blank_values=True)

    async def aclose(self) -> None:
        await self._browser.aclose()

    async def __call__(self, url: str) -> None:
        self.opened.append(url)
        [redirect_uri] = parse_qs(urlsplit(url).query)["redirect_uri"]
        location = await _interact(
            self._browser, await self._browser.get(url), redirect_uri, self.login
        )
        self.responses.append(location)
        arrived = await self._browser.get(location)  # the client's loopback listener
        assert arrived.status_code == 200, arrived.text
