"""An upstream registry for the mirror tests: the recorded official-registry pages of
``fixtures/`` served as ``GET /v0.1/servers``, honouring ``limit`` (capped at ``page_size``),
``cursor`` (``<name>:<version>``, as the official registry's), ``search``, ``updated_since`` and
``include_deleted`` (always on with ``updated_since``, registry OpenAPI). Tests change entries
(:meth:`Upstream.put`), or make a page hostile (:attr:`Upstream.override`)."""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.registry.times import format_rfc3339, parse_rfc3339

OFFICIAL = "io.modelcontextprotocol.registry/official"
FIXTURES = Path(__file__).parent / "fixtures"
SCHEMA = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"


def recorded() -> list[dict[str, Any]]:
    """Every ServerResponse of the recorded pages, in order."""
    found: list[dict[str, Any]] = []
    for page in sorted(FIXTURES.glob("official-servers-page-*.json")):
        found += json.loads(page.read_text())["servers"]
    return found


def response(
    name: str,
    version: str,
    *,
    updated: str,
    status: str = "active",
    published: str | None = None,
    **server: Any,
) -> dict[str, Any]:
    """A ServerResponse as the official registry answers it."""
    document = {
        "$schema": SCHEMA,
        "name": name,
        "description": server.pop("description", f"The {name.split('/')[1]} server"),
        "version": version,
        "remotes": [{"type": "streamable-http", "url": "https://mcp.example.com/mcp"}],
        **server,
    }
    meta = {
        "status": status,
        "publishedAt": published or updated,
        "updatedAt": updated,
        "isLatest": True,
    }
    return {"server": document, "_meta": {OFFICIAL: meta}}


@dataclass
class Upstream:
    """The upstream's entries, what it was asked, and an optional hostile answer."""

    entries: list[dict[str, Any]] = field(default_factory=recorded)
    page_size: int = 5
    honour_search: bool = True
    requests: list[dict[str, str]] = field(default_factory=list)
    # Given the request's query and the 0-based number of the request, a raw answer instead.
    override: Callable[[dict[str, str], int], Response | None] | None = None
    # Run before answering request number n (0-based): what happens elsewhere meanwhile.
    meanwhile: Callable[[int], Awaitable[None]] | None = None

    def put(self, item: dict[str, Any]) -> None:
        """Add or replace (same name and version) an entry."""
        key = (item["server"]["name"], item["server"]["version"])
        self.entries = [e for e in self.entries if self._key(e) != key] + [item]

    def change(self, name: str, version: str, *, updated: str, **meta: Any) -> None:
        """Change an entry's official _meta (status, statusMessage) at ``updated``."""
        for entry in self.entries:
            if self._key(entry) == (name, version):
                entry["_meta"][OFFICIAL].update(meta, updatedAt=updated)
                return
        raise KeyError((name, version))

    @staticmethod
    def _key(entry: dict[str, Any]) -> tuple[str, str]:
        return entry["server"]["name"], entry["server"]["version"]

    def _selected(self, query: dict[str, str]) -> list[dict[str, Any]]:
        chosen = sorted(self.entries, key=self._key)
        since = query.get("updated_since")
        deleted = query.get("include_deleted") == "true" or since is not None
        if since is not None:
            start = parse_rfc3339(since)
            chosen = [e for e in chosen if parse_rfc3339(e["_meta"][OFFICIAL]["updatedAt"]) > start]
        if not deleted:
            chosen = [e for e in chosen if e["_meta"][OFFICIAL]["status"] != "deleted"]
        term = query.get("search", "").lower()
        if term and self.honour_search:
            chosen = [
                e
                for e in chosen
                if term in e["server"]["name"].lower() or term in e["server"]["description"].lower()
            ]
        cursor = query.get("cursor")
        if cursor:
            name, _, version = cursor.rpartition(":")
            chosen = [e for e in chosen if self._key(e) > (name, version)]
        return chosen

    async def servers(self, request: Request) -> Response:
        query = dict(request.query_params)
        number = len(self.requests)
        self.requests.append(query)
        if self.meanwhile is not None:
            await self.meanwhile(number)
        if self.override is not None:
            answer = self.override(query, number)
            if answer is not None:
                return answer
        try:
            limit = min(int(query.get("limit", "30")), self.page_size)
            if "updated_since" in query:
                format_rfc3339(parse_rfc3339(query["updated_since"]))
        except ValueError as exc:
            return JSONResponse({"title": "Bad Request", "detail": str(exc)}, status_code=400)
        chosen = self._selected(query)
        page = copy.deepcopy(chosen[:limit])
        metadata: dict[str, Any] = {"count": len(page)}
        if len(chosen) > limit:
            name, version = self._key(page[-1])
            metadata["nextCursor"] = f"{name}:{version}"
        return JSONResponse({"servers": page, "metadata": metadata})

    def app(self) -> Starlette:
        """The upstream as an ASGI app."""
        return Starlette(routes=[Route("/v0.1/servers", self.servers)])


__all__ = ["OFFICIAL", "Upstream", "recorded", "response"]
