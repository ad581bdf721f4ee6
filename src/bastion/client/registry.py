"""A client of MCP registries behind OAuth: the generic registry API v0.1 (reading, and
``POST /v0.1/publish``).

::

    async with Authorizer(settings) as authorizer:
        async with RegistryClient("https://registry.example.com", authorizer) as registry:
            page = await registry.list_servers(search="weather")
            entry = await registry.get("io.example/weather")

The registry URL is the OAuth protected resource (registry authorization document; checklist
G01, G02): every API path lies below it, so tokens are kept for the registry URL itself
(``BastionAuth(resource=url)``). A 401 starts discovery from its challenge and the browser flow
with ``resource`` = the registry URL (C12); the token travels in the ``Authorization`` header
only (C13). Names and versions are percent-encoded as one path segment each
(``io.example%2Fweather``).

Error answers (RFC 9457 problem details, or the OAuth error body of a 401/403) become a
:class:`RegistryError` carrying the status, the problem's ``detail`` and its field errors.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from bastion.client.auth import BastionAuth
from bastion.client.authorizer import USER_AGENT, Authorizer
from bastion.client.discovery import check_endpoint, server_key
from bastion.client.errors import ClientError
from bastion.client.models import TokenSet

API_VERSION = "v0.1"
LATEST = "latest"
MAX_PAGES = 1000
# Registry metadata of an entry, by the namespace of its _meta key (bastion's first).
BASTION_META = "dev.mcp-bastion/registry"
OFFICIAL_META = "io.modelcontextprotocol.registry/official"


class RegistryError(ClientError):
    """The registry refused a request or answered something unusable.

    ``status`` is the HTTP status (None when no answer arrived), ``detail`` the problem's
    ``detail`` (or the OAuth ``error_description``), ``errors`` the failing fields
    (``location: message``) of a 400.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        detail: str | None = None,
        errors: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.errors = tuple(errors)


def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type is JSON (``application/json``, ``application/problem+json``)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and "+json" in media)


def segment(value: str) -> str:
    """``value`` as one path segment: ``/`` and every other reserved character encoded."""
    return quote(value, safe="")


def servers_path(name: str | None = None, version: str | None = None) -> str:
    """``/v0.1/servers``, ``/v0.1/servers/{name}/versions`` or ``…/versions/{version}``."""
    path = f"/{API_VERSION}/servers"
    if name is None:
        return path
    path += f"/{segment(name)}/versions"
    return path if version is None else f"{path}/{segment(version)}"


@dataclass(frozen=True)
class ServerEntry:
    """One ``ServerResponse``: the server.json (``server``) and the registry's ``_meta``."""

    document: Mapping[str, object]

    @property
    def server(self) -> Mapping[str, object]:
        """The server.json document."""
        server = self.document.get("server")
        return server if isinstance(server, Mapping) else {}

    def _text(self, member: str) -> str:
        value = self.server.get(member)
        return value if isinstance(value, str) else ""

    @property
    def name(self) -> str:
        return self._text("name")

    @property
    def version(self) -> str:
        return self._text("version")

    @property
    def description(self) -> str:
        return self._text("description")

    @property
    def registry_meta(self) -> Mapping[str, object]:
        """The registry's metadata of this entry (status, publishedAt, isLatest, …): bastion's
        namespace, else the official registry's, else the first namespace with a status."""
        meta = self.document.get("_meta")
        if not isinstance(meta, Mapping):
            return {}
        for key in (BASTION_META, OFFICIAL_META, *meta):
            value = meta.get(key)
            if isinstance(value, Mapping) and "status" in value:
                return value
        return {}

    @property
    def status(self) -> str | None:
        """``active``, ``deprecated`` or ``deleted`` (None when the registry gives none)."""
        value = self.registry_meta.get("status")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class ServerPage:
    """One page of ``GET /v0.1/servers``; ``next_cursor`` None when it is the last one."""

    servers: list[ServerEntry]
    next_cursor: str | None = None
    count: int = 0
    document: Mapping[str, object] = field(default_factory=dict)


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def error_of(response: httpx.Response, registry: str) -> RegistryError:
    """The :class:`RegistryError` of an error answer (problem+json, OAuth error or other)."""
    status = response.status_code
    body = _body(response) if is_json(response.headers.get("content-type")) else None
    detail: str | None = None
    errors: list[str] = []
    if isinstance(body, dict):
        for key in ("detail", "error_description", "title", "error"):
            if isinstance(body.get(key), str) and body[key]:
                detail = body[key]
                break
        items = body.get("errors")
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict):
                where, what = item.get("location", "?"), item.get("message", "")
                errors.append(f"{where}: {what}")
    request = f"{response.request.method} {response.request.url}"
    said = f": {detail}" if detail else ""
    if status == 401:
        message = (
            f"the registry {registry} refused the access token (HTTP 401{said}); sign in again "
            f"with `bastion login --registry {registry}`"
        )
    elif status == 403:
        message = (
            f"the registry {registry} refused {request} (HTTP 403{said}); ask its administrator "
            "for the scope or group this needs"
        )
    elif status == 404 and response.request.url.path.endswith("/servers"):
        # Registries always answer the list; a 404 there means the URL is not a registry's.
        message = (
            f"{registry} does not look like an MCP registry: GET {response.request.url} answered "
            f"HTTP 404{said} (a registry lists its servers at URL/v0.1/servers); check the URL, "
            "e.g. https://auth.example.com/registry"
        )
    elif status == 404:
        message = (
            f"the registry {registry} found nothing for {request} (HTTP 404{said}): the name or "
            "version is wrong, or the entry is not visible to you"
        )
    else:
        message = f"the registry answered HTTP {status} to {request}{said}"
    if errors:
        message += "".join(f"\n  {e}" for e in errors)
    return RegistryError(message, status=status, detail=detail, errors=errors)


