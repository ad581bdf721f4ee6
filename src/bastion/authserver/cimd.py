"""Client ID Metadata Documents: a client_id that is an https URL names its own metadata.

draft-ietf-oauth-client-id-metadata-document-00, as required by MCP 2026-07-28 (client
registration): fetch the document at the client_id URL, check it, cache it as HTTP allows.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TYPE_CHECKING
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import httpx
from sqlalchemy.exc import IntegrityError

from bastion import safe_json
from bastion.clock import Clock, system_clock
from bastion.config import CimdSettings
from bastion.logs import get_logger
from bastion.net.ssrf import BlockedAddressError, guarded_transport
from bastion.oauth import endpoint_url
from bastion.oauth.client_metadata import ClientMetadata, parse
from bastion.oauth.endpoint_url import EndpointUrlPolicy
from bastion.oauth.errors import InvalidClient, OAuthError
from bastion.store import clients
from bastion.store.clients import CachedDocument
from bastion.store.database import Database

if TYPE_CHECKING:
    from bastion.authserver.quotas import Quotas

log = get_logger("bastion.cimd")

MAX_URL_LENGTH = 2048  # the cache's key column
SHARED_SECRET_METHODS = frozenset(
    {"client_secret_basic", "client_secret_post", "client_secret_jwt"}
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class DocumentRefused(Exception):
    """Why a document can't be used: ``reason`` for the client, ``detail`` only for the log."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


_HTTPS = "must use the https scheme (http only with cimd.allow_private_addresses)"
_REASONS = {
    **endpoint_url.REASONS,
    "scheme": _HTTPS,
    "http": _HTTPS,
    "credentials": "must not contain a username or password",
}


def _location_problem(url: str, *, allow_http: bool) -> str | None:
    """The endpoint URL rule (:mod:`bastion.oauth.endpoint_url`) for a document's location:
    https (http on any host with ``allow_http``), no credentials (draft §3)."""
    policy = EndpointUrlPolicy(http="any" if allow_http else "never", credentials=False)
    problem = policy.problem(url)
    return None if problem is None else _REASONS[problem]


def client_id_problem(client_id: str, *, allow_http: bool = False) -> str | None:
    """What makes ``client_id`` unfit as a client identifier URL (draft §3), or None."""
    if len(client_id) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters"
    if any(c.isspace() or not c.isprintable() for c in client_id):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(client_id)
        parts.port  # noqa: B018 (raises ValueError for a malformed port)
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if problem := _location_problem(client_id, allow_http=allow_http):
        return problem
    if parts.path in ("", "/"):
        return "must contain a path component, e.g. https://example.com/client.json"
    if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):
        return "must not contain . or .. path segments"
    return None


def redirect_target(url: str, location: str | None, *, allow_http: bool) -> str:
    """The absolute URL of a redirect hop; raise if it may not be followed (draft §6.5)."""
    if not location:
        raise DocumentRefused(f"{url} answered a redirect without a Location header")
    target = urljoin(url, location)
    # A fragment is not part of what is fetched (RFC 3986 §3.5): the URL without it is checked.
    if problem := _location_problem(urldefrag(target).url, allow_http=allow_http):
        raise DocumentRefused(f"redirect to {target} refused: the URL {problem}")
    return target


def cache_lifetime(headers: httpx.Headers, now: int, *, default: int, maximum: int) -> int | None:
    """Seconds to keep a response (RFC 9111 §4.2.1, §5.2.2, §5.3): ``default`` without cache
    headers, never more than ``maximum``; None means do not store."""
    directives: dict[str, str] = {}
    for item in headers.get("cache-control", "").split(","):
        name, _, value = item.strip().partition("=")
        directives[name.lower()] = value.strip('"')
    max_age = directives.get("max-age", "")
    if "no-store" in directives:
        return None
    if "no-cache" in directives:
        lifetime = 0
    elif max_age.isdigit():
        age = headers.get("age", "")
        lifetime = int(max_age) - (int(age) if age.isdigit() else 0)
    elif "expires" in headers:
        try:
            lifetime = int(parsedate_to_datetime(headers["expires"]).timestamp()) - now
        except (TypeError, ValueError):
            lifetime = 0  # an invalid Expires means already expired (RFC 9111 §5.3)
    else:
        lifetime = default
    return max(0, min(lifetime, maximum))


