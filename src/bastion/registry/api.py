"""The HTTP side of the generic registry API v0.1 (and /v0): parse, call the service, render.

Answers follow the registry project's OpenAPI: ``ServerList`` (``{servers, metadata: {nextCursor,
count}}``), ``ServerResponse`` (``{server, _meta}``) and ``AllVersionsStatusResponse``. Registry
metadata of an entry is under bastion's own ``_meta`` key, :data:`META_KEY`
(``dev.mcp-bastion/registry``): status, statusMessage, statusChangedAt, publishedAt, updatedAt,
isLatest, and bastion's approved and groups. Errors are RFC 9457 problems
(:mod:`bastion.registry.problems`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from bastion.config import RegistrySettings
from bastion.registry import paths
from bastion.registry.access import Caller, caller_of
from bastion.registry.audit import note_of
from bastion.registry.names import LATEST, VERSION_MAX, name_problem
from bastion.registry.problems import FieldError, Problem, bad_request, not_found
from bastion.registry.read_cache import Answer, ReadCache
from bastion.registry.service import (
    MAX_LIMIT,
    ListRequest,
    Registry,
    parse_status_change,
)
from bastion.registry.times import format_rfc3339, parse_rfc3339
from bastion.registry.validation import parse_object
from bastion.resource.principal import Principal, principal_of
from bastion.store.registry import Entry, Visibility

META_KEY = "dev.mcp-bastion/registry"
_MAX_QUERY_VALUE = 1024
_MAX_CALLERS = 4096


def server_response(entry: Entry) -> dict[str, Any]:
    """The ServerResponse of an entry."""
    meta: dict[str, Any] = {
        "status": entry.status,
        "statusChangedAt": format_rfc3339(entry.status_changed_at),
        "publishedAt": format_rfc3339(entry.published_at),
        "updatedAt": format_rfc3339(entry.updated_at),
        "isLatest": entry.is_latest,
        "approved": entry.approved,
        "groups": list(entry.groups),
    }
    if entry.status_message is not None:
        meta["statusMessage"] = entry.status_message
    return {"server": entry.server, "_meta": {META_KEY: meta}}


def _encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def _body_response(body: bytes, status: int = 200) -> Response:
    return Response(
        body,
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _json(document: dict[str, Any], status: int = 200) -> Response:
    return _body_response(_encode(document), status)


def _query_value(query: QueryParams, name: str) -> str | None:
    value = query.get(name)
    if value is None:
        return None
    if len(value) > _MAX_QUERY_VALUE or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise bad_request(
            f"query parameter {name} is not valid",
            FieldError.of(
                f"query.{name}",
                f"must be at most {_MAX_QUERY_VALUE} characters without control characters",
                value,
            ),
        )
    return value


def _boolean(query: QueryParams, name: str) -> bool:
    value = _query_value(query, name)
    if value is None:
        return False
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad_request(
        f"query parameter {name} must be true or false",
        FieldError.of(f"query.{name}", "must be true or false", value),
    )


def parse_list_request(query: QueryParams) -> ListRequest:
    """The query of GET /v0.1/servers, or a 400 Problem naming the failing parameters."""
    errors: list[FieldError] = []
    limit = 30
    raw_limit = _query_value(query, "limit")
    if raw_limit is not None:
        if raw_limit.isascii() and raw_limit.isdigit() and 1 <= int(raw_limit) <= MAX_LIMIT:
            limit = int(raw_limit)
        else:
            errors.append(
                FieldError.of("query.limit", f"must be an integer from 1 to {MAX_LIMIT}", raw_limit)
            )
    since = None
    raw_since = _query_value(query, "updated_since")
    if raw_since is not None:
        try:
            since = parse_rfc3339(raw_since)
        except ValueError as exc:
            errors.append(FieldError.of("query.updated_since", str(exc), raw_since))
    include_deleted = False
    try:
        include_deleted = _boolean(query, "include_deleted")
    except Problem as problem:
        errors += problem.errors
    if errors:
        raise Problem(400, "the query is not valid", errors)
    return ListRequest(
        limit=limit,
        cursor=_query_value(query, "cursor") or None,
        search=_query_value(query, "search") or None,
        updated_since=since,
        version=_query_value(query, "version") or None,
        include_deleted=include_deleted,
    )


def _path_version(version: str) -> str:
    if (
        not version
        or len(version) > VERSION_MAX
        or any(ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF for c in version)
    ):
        raise not_found("no such version")
    return version


class RegistryApi:
    """The API endpoints as one ASGI app (routing by :func:`bastion.registry.paths.parse`)."""

    def __init__(
        self,
        registry: Registry,
        settings: RegistrySettings,
        *,
        prefix: str,
        max_body: int,
        cache: ReadCache | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.prefix = prefix
        self.max_body = max_body
        self.cache = cache
        self._callers: dict[Principal | None, tuple[Caller, Visibility]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if self.cache is not None and scope["method"] == "GET":
                answer = await self._kept(scope)
                if answer is not None:
                    await _send(send, answer.body)
                    return
            response = await self._handle(Request(scope, receive))
        except Problem as problem:
            note = note_of(scope)
            if note is not None and note.result is None:
                note.result = problem.audit_result
            response = problem.response()
        await response(scope, receive, send)

    def _caller(self, scope: Scope) -> tuple[Caller, Visibility]:
        """The caller of a request and what it may see (kept per principal: the verifier's
        cache hands out the same principal for the same token)."""
        principal = principal_of(scope)
        if principal is None and not self.settings.anonymous_read:
            # Unreachable behind the token check; refuse rather than trust the wiring.
            raise Problem(401, "this registry needs an access token", result="unauthorized")
        found = self._callers.get(principal)
        if found is None:
            if len(self._callers) >= _MAX_CALLERS:
                self._callers.clear()
            caller = caller_of(principal, self.settings)
            found = self._callers[principal] = (caller, caller.viewer())
        return found

    async def _kept(self, scope: Scope) -> Answer | None:
        """The answer kept for this read and caller's visibility, its audit note filled in;
        None when there is none (the request takes the full path)."""
        assert self.cache is not None
        caller, view = self._caller(scope)
        generation = await self.cache.generation()
        answer = self.cache.get(_read_key(scope, view), generation)
        if answer is None:
            return None
        # Only answers of well-formed reads are kept: what remains to check is the caller.
        self.registry.need_read(caller)
        note = note_of(scope)
        if note is not None:
            note.detail, note.detail_json = answer.detail, answer.detail_json
            if answer.latest is not None:
                note.version = answer.latest
        return answer

    async def _body(self, request: Request) -> dict[str, Any]:
        media = Headers(scope=request.scope).get("content-type")
        if media is not None and "json" not in media.lower():
            raise Problem(415, f"send the body as application/json, not {media[:100]}")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise Problem(413, f"the request body is larger than {self.max_body} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body:
                raise Problem(413, f"the request body is larger than {self.max_body} bytes")
        return parse_object(bytes(body))

    async def _handle(self, request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.scope["path"].encode("utf-8")
        target = paths.parse(raw, self.prefix)
        if target is None:
            raise not_found("no such registry endpoint; see /openapi.json")
        method = request.method
        if method not in target.allowed:
            raise Problem(
                405,
                f"{method} is not allowed here; use {', '.join(target.allowed)}",
                headers={"Allow": ", ".join(target.allowed)},
            )
        if target.name is not None and name_problem(target.name) is not None:
            raise not_found(f"no server named {target.name[:200]!r}")
        caller, view = self._caller(request.scope)
        note = note_of(request.scope)
        query = request.query_params
        if target.resource == "list":
            list_request = parse_list_request(query)
            extra: dict[str, object] = {
                k: v
                for k, v in (
                    ("search", list_request.search),
                    ("version", list_request.version),
                    ("updated_since", query.get("updated_since")),
                )
                if v is not None
            }
            return await self._read(
                request.scope, caller, view, self._list(caller, list_request, extra)
            )
        if target.resource == "publish":
            document = await self._body(request)
            if note is not None:
                note.name = document.get("name") if isinstance(document.get("name"), str) else None
                version = document.get("version")
                note.version = version if isinstance(version, str) else None
            entry = await self.registry.publish(caller, document)
            if note is not None:
                note.detail = {"approved": entry.approved, "groups": list(entry.groups)}
            return _json(server_response(entry))
        name = target.name or ""
        include_deleted = _boolean(query, "include_deleted") if method == "GET" else False
        if target.resource == "list_versions":
            return await self._read(
                request.scope, caller, view, self._versions(caller, name, include_deleted)
            )
        if target.resource == "server_status":
            change = parse_status_change(await self._body(request))
            count, entries = await self.registry.set_server_status(caller, name, change)
            if note is not None:
                note.detail = {"status": change.status, "updatedCount": count}
            return _json({"updatedCount": count, "servers": [server_response(e) for e in entries]})
        version = _path_version(target.version or "")
        if target.resource == "version_status":
            change = parse_status_change(await self._body(request))
            entry = await self.registry.set_status(caller, name, version, change)
            if note is not None:
                note.detail = {"status": change.status, "approved": entry.approved}
            return _json(server_response(entry))
        if method == "GET":
            return await self._read(
                request.scope, caller, view, self._version(caller, name, version, include_deleted)
            )
        if method == "PUT":
            entry = await self.registry.update(caller, name, version, await self._body(request))
            return _json(server_response(entry))
        entry = await self.registry.delete(caller, name, version)
        return _json(server_response(entry))

    async def _read(
        self,
        scope: Scope,
        caller: Caller,
        view: Visibility,
        build: Callable[[], Awaitable[Answer]],
    ) -> Response:
        """Answer a read: build it (:meth:`_kept` answers it next time while the registry is
        unchanged, :mod:`bastion.registry.read_cache`) and fill in its audit note."""
        self.registry.need_read(caller)
        generation = await self.cache.generation() if self.cache is not None else None
        answer = await build()
        if self.cache is not None:
            self.cache.put(_read_key(scope, view), generation, answer)
        note = note_of(scope)
        if note is not None:
            note.detail, note.detail_json = answer.detail, answer.detail_json
            if answer.latest is not None:
                note.version = answer.latest
        return _body_response(answer.body)

    def _list(
        self, caller: Caller, request: ListRequest, extra: dict[str, object]
    ) -> Callable[[], Awaitable[Answer]]:
        async def build() -> Answer:
            page = await self.registry.list_servers(caller, request)
            metadata: dict[str, Any] = {"count": len(page.entries)}
            if page.next_cursor is not None:
                metadata["nextCursor"] = page.next_cursor
            document = {"servers": [server_response(e) for e in page.entries], "metadata": metadata}
            entries = [f"{e.name}@{e.version}" for e in page.entries]
            detail = {"count": len(page.entries), "entries": entries, **extra}
            return Answer(_encode(document), detail)

        return build

    def _versions(
        self, caller: Caller, name: str, include_deleted: bool
    ) -> Callable[[], Awaitable[Answer]]:
        async def build() -> Answer:
            entries = await self.registry.list_versions(
                caller, name, include_deleted=include_deleted
            )
            document = {
                "servers": [server_response(e) for e in entries],
                "metadata": {"count": len(entries)},
            }
            return Answer(_encode(document), {"count": len(entries)})

        return build

    def _version(
        self, caller: Caller, name: str, version: str, include_deleted: bool
    ) -> Callable[[], Awaitable[Answer]]:
        async def build() -> Answer:
            entry = await self.registry.get(caller, name, version, include_deleted=include_deleted)
            latest = entry.version if version == LATEST else None
            return Answer(_encode(server_response(entry)), latest=latest)

        return build


def _read_key(scope: Scope, view: Visibility) -> Hashable:
    """What a read's answer depends on: its path and query as sent, and the visibility."""
    return (scope.get("raw_path") or scope["path"], scope.get("query_string", b""), view)


async def _send(send: Send, body: bytes) -> None:
    """Send a kept JSON answer (the headers :func:`_body_response` gives)."""
    headers = [
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(body)).encode("latin-1")),
        (b"content-type", b"application/json"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = ["META_KEY", "RegistryApi", "parse_list_request", "server_response"]
