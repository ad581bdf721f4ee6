"""Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document-00; checklist A03).

Documents are served by a real uvicorn server on 127.0.0.1:0. Because the SSRF guard refuses
loopback, successful fetches run with ``cimd.allow_private_addresses`` and http client_ids; the
guard's refusals are asserted with it off, against the same server, which must see no request.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from bastion.authserver.cimd import (
    DocumentRefused,
    MetadataDocumentResolver,
    redirect_target,
)
from bastion.config import CimdSettings
from bastion.net.ssrf import guarded_transport
from bastion.oauth.errors import InvalidClient
from bastion.store import clients
from bastion.store.database import Database
from tests.support.live import serve

Reply = tuple[int, dict[str, str], bytes]
Handler = Callable[[dict[str, str]], Awaitable[Reply]]
JSON = {"content-type": "application/json"}
START = 1_700_000_000


class DocumentServer:
    """A pure ASGI app: each test says what each path answers; requests are recorded."""

    def __init__(self) -> None:
        self.base = ""
        self.routes: dict[str, Handler] = {}
        self.hits: Counter[str] = Counter()
        self.requests: list[dict[str, str]] = []
        self.release = asyncio.Event()  # lets slow handlers finish at teardown

    def url(self, path: str) -> str:
        return self.base + path

    def document(self, path: str, **fields: Any) -> dict[str, Any]:
        doc = {
            "client_id": self.url(path),
            "client_name": "Example MCP Client",
            "redirect_uris": ["http://127.0.0.1:33418/callback"],
        }
        return {k: v for k, v in {**doc, **fields}.items() if v is not None}

    def reply(self, path: str, status: int, headers: dict[str, str], body: bytes) -> None:
        async def handler(_: dict[str, str]) -> Reply:
            return status, headers, body

        self.routes[path] = handler

    def serve(self, path: str, document: object = None, **headers: str) -> str:
        """Serve ``document`` (default: a valid one) as JSON at ``path``; return its URL."""
        body = json.dumps(self.document(path) if document is None else document).encode()
        extra = {k.replace("_", "-"): v for k, v in headers.items()}
        self.reply(path, 200, {**JSON, **extra}, body)
        return self.url(path)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.hits[scope["path"]] += 1
        self.requests.append(headers)
        handler = self.routes.get(scope["path"])
        status, out, body = await handler(headers) if handler else (404, {}, b"no such path")
        raw = [(k.encode(), v.encode()) for k, v in out.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> int:
        return self.now


@pytest.fixture
async def server() -> AsyncIterator[DocumentServer]:
    app = DocumentServer()
    async with serve(app, lifespan="off", ws="none") as base:
        app.base = base
        try:
            yield app
        finally:
            app.release.set()


@pytest.fixture
async def db(tmp_path: Any) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}")
    await database.upgrade()
    yield database
    await database.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make_resolver(
    db: Database, clock: Clock
) -> AsyncIterator[Callable[..., MetadataDocumentResolver]]:
    made: list[MetadataDocumentResolver] = []

    def make(
        transport: httpx.AsyncBaseTransport | None = None, **settings: Any
    ) -> MetadataDocumentResolver:
        settings.setdefault("allow_private_addresses", True)
        resolver = MetadataDocumentResolver(
            db, CimdSettings(**settings), clock=clock, transport=transport
        )
        made.append(resolver)
        return resolver

    yield make
    for resolver in made:
        await resolver.aclose()


@pytest.fixture
def resolver(make_resolver: Callable[..., MetadataDocumentResolver]) -> MetadataDocumentResolver:
    return make_resolver()


async def refused(resolver: MetadataDocumentResolver, client_id: str) -> str:
    """Resolve, expect invalid_client (401), return its description."""
    with pytest.raises(InvalidClient) as caught:
        await resolver.resolve(client_id)
    assert caught.value.status_code == 401
    assert caught.value.body()["error"] == "invalid_client"
    return caught.value.description


async def cached(db: Database, url: str) -> clients.CachedDocument | None:
    async with db.connect() as conn:
        return await clients.get_document(conn, url)


# --- the document (draft §4.1, MCP client registration) -------------------------------------


async def test_a03_valid_document_resolves(
    server: DocumentServer, resolver: MetadataDocumentResolver
) -> None:
    url = server.serve("/client.json", server.document("/client.json", logo_uri=None))
    metadata = await resolver.resolve(url)
    assert metadata.client_name == "Example MCP Client"
    assert metadata.redirect_uris == ["http://127.0.0.1:33418/callback"]
    assert metadata.token_endpoint_auth_method == "none"
    assert server.requests[0]["accept"] == "application/json"
    assert server.requests[0]["accept-encoding"] == "identity"


async def test_a03_client_id_must_equal_document_url(
    server: DocumentServer, resolver: MetadataDocumentResolver, db: Database
) -> None:
    url = server.url("/client")
    server.serve("/client", server.document("/client", client_id=url + "/"))
    description = await refused(resolver, url)
    assert description == (
        f"client metadata document at {url}: client_id inside is '{url}/', expected the URL exactly"
    )
    assert await cached(db, url) is None  # invalid documents are never cached


async def test_a03_client_id_missing_from_document(
    server: DocumentServer, resolver: MetadataDocumentResolver
) -> None:
    url = server.serve("/client", server.document("/client", client_id=None))
    assert "client_id inside is None, expected the URL exactly" in await refused(resolver, url)


@pytest.mark.parametrize("field", ["client_name", "redirect_uris"])
async def test_a03_required_fields(
    server: DocumentServer, resolver: MetadataDocumentResolver, field: str
) -> None:
    url = server.serve("/client", server.document("/client", **{field: None}))
    description = await refused(resolver, url)
    assert description.endswith(f": {field} is required (MCP client registration)")


@pytest.mark.parametrize(
    "method", ["client_secret_post", "client_secret_basic", "client_secret_jwt"]
)
async def test_a03_shared_secret_auth_methods_refused(
    server: DocumentServer, resolver: MetadataDocumentResolver, method: str
) -> None:
    url = server.serve("/c", server.document("/c", token_endpoint_auth_method=method))
    description = await refused(resolver, url)
    assert f"token_endpoint_auth_method {method} needs a shared secret" in description


@pytest.mark.parametrize("field", ["client_secret", "client_secret_expires_at"])
async def test_a03_client_secret_properties_refused(
    server: DocumentServer, resolver: MetadataDocumentResolver, field: str
) -> None:
    url = server.serve("/c", server.document("/c", **{field: "x"}))
    assert f": {field} must not appear" in await refused(resolver, url)


async def test_a03_private_key_jwt_accepted(
    server: DocumentServer, resolver: MetadataDocumentResolver
) -> None:
    jwks = {
        "keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]
    }
    doc = server.document("/c", token_endpoint_auth_method="private_key_jwt", jwks=jwks)
    metadata = await resolver.resolve(server.serve("/c", doc))
    assert metadata.token_endpoint_auth_method == "private_key_jwt"


async def test_a03_rfc7591_rules_apply(
    server: DocumentServer, resolver: MetadataDocumentResolver
) -> None:
    url = server.serve("/c", server.document("/c", grant_types=["password"]))
    assert "grant_types: unsupported password" in await refused(resolver, url)


# --- the fetch (draft §4, §6.5, §6.6) -----------------------------------------------------


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
async def test_a03_document_over_max_bytes_refused(
    server: DocumentServer, resolver: MetadataDocumentResolver, with_length: bool
) -> None:
    body = json.dumps(server.document("/big", client_uri="https://x.example/" + "a" * 6000))
    headers = {**JSON, "content-length": str(len(body))} if with_length else JSON
    server.reply("/big", 200, headers, body.encode())
    description = await refused(resolver, server.url("/big"))
    assert description.endswith("the document is larger than 5120 bytes (cimd.max_bytes)")


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("text/html", b"<html></html>", "content type is text/html, not application/json"),
        ("application/json", b"{not json", "the document is not valid JSON"),
        ("application/json", b"[1, 2]", "the document must be a JSON object"),
        ("application/json", b"\xff\xfe\x00", "the document is not valid JSON"),
        ("application/json", b"[" * 5000 + b"]" * 5000, "the document is not valid JSON"),
    ],
)
async def test_a03_non_json_refused(
    make_resolver: Callable[..., MetadataDocumentResolver],
    server: DocumentServer,
    content_type: str,
    body: bytes,
    expected: str,
) -> None:
    server.reply("/c", 200, {"content-type": content_type}, body)
    resolver = make_resolver(max_bytes=20_000)
    assert (await refused(resolver, server.url("/c"))).endswith(expected)


async def test_compressed_answer_refused(
    server: DocumentServer, resolver: MetadataDocumentResolver
) -> None:
    body = gzip.compress(json.dumps(server.document("/c")).encode())
    server.reply("/c", 200, {**JSON, "content-encoding": "gzip"}, body)
    description = await refused(resolver, server.url("/c"))
    assert description.endswith("content-encoding gzip was not asked for; send it plain")


async def test_a03_json_subtype_accepted(
    server: DocumentServer, resolver: MetadataDocumentResolver
) -> None:
    url = server.serve("/c", content_type="application/client-metadata+json; charset=utf-8")
    assert (await resolver.resolve(url)).client_name == "Example MCP Client"


@pytest.mark.parametrize("status", [404, 500, 204, 203])
async def test_a03_only_200_accepted(
    server: DocumentServer, resolver: MetadataDocumentResolver, status: int
) -> None:
    server.reply("/c", status, JSON, b"" if status == 204 else b"{}")
    description = await refused(resolver, server.url("/c"))
    assert description.endswith(f"answered HTTP {status}; 200 is required")


async def test_a03_slow_server_times_out(
    make_resolver: Callable[..., MetadataDocumentResolver], server: DocumentServer
) -> None:
    async def slow(_: dict[str, str]) -> Reply:
        await asyncio.wait_for(server.release.wait(), 5)
        return 200, JSON, b"{}"

    server.routes["/slow"] = slow
    resolver = make_resolver(timeout=0.3)
    started = time.monotonic()
    description = await refused(resolver, server.url("/slow"))
    assert time.monotonic() - started < 1.5
    assert description.endswith("no complete answer within 0.3 seconds (cimd.timeout)")


async def test_a03_connection_refused_is_invalid_client(
    server: DocumentServer, resolver: MetadataDocumentResolver
) -> None:
    description = await refused(resolver, "http://127.0.0.1:9/client")
    assert "could not be fetched (ConnectError" in description


async def test_no_cookies_kept_or_sent(
    server: DocumentServer, resolver: MetadataDocumentResolver, clock: Clock
) -> None:
    url = server.serve("/c", set_cookie="session=abc; Path=/", cache_control="no-store")
    await resolver.resolve(url)
    await resolver.resolve(url)
    assert server.hits["/c"] == 2
    assert all("cookie" not in request for request in server.requests)


# --- redirects -------------------------------------------------------------------------------


def redirect(server: DocumentServer, path: str, to: str) -> None:
    server.reply(path, 302, {"location": to}, b"")


async def test_redirects_followed_up_to_the_limit(
    make_resolver: Callable[..., MetadataDocumentResolver], server: DocumentServer
) -> None:
    client_id = server.url("/start")
    redirect(server, "/start", "/next")
    server.serve("/next", server.document("/start"), cache_control="no-store")
    assert (await make_resolver(max_redirects=1).resolve(client_id)).client_name
    redirect(server, "/next", server.url("/last"))
    server.serve("/last", server.document("/start"), cache_control="no-store")
    description = await refused(make_resolver(max_redirects=1), client_id)
    assert description.endswith("more than 1 redirects (cimd.max_redirects)")
    assert "redirects (cimd.max_redirects)" in await refused(
        make_resolver(max_redirects=0), client_id
    )


class LoopbackFor(httpx.AsyncBaseTransport):
    """Sends requests for one test origin plainly and everything else through the SSRF guard."""

    def __init__(self, origin: str) -> None:
        self.origin = httpx.URL(origin)
        self.plain = httpx.AsyncHTTPTransport()
        self.guarded = guarded_transport(allow_private=False, timeout=1.0)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        same = (request.url.host, request.url.port) == (self.origin.host, self.origin.port)
        return await (self.plain if same else self.guarded).handle_async_request(request)

    async def aclose(self) -> None:
        await self.plain.aclose()
        await self.guarded.aclose()


@pytest.mark.parametrize(
    "target", ["http://localhost:{port}/doc", "http://169.254.169.254/latest/meta-data/"]
)
async def test_a03_redirect_to_blocked_address_refused(
    make_resolver: Callable[..., MetadataDocumentResolver],
    server: DocumentServer,
    target: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = httpx.URL(server.base).port
    redirect(server, "/start", target.format(port=port))
    server.serve("/doc", server.document("/start"))
    resolver = make_resolver(transport=LoopbackFor(server.base), max_redirects=3)
    with caplog.at_level(logging.WARNING, logger="bastion.cimd"):
        description = await refused(resolver, server.url("/start"))
    assert "is not a public internet address (SSRF protection" in description
    assert server.hits["/start"] == 1
    assert server.hits["/doc"] == 0
    assert "cimd.allow_private_addresses" in caplog.text


@pytest.mark.parametrize(
    ("location", "allow_http", "expected"),
    [
        ("/b", False, "https://a.example/b"),
        ("https://cdn.example/x.json", False, "https://cdn.example/x.json"),
        ("http://a.example/b", True, "http://a.example/b"),
    ],
)
def test_redirect_target_followed(location: str, allow_http: bool, expected: str) -> None:
    assert redirect_target("https://a.example/a", location, allow_http=allow_http) == expected


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://a.example/b", "must use the https scheme"),
        ("file:///etc/passwd", "must use the https scheme"),
        ("gopher://a.example/", "must use the https scheme"),
        ("https://user:pw@b.example/", "must not contain a username or password"),
        (None, "without a Location header"),
    ],
)
def test_a03_redirect_hop_checked(location: str | None, reason: str) -> None:
    with pytest.raises(DocumentRefused, match=reason):
        redirect_target("https://a.example/a", location, allow_http=False)


# --- the guard on the client_id itself (draft §6.5) --------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a03_loopback_client_id_refused_without_a_request(
    make_resolver: Callable[..., MetadataDocumentResolver],
    server: DocumentServer,
    scheme: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.serve("/c")
    client_id = server.url("/c").replace("http:", f"{scheme}:")
    resolver = make_resolver(allow_private_addresses=False)
    with caplog.at_level(logging.WARNING, logger="bastion.cimd"):
        description = await refused(resolver, client_id)
    if scheme == "http":
        assert "must use the https scheme" in description
    else:
        assert "127.0.0.1 is not a public internet address" in description
        assert "resolves to 127.0.0.1" in caplog.text
    assert server.hits["/c"] == 0


# --- caching (draft §4.4, RFC 9111) ------------------------------------------------------


async def test_a03_cache_control_max_age_honoured(
    server: DocumentServer, resolver: MetadataDocumentResolver, clock: Clock
) -> None:
    url = server.serve("/c", cache_control="public, max-age=60")
    await resolver.resolve(url)
    clock.now += 59
    await resolver.resolve(url)
    assert server.hits["/c"] == 1
    clock.now += 1
    await resolver.resolve(url)
    assert server.hits["/c"] == 2


async def test_a03_no_store_not_cached(
    server: DocumentServer, resolver: MetadataDocumentResolver, db: Database
) -> None:
    url = server.serve("/c", cache_control="no-store")
    await resolver.resolve(url)
    await resolver.resolve(url)
    assert server.hits["/c"] == 2
    assert await cached(db, url) is None


def conditional(server: DocumentServer, path: str, etag: str, cache_control: str) -> None:
    body = json.dumps(server.document(path)).encode()

    async def handler(headers: dict[str, str]) -> Reply:
        out = {**JSON, "etag": etag, "cache-control": cache_control}
        if headers.get("if-none-match") == etag:
            return 304, out, b""
        return 200, out, body

    server.routes[path] = handler


async def test_a03_etag_revalidation_with_304(
    server: DocumentServer, resolver: MetadataDocumentResolver, db: Database, clock: Clock
) -> None:
    conditional(server, "/c", '"v1"', "max-age=10")
    url = server.url("/c")
    await resolver.resolve(url)
    clock.now += 11
    metadata = await resolver.resolve(url)
    assert metadata.client_name == "Example MCP Client"
    assert server.requests[1]["if-none-match"] == '"v1"'
    clock.now += 9  # the 304 refreshed the lifetime
    await resolver.resolve(url)
    assert server.hits["/c"] == 2
    stored = await cached(db, url)
    assert stored is not None
    assert (stored.etag, stored.expires_at) == ('"v1"', START + 21)


async def test_no_cache_revalidates_every_time(
    server: DocumentServer, resolver: MetadataDocumentResolver
) -> None:
    conditional(server, "/c", '"v1"', "no-cache")
    url = server.url("/c")
    for _ in range(3):
        await resolver.resolve(url)
    assert server.hits["/c"] == 3
    assert [r.get("if-none-match") for r in server.requests] == [None, '"v1"', '"v1"']


async def test_last_modified_revalidation(
    server: DocumentServer, resolver: MetadataDocumentResolver, clock: Clock
) -> None:
    stamp = formatdate(START - 3600, usegmt=True)
    url = server.serve("/c", last_modified=stamp, cache_control="max-age=5")
    await resolver.resolve(url)
    clock.now += 6
    await resolver.resolve(url)
    assert server.requests[1]["if-modified-since"] == stamp


@pytest.mark.parametrize(
    ("headers", "lifetime"),
    [
        ({}, 300),  # cimd.default_cache_ttl
        ({"cache_control": "max-age=999999"}, 86400),  # capped at cimd.max_cache_ttl
        ({"cache_control": "max-age=100", "age": "40"}, 60),
        ({"cache_control": "s-maxage=5, max-age=100"}, 100),
        ({"expires": formatdate(START + 120, usegmt=True)}, 120),
        ({"expires": "0"}, 0),
        ({"cache_control": "no-cache", "expires": formatdate(START + 120, usegmt=True)}, 0),
    ],
)
async def test_a03_cache_lifetime(
    server: DocumentServer,
    resolver: MetadataDocumentResolver,
    db: Database,
    headers: dict[str, str],
    lifetime: int,
) -> None:
    url = server.serve("/c", **headers)
    await resolver.resolve(url)
    stored = await cached(db, url)
    assert stored is not None
    assert stored.expires_at - stored.fetched_at == lifetime


async def test_a03_failed_refetch_does_not_use_stale_copy(
    server: DocumentServer, resolver: MetadataDocumentResolver, clock: Clock
) -> None:
    url = server.serve("/c", cache_control="max-age=60")
    await resolver.resolve(url)
    clock.now += 61
    server.reply("/c", 503, JSON, b"{}")
    assert "answered HTTP 503" in await refused(resolver, url)


# --- the client identifier URL (draft §3) ------------------------------------------------


@pytest.mark.parametrize(
    ("client_id", "reason"),
    [
        ("http://client.example/c", "must use the https scheme"),
        ("ftp://client.example/c", "must use the https scheme"),
        ("https://client.example", "must contain a path component"),
        ("https://client.example/", "must contain a path component"),
        ("https://client.example/c#frag", "must not contain a fragment"),
        ("https://client.example/c#", "must not contain a fragment"),
        ("https://client.example/a/../c", "must not contain . or .. path segments"),
        ("https://client.example/./c", "must not contain . or .. path segments"),
        ("https://client.example/a/%2E%2e/c", "must not contain . or .. path segments"),
        ("https://user@client.example/c", "must not contain a username or password"),
        ("https://user:pw@client.example/c", "must not contain a username or password"),
        ("https:///c", "must have a host"),
        ("https://client.example:99999/c", "is not a valid URL"),
        ("https://client.example/a b", "must not contain spaces or control characters"),
        ("https://client.example/" + "a" * 2048, "must be at most 2048 characters"),
    ],
)
async def test_a03_client_id_url_rules(
    make_resolver: Callable[..., MetadataDocumentResolver], client_id: str, reason: str
) -> None:
    resolver = make_resolver(allow_private_addresses=False)
    assert not MetadataDocumentResolver.is_metadata_document_id(client_id)
    description = await refused(resolver, client_id)
    assert description.startswith(f"client metadata document at {client_id[:80]}")
    assert f"the client_id URL {reason}" in description
    assert description.endswith("(CIMD draft section 3)")


@pytest.mark.parametrize(
    "client_id",
    [
        "https://client.example/c",
        "https://client.example:8443/oauth/client.json",
        "https://client.example/c?v=1",  # a query is only discouraged (SHOULD NOT)
        "https://client.example/a..b/.c",
    ],
)
def test_a03_client_id_url_accepted(client_id: str) -> None:
    assert MetadataDocumentResolver.is_metadata_document_id(client_id)


def test_http_client_id_only_when_allowed() -> None:
    assert MetadataDocumentResolver.is_metadata_document_id("http://127.0.0.1:9/c", allow_http=True)
    assert not MetadataDocumentResolver.is_metadata_document_id("http://127.0.0.1:9/c")


async def test_trusted_domains(
    make_resolver: Callable[..., MetadataDocumentResolver], server: DocumentServer
) -> None:
    url = server.serve("/c")
    assert await make_resolver(trusted_domains=["127.0.0.1"]).resolve(url)
    outsider = make_resolver(trusted_domains=["example.com"])
    description = await refused(outsider, "https://notexample.com/c")
    assert description.endswith("host notexample.com is not in cimd.trusted_domains")
    assert "not in cimd.trusted_domains" in await refused(outsider, url)
    assert server.hits["/c"] == 1