def validate_document(client_id: str, document: object) -> ClientMetadata:
    """Check a fetched document (draft §4.1, MCP client registration) and parse it (RFC 7591)."""
    if not isinstance(document, dict):
        raise DocumentRefused("the document must be a JSON object")
    inside = document.get("client_id")
    if inside != client_id:
        raise DocumentRefused(f"client_id inside is {inside!r}, expected the URL exactly")
    for required in ("client_name", "redirect_uris"):
        if not document.get(required):
            raise DocumentRefused(f"{required} is required (MCP client registration)")
    method = document.get("token_endpoint_auth_method")
    if method in SHARED_SECRET_METHODS:
        raise DocumentRefused(
            f"token_endpoint_auth_method {method} needs a shared secret, which a metadata "
            "document cannot have; use none or private_key_jwt (CIMD draft section 4.1)"
        )
    if secret_fields := sorted({"client_secret", "client_secret_expires_at"} & document.keys()):
        raise DocumentRefused(
            f"{' and '.join(secret_fields)} must not appear (CIMD draft section 4.1)"
        )
    try:
        return parse(document, default_auth_method="none")
    except OAuthError as exc:
        raise DocumentRefused(exc.description) from None


@dataclass
class _Answer:
    document: dict[str, object]
    headers: httpx.Headers


