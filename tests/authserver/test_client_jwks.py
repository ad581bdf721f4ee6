"""private_key_jwt clients with a jwks_uri (RFC 7591 §2, RFC 7523 §3): the key set is cached.

It used to be fetched on every token request, over any scheme. Now it is fetched once and kept
as its Cache-Control says (within bounds), fetched again at once when an assertion names a key
the cached set lacks (at most once per REFETCH_INTERVAL), and only over https (http on a
loopback host). The key sets are served by a real server on 127.0.0.1 that counts its fetches;
the authorization server runs in-process with a clock the test moves. Loopback fetches need
``cimd.allow_private_addresses`` (the SSRF guard refuses them otherwise, as one test shows).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from starlette.types import Receive, Scope, Send

from bastion.authserver import admin
from bastion.authserver.client_jwks import MIN_TTL, REFETCH_INTERVAL
from bastion.config import Settings
from bastion.oauth.client_metadata import ClientMetadata
from bastion.store import clients as client_rows
from bastion.store.clients import Client
from bastion.store.database import Database
from tests.authserver._tokens import RESOURCE, FakeClock, assert_error
from tests.support.asgi import running
from tests.support.live import serve

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class KeySetServer:
    """Serves one JWK Set at /jwks.json with the headers and status a test sets; counts GETs."""

    def __init__(self) -> None:
        self.base = ""
        self.keys: list[ECKey] = []
        self.headers: dict[str, str] = {}
        self.status = 200
        self.fetches = 0

    @property
    def uri(self) -> str:
        return f"{self.base}/jwks.json"

    def publish(self, *kids: str) -> dict[str, ECKey]:
        """Publish new keys with these kids (replacing the old ones); the private halves."""
        made = {
            kid: ECKey.generate_key("P-256", parameters={"kid": kid, "alg": "ES256"}, private=True)
            for kid in kids
        }
        self.keys = list(made.values())
        return made

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.fetches += 1
        body = json.dumps({"keys": [k.as_dict(private=False) for k in self.keys]}).encode()
        headers = [(b"content-type", b"application/jwk-set+json")]
        headers += [(k.encode(), v.encode()) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def keyset() -> AsyncIterator[KeySetServer]:
    server = KeySetServer()
    async with serve(server) as base:
        server.base = base
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def authserver(
    make_settings: Callable[..., Settings], clock: FakeClock
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    """The AS in-process with the test's clock, allowed to fetch from loopback."""
    settings = make_settings(cimd={"allow_private_addresses": True})
    async with running(settings, clock=clock) as client:
        yield client, settings


async def keyed_client(settings: Settings, jwks_uri: str) -> str:
    """A machine client an operator registered with a jwks_uri (bastion clients add)."""
    made = await admin.add_client(
        settings,
        client_id=None,
        name="Key client",
        redirect_uris=[],
        confidential=True,
        grant_types=["client_credentials"],
        scope=None,
        jwks_uri=jwks_uri,
        resources=["*"],
    )
    return made.client.client_id


def assertion(client_id: str, key: ECKey, issuer: str, now: int) -> str:
    """An RFC 7523 §3 client assertion signed by ``key`` (its kid in the header)."""
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": issuer,
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)


async def token(
    http: httpx.AsyncClient, settings: Settings, clock: FakeClock, client_id: str, key: ECKey
) -> httpx.Response:
    return await http.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "resource": RESOURCE,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(client_id, key, settings.issuer, clock.now),
        },
    )


async def test_the_key_set_is_fetched_once_for_many_token_requests(
    authserver: tuple[httpx.AsyncClient, Settings], clock: FakeClock, keyset: KeySetServer
) -> None:
    """Five token requests, one fetch (no cache headers: kept DEFAULT_TTL seconds)."""
    http, settings = authserver
    key = keyset.publish("k1")["k1"]
    client_id = await keyed_client(settings, keyset.uri)
    for _ in range(5):
        response = await token(http, settings, clock, client_id, key)
        assert response.status_code == 200, response.text
    assert keyset.fetches == 1


async def test_the_key_set_is_kept_for_its_max_age_within_bounds(
    authserver: tuple[httpx.AsyncClient, Settings], clock: FakeClock, keyset: KeySetServer
) -> None:
    """Cache-Control max-age=120: fetched again once 120 s have passed, not before. A max-age
    below MIN_TTL (or no-store) still keeps it MIN_TTL seconds."""
    http, settings = authserver
    key = keyset.publish("k1")["k1"]
    keyset.headers = {"cache-control": "max-age=120"}
    client_id = await keyed_client(settings, keyset.uri)
    assert (await token(http, settings, clock, client_id, key)).status_code == 200
    clock.advance(119)
    assert (await token(http, settings, clock, client_id, key)).status_code == 200
    assert keyset.fetches == 1
    keyset.headers = {"cache-control": "no-store"}
    clock.advance(1)
    assert (await token(http, settings, clock, client_id, key)).status_code == 200
    assert keyset.fetches == 2
    clock.advance(MIN_TTL - 1)
    assert (await token(http, settings, clock, client_id, key)).status_code == 200
    assert keyset.fetches == 2
    clock.advance(1)
    assert (await token(http, settings, clock, client_id, key)).status_code == 200
    assert keyset.fetches == 3