class RegistryClient:
    """Read a registry behind OAuth with the tokens of ``authorizer`` (see the module docstring).

    ``url`` is the registry URL (the API lives at ``{url}/v0.1``); the client owns its HTTP
    client (closed by :meth:`aclose`) but not the authorizer.
    """

    def __init__(self, url: str, authorizer: Authorizer) -> None:
        settings = authorizer.settings
        check_endpoint(
            url,
            "the registry URL",
            allow_insecure_http=settings.allow_insecure_http,
            https_only=settings.ssrf_guard,
        )
        self.url = server_key(url)
        self.authorizer = authorizer
        self.http = httpx.AsyncClient(
            base_url=self.url,
            auth=BastionAuth(authorizer=authorizer, resource=self.url),
            timeout=settings.http_timeout,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
            trust_env=False,
        )

    def __repr__(self) -> str:
        return f"RegistryClient({self.url!r})"

    async def aclose(self) -> None:
        """Close the HTTP client (the authorizer stays open)."""
        await self.http.aclose()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- authorization --------------------------------------------------------------------------

    async def login(self) -> TokenSet:
        """Sign in to the registry now (its 401 to ``GET /v0.1/servers?limit=1`` guides the
        request), whatever is stored."""
        return await self.authorizer.login(self.url, registry=True)

    async def ensure_token(self) -> None:
        """Make sure a usable token is stored: the stored one, refreshed if needed, else a
        sign-in (the browser flow). Nothing to do when a static header is configured."""
        if self.authorizer.static_header(self.url) is None:
            await self.authorizer.access_token(self.url, registry=True)

    # -- requests -------------------------------------------------------------------------------

    async def fetch(
        self, path: str, params: Mapping[str, str] | Sequence[tuple[str, str]] = ()
    ) -> httpx.Response:
        """``GET {url}{path}`` with the user's token, whatever the status; ``path`` is an
        already encoded API path (``/v0.1/servers/io.x%2Fy/versions``). A request that gets no
        answer raises :class:`RegistryError`."""
        pairs = tuple(params.items() if isinstance(params, Mapping) else params)
        return await self._send("GET", path, params=pairs)

    async def _send(self, method: str, path: str, **options: Any) -> httpx.Response:
        try:
            return await self.http.request(method, path, **options)
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"no answer from the registry {self.url} to {method} {path}: "
                f"{type(exc).__name__}: {exc}; check the URL and that the registry is running"
            ) from None

    async def _object(
        self, path: str, params: Mapping[str, str] | Sequence[tuple[str, str]] = ()
    ) -> dict[str, object]:
        response = await self.fetch(path, params)
        if response.status_code != 200:
            raise error_of(response, self.url)
        body = _body(response) if is_json(response.headers.get("content-type")) else None
        if not isinstance(body, dict):
            raise RegistryError(
                f"the registry {self.url} answered GET {path} with "
                f"{response.headers.get('content-type') or 'no content type'} instead of a JSON "
                "object; is this the registry URL (without /v0.1)?",
                status=response.status_code,
            )
        return body

    def _entries(self, body: Mapping[str, object], path: str) -> list[ServerEntry]:
        servers = body.get("servers")
        if not isinstance(servers, list) or not all(
            isinstance(s, dict) and isinstance(s.get("server"), dict) for s in servers
        ):
            raise RegistryError(
                f"the registry {self.url} answered GET {path} without a list of servers "
                "(expected {servers: [{server, _meta}], metadata})",
                status=200,
            )
        return [ServerEntry(s) for s in servers]

    async def list_servers(
        self,
        search: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        version: str | None = LATEST,
    ) -> ServerPage:
        """One page of ``GET /v0.1/servers`` (``version`` None: every version)."""
        params = {
            key: str(value)
            for key, value in (
                ("search", search),
                ("cursor", cursor),
                ("limit", limit),
                ("version", version),
            )
            if value is not None
        }
        path = servers_path()
        body = await self._object(path, params)
        metadata = body.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        next_cursor = metadata.get("nextCursor")
        servers = self._entries(body, path)
        count = metadata.get("count")
        return ServerPage(
            servers=servers,
            next_cursor=next_cursor if isinstance(next_cursor, str) and next_cursor else None,
            count=count if isinstance(count, int) else len(servers),
            document=body,
        )

    async def iter_servers(
        self,
        search: str | None = None,
        limit: int | None = None,
        version: str | None = LATEST,
        max_pages: int = MAX_PAGES,
    ) -> AsyncIterator[ServerEntry]:
        """Every entry of the list, following ``nextCursor`` for at most ``max_pages`` pages
        (a registry that repeats a cursor or never ends raises :class:`RegistryError`)."""
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(max_pages):
            page = await self.list_servers(
                search=search, cursor=cursor, limit=limit, version=version
            )
            for entry in page.servers:
                yield entry
            cursor = page.next_cursor
            if cursor is None:
                return
            if cursor in seen:
                raise RegistryError(
                    f"the registry {self.url} sent the cursor {cursor[:80]!r} twice; its "
                    "pagination loops"
                )
            seen.add(cursor)
        raise RegistryError(
            f"the registry {self.url} has more than {max_pages} pages; narrow the list with a "
            "search or a larger limit"
        )

    async def get(self, name: str, version: str = LATEST) -> ServerEntry:
        """``GET /v0.1/servers/{name}/versions/{version}`` (``latest`` by default)."""
        path = servers_path(name, version)
        body = await self._object(path)
        if not isinstance(body.get("server"), dict):
            raise RegistryError(
                f"the registry {self.url} answered GET {path} without a server object",
                status=200,
            )
        return ServerEntry(body)

    async def publish(self, document: Mapping[str, object]) -> ServerEntry:
        """``POST /v0.1/publish`` of a server.json: the ServerResponse of the new version.

        A token without the registry's write scope meets a 403 ``insufficient_scope`` whose
        challenge names it; the authorizer then authorizes again for the union of the scopes
        (MCP "Step-Up Authorization Flow", RFC 6750 §3.1) and the request is sent once more.
        Refusals (RFC 9457 problems) raise :class:`RegistryError`."""
        path = f"/{API_VERSION}/publish"
        response = await self._send("POST", path, json=dict(document))
        if response.status_code != 200:
            raise error_of(response, self.url)
        body = _body(response) if is_json(response.headers.get("content-type")) else None
        if not isinstance(body, dict) or not isinstance(body.get("server"), dict):
            raise RegistryError(
                f"the registry {self.url} answered POST {path} without a ServerResponse "
                "({server, _meta}); is this the registry URL (without /v0.1)?",
                status=response.status_code,
            )
        return ServerEntry(body)

    async def versions(self, name: str) -> list[ServerEntry]:
        """``GET /v0.1/servers/{name}/versions``: every version the caller may see."""
        path = servers_path(name)
        return self._entries(await self._object(path), path)


__all__ = [
    "API_VERSION",
    "BASTION_META",
    "LATEST",
    "MAX_PAGES",
    "OFFICIAL_META",
    "RegistryClient",
    "RegistryError",
    "ServerEntry",
    "ServerPage",
    "error_of",
    "is_json",
    "segment",
    "servers_path",
]
