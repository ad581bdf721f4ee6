"""A private MCP registry behind OAuth (``bastion registry``): the generic registry API v0.1 of
the MCP registry project, protected as its registry authorization document describes.

Serving
    ``create_registry_app(settings)`` serves ``settings.registry``; the registry URL
    (``registry.public_url``, default ``<issuer>/registry``) is also its OAuth resource
    identifier. On the issuer's origin it shares the authorization server's listener
    (:func:`bastion.serve.create_combined_app`); ``bastion registry serve`` picks the right
    form.

API (every path also under ``/v0``; names URL-encoded, ``io.example%2Fweather``)
    ``GET /v0.1/servers`` (cursor, limit 1-100 default 30, search, updated_since, version,
    include_deleted) · ``GET /v0.1/servers/{name}/versions`` ·
    ``GET|PUT|DELETE /v0.1/servers/{name}/versions/{version|latest}`` ·
    ``PATCH /v0.1/servers/{name}/versions/{version}/status`` ·
    ``PATCH /v0.1/servers/{name}/status`` · ``POST /v0.1/publish``; ``<prefix>/openapi.json``.
    Registry metadata of an entry is under ``_meta["dev.mcp-bastion/registry"]`` (status,
    statusMessage, statusChangedAt, publishedAt, updatedAt, isLatest, approved, groups).
    Errors are RFC 9457 problems naming the failing fields.

Authorization (checklist G01-G04), see :mod:`bastion.registry.access`
    401 ``Bearer realm="mcp-registry", resource_metadata="…", scope="mcp-registry:read"``;
    mcp-registry:read lists and reads, mcp-registry:write publishes and edits within the
    caller's namespaces (``[registry.namespaces]``), mcp-registry:admin (for
    ``registry.admins``) changes status and others' entries (names configurable in
    ``[registry.scope_names]``; the old ``registry:*`` names are aliases for one release).
    Entries have groups and an approved flag; a token sees what its ``groups`` claim or
    ``mcp-registry:read:<group>`` scopes allow. Anonymous read only when
    ``registry.anonymous_read``.

Audit
    Every API request is a row of ``registry_audit`` (:mod:`bastion.registry.audit`);
    ``bastion registry audit --json`` exports JSON lines. ``bastion registry import`` copies
    server.json documents from a file or another registry (:mod:`bastion.registry.importer`).
    Gateway upstreams with ``publish = true`` are listed from the configuration at each start
    and by ``bastion registry sync-gateway`` (:mod:`bastion.registry.gateway_listing`).

Mirrors
    ``[[registry.mirrors]]`` follow upstream registries (``updated_since``, filters, curation
    kept; :mod:`bastion.registry.mirror`), in the registry's lifespan
    (:mod:`bastion.registry.mirror_schedule`) or at once with ``bastion registry sync``.
"""

from bastion.registry.api import META_KEY
from bastion.registry.app import create_registry_app
from bastion.registry.service import Registry

__all__ = [
    "META_KEY",
    "Registry",
    "create_registry_app",
]
