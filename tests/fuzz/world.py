"""The authorization server the fuzzers attack, with real fixtures so that they reach deep paths.

The app runs with its lifespan in an event loop of its own (``asyncio.Runner``), so that
hypothesis, which is synchronous, sends one request per example with ``world.send``. The world
holds a user, clients of every kind (a machine client with a secret, a confidential web client,
a public client, a ``private_key_jwt`` client with its key, a client of a Client ID Metadata
Document served in-process), unredeemed authorization codes, refresh and access tokens; the
strategies mix these real values into what they generate.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa
from joserfc import jwt
from joserfc.jwk import ECKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.authserver.admin import add_client
from bastion.authserver.context import AuthServer
from bastion.config import QuotaSettings, Settings
from bastion.store import schema
from tests.fuzz.strategies import Spec, basic
from tests.support.asgi import running
from tests.support.clients import machine_client
from tests.support.flow import REDIRECT_URI, add_user, authorize, register

T = TypeVar("T")
RESOURCE = "http://localhost:9001/mcp"
DOCUMENT_ID = "https://client.example/app.json"
WEB_REDIRECT = "https://web.example/cb?x=1"
DYNAMIC_REDIRECT = "https://dynamic.example/cb"
# The tables whose row counts the fuzzers watch ("nothing half-written").
WATCHED = [
    schema.clients,
    schema.authorization_requests,
    schema.authorization_codes,
    schema.token_families,
    schema.refresh_tokens,
    schema.family_access_tokens,
    schema.revoked_access_tokens,
    schema.access_rules,
    schema.registration_tokens,
    schema.sessions,
    schema.consents,
    schema.used_assertions,
]

# What a refused request must never add to: grants, tokens, clients, rules, sessions, consents.
GRANTS_AND_CLIENTS = frozenset(
    {
        "clients",
        "authorization_codes",
        "token_families",
        "refresh_tokens",
        "family_access_tokens",
        "access_rules",
        "registration_tokens",
        "sessions",
        "consents",
    }
)


def documents_app() -> Starlette:
    """The host of a Client ID Metadata Document, reached through ASGITransport."""

    async def app_json(request: Request) -> Response:
        return JSONResponse(
            {
                "client_id": DOCUMENT_ID,
                "client_name": "Document client",
                "redirect_uris": [REDIRECT_URI],
            }
        )

    async def broken(request: Request) -> Response:
        return Response(b"{not json", media_type="application/json")

    return Starlette(routes=[Route("/app.json", app_json), Route("/broken.json", broken)])


@dataclass(frozen=True)
class Credentials:
    client_id: str
    secret: str

    @property
    def basic(self) -> bytes:
        return basic(self.client_id, self.secret)


@dataclass
class AuthWorld:
    """The running authorization server and its fixtures."""

    runner: asyncio.Runner
    client: httpx.AsyncClient
    settings: Settings
    backend: str
    machine: Credentials  # client_credentials, client_secret_basic, introspects RESOURCE
    web: Credentials  # authorization_code + refresh_token, client_secret_post
    public_id: str  # dynamically registered, token_endpoint_auth_method none
    signer_id: str  # private_key_jwt, client_credentials
    key: ECKey
    codes: list[tuple[str, str]] = field(default_factory=list)  # (code, verifier), unredeemed
    refresh_tokens: list[str] = field(default_factory=list)
    access_tokens: list[str] = field(default_factory=list)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    # Every client that may authorize, by id: its registered redirect URIs.
    redirects: dict[str, list[str]] = field(default_factory=dict)
    _count: sa.Select[Any] | None = None
    _last: dict[str, int] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def bastion(self) -> AuthServer:
        found: AuthServer = self.client.app.state.bastion  # type: ignore[attr-defined]
        return found

    @property
    def bastion_app(self) -> Starlette:
        """The AS app itself (for another in-process client, such as a JWKS fetcher)."""
        app: Starlette = self.client.app  # type: ignore[attr-defined]
        return app

    @property
    def issuer(self) -> str:
        return self.settings.issuer

    def run(self, work: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await work

        return self.runner.run(wrapped())

    def send(self, spec: Spec) -> httpx.Response:
        """Send one request and read the whole answer."""
        self.client.cookies.clear()  # only the cookies a case sends itself
        response = self.run(
            self.client.request(spec.method, spec.path, headers=spec.headers, content=spec.content)
        )
        self.outcomes[outcome(response)] += 1
        return response

    def counts(self) -> dict[str, int]:
        """Rows of every watched table, in one query."""
        if self._count is None:
            self._count = sa.select(
                *(
                    sa.select(sa.func.count()).select_from(t).scalar_subquery().label(t.name)
                    for t in WATCHED
                )
            )
        query = self._count

        async def read() -> dict[str, int]:
            async with self.bastion.db.connect() as conn:
                row = (await conn.execute(query)).one()
            return {t.name: int(v) for t, v in zip(WATCHED, row, strict=True)}

        return self.run(read())

    def changed(self) -> set[str]:
        """The watched tables whose row count changed since the last call."""
        now = self.counts()
        moved = {name for name, n in now.items() if self._last.get(name, n) != n}
        self._last = now
        return moved

    def assertion(self, **claims: Any) -> str:
        """A client assertion signed with the ``private_key_jwt`` client's key (RFC 7523)."""
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.signer_id,
            "sub": self.signer_id,
            "aud": self.issuer,
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
        }
        base.update(claims)
        body = {k: v for k, v in base.items() if v is not _DROP}
        return jwt.encode({"alg": "ES256", "kid": "fuzz"}, body, self.key)