class MetadataDocumentResolver:
    """Resolves URL client_ids to their metadata, fetching and caching the documents (draft §4)."""

    def __init__(
        self,
        db: Database,
        settings: CimdSettings,
        *,
        clock: Clock = system_clock,
        transport: httpx.AsyncBaseTransport | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        self._quotas = quotas
        self._allow_http = settings.allow_private_addresses  # for development only
        self._trusted = [d.lower().strip(".") for d in settings.trusted_domains]
        self._http = httpx.AsyncClient(
            transport=transport
            or guarded_transport(
                allow_private=settings.allow_private_addresses, timeout=settings.timeout
            ),
            timeout=settings.timeout,
            # Uncompressed: the size limit then bounds memory too (no decompression bombs).
            headers={
                "Accept": "application/json",
                "Accept-Encoding": "identity",
                "User-Agent": "mcp-bastion",
            },
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),  # keeps none
        )

    @staticmethod
    def is_metadata_document_id(client_id: str, *, allow_http: bool = False) -> bool:
        """Whether ``client_id`` is a client identifier URL (draft §3)."""
        return client_id_problem(client_id, allow_http=allow_http) is None

    async def resolve(self, client_id: str, *, requester: str | None = None) -> ClientMetadata:
        """The validated metadata behind ``client_id``; InvalidClient if none (draft §4.3).

        A fetch (no fresh cached copy) counts against the quotas of ``requester`` (the address
        of the request that needs the document; None: overall only), TooManyRequests beyond."""
        try:
            return await self._resolve(client_id, requester)
        except DocumentRefused as exc:
            log.warning("client metadata document %r refused: %s", client_id, exc.detail or exc)
            raise InvalidClient(
                f"client metadata document at {client_id}: {exc.reason}", detail=exc.detail
            ) from None

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._http.aclose()

    async def _resolve(self, client_id: str, requester: str | None) -> ClientMetadata:
        if problem := client_id_problem(client_id, allow_http=self._allow_http):
            raise DocumentRefused(f"the client_id URL {problem} (CIMD draft section 3)")
        host = (urlsplit(client_id).hostname or "").rstrip(".")
        if self._trusted and not any(host == d or host.endswith("." + d) for d in self._trusted):
            raise DocumentRefused(f"host {host} is not in cimd.trusted_domains")
        now = self._clock()
        async with self._db.connect() as conn:
            cached = await clients.get_document(conn, client_id)
        if cached is not None and now < cached.expires_at:
            return validate_document(client_id, cached.document)
        if self._quotas is not None:
            await self._quotas.admit_fetch(requester)
        answer = await self._fetch(client_id, cached)
        metadata = validate_document(client_id, answer.document)
        lifetime = cache_lifetime(
            answer.headers,
            now,
            default=self._settings.default_cache_ttl,
            maximum=self._settings.max_cache_ttl,
        )
        if lifetime is not None:
            # Validators from a 304 update the stored ones (RFC 9111 §4.3.4); sized to the columns.
            etag = answer.headers.get("etag") or (cached and cached.etag)
            modified = answer.headers.get("last-modified") or (cached and cached.last_modified)
            doc = CachedDocument(
                client_id,
                answer.document,
                now,
                now + lifetime,
                etag if etag and len(etag) <= 255 else None,
                modified if modified and len(modified) <= 64 else None,
            )
            try:
                async with self._db.transaction() as conn:
                    await clients.put_document(conn, doc)
            except IntegrityError:  # a concurrent request stored it first
                log.debug("client metadata document %s cached concurrently", client_id)
        return metadata

    async def _fetch(self, client_id: str, cached: CachedDocument | None) -> _Answer:
        """GET the document, following at most cimd.max_redirects redirects (draft §4)."""
        conditional: dict[str, str] = {}
        if cached is not None and cached.etag:
            conditional["If-None-Match"] = cached.etag
        if cached is not None and cached.last_modified:
            conditional["If-Modified-Since"] = cached.last_modified
        timeout, url = self._settings.timeout, client_id
        try:
            async with asyncio.timeout(timeout):
                for _ in range(self._settings.max_redirects + 1):
                    async with self._http.stream("GET", url, headers=conditional) as response:
                        if response.status_code in _REDIRECTS:
                            location = response.headers.get("location")
                            url = redirect_target(url, location, allow_http=self._allow_http)
                            continue
                        if response.status_code == 304 and cached is not None and conditional:
                            return _Answer(cached.document, response.headers)
                        return _Answer(await self._read(url, response), response.headers)
        except (TimeoutError, httpx.TimeoutException):
            raise DocumentRefused(
                f"no complete answer within {timeout} seconds (cimd.timeout)"
            ) from None
        except BlockedAddressError as exc:
            raise DocumentRefused(
                f"refused to fetch it: {exc.host} is not a public internet address "
                "(SSRF protection; the server log has details)",
                detail=str(exc),
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise DocumentRefused(f"could not be fetched ({type(exc).__name__}: {exc})") from None
        limit = self._settings.max_redirects
        raise DocumentRefused(f"more than {limit} redirects (cimd.max_redirects)")

    async def _read(self, url: str, response: httpx.Response) -> dict[str, object]:
        """The JSON body of a 200 answer of at most cimd.max_bytes (draft §6.6)."""
        if response.status_code != 200:
            raise DocumentRefused(f"{url} answered HTTP {response.status_code}; 200 is required")
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json" and not (
            content_type.startswith("application/") and content_type.endswith("+json")
        ):
            raise DocumentRefused(
                f"content type is {content_type or 'missing'}, not application/json"
            )
        encoding = response.headers.get("content-encoding", "identity").lower()
        if encoding != "identity":
            raise DocumentRefused(f"content-encoding {encoding} was not asked for; send it plain")
        limit = self._settings.max_bytes
        too_big = DocumentRefused(f"the document is larger than {limit} bytes (cimd.max_bytes)")
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise too_big
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > limit:
                raise too_big
        try:
            document = safe_json.loads(body)
        except ValueError:
            raise DocumentRefused("the document is not valid JSON") from None
        if not isinstance(document, dict):
            raise DocumentRefused("the document must be a JSON object")
        return document


__all__ = [
    "DocumentRefused",
    "MetadataDocumentResolver",
    "cache_lifetime",
    "client_id_problem",
    "redirect_target",
    "validate_document",
]