async def test_an_unknown_kid_fetches_the_set_again_at_most_once_per_interval(
    authserver: tuple[httpx.AsyncClient, Settings], clock: FakeClock, keyset: KeySetServer
) -> None:
    """A client that rotated its key is served at once (the set is fetched again for the new
    kid); made-up kids do not make the server fetch more than once per REFETCH_INTERVAL."""
    http, settings = authserver
    old = keyset.publish("k1")["k1"]
    client_id = await keyed_client(settings, keyset.uri)
    assert (await token(http, settings, clock, client_id, old)).status_code == 200
    new = keyset.publish("k2")["k2"]
    rotated = await token(http, settings, clock, client_id, new)
    assert rotated.status_code == 200, rotated.text
    assert keyset.fetches == 2
    stranger = ECKey.generate_key("P-256", parameters={"kid": "k3"}, private=True)
    for _ in range(3):
        refused = await token(http, settings, clock, client_id, stranger)
        assert_error(refused, 401, "invalid_client")
    assert keyset.fetches == 2
    clock.advance(REFETCH_INTERVAL)
    assert_error(await token(http, settings, clock, client_id, stranger), 401, "invalid_client")
    assert keyset.fetches == 3
    assert (await token(http, settings, clock, client_id, new)).status_code == 200
    assert keyset.fetches == 3


async def test_a_failed_fetch_is_invalid_client_and_tried_again_after_an_interval(
    authserver: tuple[httpx.AsyncClient, Settings], clock: FakeClock, keyset: KeySetServer
) -> None:
    """A key set that cannot be had authenticates nobody. The URL is not fetched again for
    REFETCH_INTERVAL (requests meanwhile are refused at once), then it is."""
    http, settings = authserver
    key = keyset.publish("k1")["k1"]
    client_id = await keyed_client(settings, keyset.uri)
    keyset.status = 503
    for _ in range(3):
        refused = await token(http, settings, clock, client_id, key)
        body = assert_error(refused, 401, "invalid_client")
        assert body["error_description"] == "could not fetch the client's jwks_uri"
    assert keyset.fetches == 1
    keyset.status = 200
    clock.advance(REFETCH_INTERVAL)
    assert (await token(http, settings, clock, client_id, key)).status_code == 200
    assert keyset.fetches == 2


async def test_loopback_key_sets_are_refused_by_the_ssrf_guard(
    make_settings: Callable[..., Settings], clock: FakeClock, keyset: KeySetServer
) -> None:
    """Without cimd.allow_private_addresses the fetch goes through the SSRF guard, which
    refuses loopback: invalid_client, and the server sees no request."""
    settings = make_settings()
    key = keyset.publish("k1")["k1"]
    async with running(settings, clock=clock) as http:
        client_id = await keyed_client(settings, keyset.uri)
        refused = await token(http, settings, clock, client_id, key)
    assert_error(refused, 401, "invalid_client")
    assert keyset.fetches == 0


async def register_keyed(app_client: httpx.AsyncClient, jwks_uri: str) -> httpx.Response:
    """POST /register (RFC 7591) of a private_key_jwt client with ``jwks_uri``."""
    return await app_client.post(
        "/register",
        json={
            "client_name": "Key client",
            "redirect_uris": ["https://app.example.com/cb"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": jwks_uri,
        },
    )


@pytest.mark.parametrize(
    "jwks_uri",
    [
        "http://keys.example.com/jwks.json",
        "ftp://keys.example.com/jwks.json",
        "https://user:pw@keys.example.com/jwks.json",
        "https://keys.example.com/jwks.json#frag",
    ],
)
async def test_a_jwks_uri_must_be_https_at_registration(
    app_client: httpx.AsyncClient, jwks_uri: str
) -> None:
    """RFC 7591 §2 metadata, RFC 7523 §3: the keys authenticate the client, so they come over
    https (http only on a loopback host); the registration is refused."""
    response = await register_keyed(app_client, jwks_uri)
    body = assert_error(response, 400, "invalid_client_metadata")
    assert body["error_description"].startswith(f"jwks_uri: {jwks_uri} must")


@pytest.mark.parametrize(
    "jwks_uri", ["https://keys.example.com/jwks.json", "http://127.0.0.1:8123/jwks.json"]
)
async def test_an_https_or_loopback_jwks_uri_is_registered(
    app_client: httpx.AsyncClient, jwks_uri: str
) -> None:
    response = await register_keyed(app_client, jwks_uri)
    assert response.status_code == 201, response.text
    assert response.json()["jwks_uri"] == jwks_uri


async def test_a_stored_http_jwks_uri_is_refused_at_use(
    authserver: tuple[httpx.AsyncClient, Settings], clock: FakeClock
) -> None:
    """A client stored before the rule (or by hand) with an http jwks_uri on another host:
    refused at the token endpoint before anything is fetched."""
    http, settings = authserver
    meta = ClientMetadata(
        token_endpoint_auth_method="private_key_jwt",
        grant_types=["client_credentials"],
        response_types=[],
        jwks_uri="http://192.0.2.1/jwks.json",
    )
    client = Client(client_id="legacy", origin="preregistered", metadata=meta, created_at=0)
    db = Database(settings.effective_database_url, schema=settings.database_schema)
    try:
        async with db.transaction() as conn:
            await client_rows.insert(conn, client, clock.now)
    finally:
        await db.dispose()
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"}, private=True)
    refused = await token(http, settings, clock, "legacy", key)
    body = assert_error(refused, 401, "invalid_client")
    assert "must use https" in body["error_description"]