def outcome(response: httpx.Response) -> str:
    """``status error`` of a response, for the summary of what the fuzzers reached."""
    error = ""
    if response.headers.get("content-type", "").startswith("application/json"):
        with contextlib.suppress(ValueError):
            body = response.json()
            error = body.get("error", "") if isinstance(body, dict) else ""
    elif response.status_code in (302, 303):
        error = "error" if "error=" in response.headers.get("location", "") else "redirect"
    return f"{response.status_code} {error}".strip()


_DROP = object()
DROP: Any = _DROP


async def _prepare(world: AuthWorld, *, codes: int, grants: int) -> None:
    """Register the public client, authorize as alice, keep codes and tokens."""
    client = world.client
    reg = await register(client)
    world.public_id = reg["client_id"]
    world.registrations.append(reg)
    # A web client that registered itself: its errors are shown, never redirected (L3).
    dynamic = await register(client, redirect_uris=[DYNAMIC_REDIRECT], application_type="web")
    world.registrations.append(dynamic)
    world.redirects = {
        world.public_id: [REDIRECT_URI],
        dynamic["client_id"]: [DYNAMIC_REDIRECT],
        world.web.client_id: [REDIRECT_URI, WEB_REDIRECT],
        DOCUMENT_ID: [REDIRECT_URI],
        world.machine.client_id: [],
    }
    for _ in range(codes + grants):
        done = await authorize(client, world.public_id)
        world.codes.append((done.params["code"], done.verifier))
    for code, verifier in world.codes[codes:]:
        response = await client.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
                "client_id": world.public_id,
            },
        )
        assert response.status_code == 200, response.text
        world.refresh_tokens.append(response.json()["refresh_token"])
        world.access_tokens.append(response.json()["access_token"])
    del world.codes[codes:]
    machine = await client.post(
        "/token",
        data={"grant_type": "client_credentials", "resource": RESOURCE},
        headers={"Authorization": world.machine.basic.decode()},
    )
    assert machine.status_code == 200, machine.text
    world.access_tokens.append(machine.json()["access_token"])
    client.cookies.clear()


# A run sends thousands of requests from one address to one server: the quotas (L9) are set far
# above that, so that every answer is the endpoint's own; tests/authserver/test_quotas.py tests
# the quotas themselves.
FUZZ_QUOTAS = QuotaSettings(
    registrations_per_address=10**9,
    registrations=10**9,
    pending_authorizations_per_address=10**9,
    pending_authorizations=10**9,
    cimd_fetches_per_address=10**9,
    cimd_fetches=10**9,
)


@contextlib.contextmanager
def auth_world(
    settings: Settings, backend: str, *, codes: int = 4, grants: int = 3
) -> Iterator[AuthWorld]:
    """Start the AS for ``settings`` with its fixtures; stop it afterwards."""
    settings = settings.model_copy(update={"quotas": FUZZ_QUOTAS})
    key = ECKey.generate_key("P-256", parameters={"kid": "fuzz"})
    with asyncio.Runner() as runner:
        runner.run(add_user(settings))

        async def clients() -> tuple[Credentials, Credentials, str]:
            machine = await machine_client(
                settings, client_id="machine", name="Machine", introspects=[RESOURCE]
            )
            web = await add_client(
                settings,
                client_id="web",
                name="Web",
                redirect_uris=[REDIRECT_URI, WEB_REDIRECT],
                confidential=True,
                grant_types=["authorization_code", "refresh_token"],
                scope="mcp:tools",
                auth_method="client_secret_post",
            )
            signer = await add_client(
                settings,
                client_id="signer",
                name="Signer",
                redirect_uris=[],
                confidential=True,
                grant_types=["client_credentials"],
                scope="mcp:tools",
                resources=["*"],
                jwks={"keys": [key.as_dict(private=False)]},
            )
            assert web.secret
            return (
                Credentials("machine", machine.secret),
                Credentials("web", web.secret),
                signer.client.client_id,
            )

        machine, web, signer_id = runner.run(clients())
        transport = httpx.ASGITransport(app=documents_app())
        stack = contextlib.AsyncExitStack()
        client = runner.run(stack.enter_async_context(running(settings, cimd_transport=transport)))
        world = AuthWorld(runner, client, settings, backend, machine, web, "", signer_id, key)
        try:
            runner.run(_prepare(world, codes=codes, grants=grants))
            yield world
        finally:
            runner.run(stack.aclose())


__all__ = [
    "DOCUMENT_ID",
    "DROP",
    "DYNAMIC_REDIRECT",
    "GRANTS_AND_CLIENTS",
    "RESOURCE",
    "WATCHED",
    "WEB_REDIRECT",
    "AuthWorld",
    "Credentials",
    "auth_world",
]
