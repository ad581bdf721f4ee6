"""OAuth 2.0 Protected Resource Metadata (RFC 9728).

The document a resource server publishes so clients find its authorization servers (RFC 9728 §2),
and the well-known URL it lives at (RFC 9728 §3.1: the suffix is inserted between host and path).
MCP requires at least one ``authorization_servers`` entry (checklist R01) and advises against
``offline_access`` in ``scopes_supported`` (R08).

:class:`ResourceMetadata` is the document as typed data: :func:`build_metadata` builds the served
one, and clients parse fetched ones with :meth:`ResourceMetadata.parse`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlsplit

from bastion.oauth.metadata import (
    MetadataError,
    check_url,
    flag,
    required_string,
    string,
    strings,
    to_json,
    unknown,
    url,
    url_problem,
)
from bastion.oauth.resource import canonical
from bastion.oauth.well_known import PROTECTED_RESOURCE, inserted

OFFLINE_ACCESS = "offline_access"
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


@dataclass(frozen=True)
class ResourceMetadata:
    """An RFC 9728 §2 document. Members are in the order bastion serves them; ``extra`` keeps
    the members this model does not know, as they were."""

    resource: str
    authorization_servers: tuple[str, ...] | None = None
    bearer_methods_supported: tuple[str, ...] | None = None
    scopes_supported: tuple[str, ...] | None = None
    resource_name: str | None = None
    resource_documentation: str | None = None
    dpop_signing_alg_values_supported: tuple[str, ...] | None = None
    dpop_bound_access_tokens_required: bool | None = None
    extra: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}), compare=False)

    @classmethod
    def parse(cls, doc: Mapping[str, object]) -> ResourceMetadata:
        """Read a fetched document; raise :class:`~bastion.oauth.metadata.MetadataError` at the
        first malformed member.

        ``resource`` is required and an absolute http(s) URL without a fragment (RFC 9728 §2,
        RFC 8707 §2); the arrays hold strings. Whether ``resource`` is the one expected
        (RFC 9728 §3.3) and whether there is an authorization server (MCP) are the client's
        checks; issuers are not checked here, so that one bad entry does not hide good ones.
        """
        resource = check_url("resource", required_string(doc, "resource"))
        return cls(
            resource=resource,
            authorization_servers=strings(doc, "authorization_servers"),
            scopes_supported=strings(doc, "scopes_supported"),
            bearer_methods_supported=strings(doc, "bearer_methods_supported"),
            resource_name=string(doc, "resource_name"),
            resource_documentation=url(doc, "resource_documentation"),
            dpop_signing_alg_values_supported=strings(doc, "dpop_signing_alg_values_supported"),
            dpop_bound_access_tokens_required=flag(doc, "dpop_bound_access_tokens_required"),
            extra=unknown(doc, cls),
        )

    def to_json(self) -> dict[str, object]:
        """The JSON object: members in declaration order, absent ones left out, then ``extra``."""
        return to_json(self)


def check_resource(resource: str) -> str:
    """Validate a resource identifier (RFC 9728 §1.2: an https URL, or http on a test or loopback
    setup, with no fragment and, here, no query) and return its canonical form (MCP authorization:
    lowercase scheme and host, no trailing slash)."""
    try:
        parts = urlsplit(resource)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"resource {resource!r} is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"resource must be an absolute http(s) URL; got {resource!r}")
    if parts.fragment or "#" in resource:
        raise ValueError(f"resource must not have a fragment (RFC 9728 §1.2); got {resource!r}")
    if parts.query:
        raise ValueError(
            f"resource should not have a query (RFC 9728 §1.2) and bastion refuses one; "
            f"got {resource!r}"
        )
    return canonical(resource)


def metadata_url(resource: str) -> str:
    """The URL of the metadata of ``resource`` (RFC 9728 §3.1).

    ``https://h/.well-known/oauth-protected-resource/<path>``, or
    ``https://h/.well-known/oauth-protected-resource`` when the resource has no path.
    """
    return inserted(check_resource(resource), PROTECTED_RESOURCE)


def build_metadata(
    *,
    resource: str,
    authorization_servers: Sequence[str],
    scopes_supported: Sequence[str] = (),
    resource_name: str | None = None,
    resource_documentation: str | None = None,
    bearer_methods_supported: Sequence[str] = ("header",),
    dpop_signing_alg_values_supported: Sequence[str] = (),
    dpop_bound_access_tokens_required: bool = False,
) -> ResourceMetadata:
    """The RFC 9728 §2 metadata of a protected resource, as bastion serves it.

    ``resource`` is given canonically (it must equal the URL the client used, RFC 9728 §3.3);
    ``authorization_servers`` must name at least one issuer (MCP, checklist R01);
    ``scopes_supported`` must not contain ``offline_access`` (MCP, checklist R08: refresh tokens
    are not a resource requirement); ``bearer_methods_supported`` is ``["header"]``, the only
    method MCP allows (tokens never in the query string or a form body);
    ``dpop_signing_alg_values_supported`` the algorithms accepted in DPoP proofs and
    ``dpop_bound_access_tokens_required`` whether only DPoP-bound tokens are accepted (RFC 9728
    §2, RFC 9449 §7; left out when empty or false). Raises ValueError with the rule broken.
    """
    if not authorization_servers:
        raise ValueError(
            "authorization_servers must name at least one authorization server "
            "(MCP authorization-server discovery, RFC 9728 §2)"
        )
    for issuer in authorization_servers:
        if url_problem(issuer):
            raise ValueError(f"authorization server {issuer!r} is not an absolute http(s) URL")
    scopes = list(dict.fromkeys(scopes_supported))
    for scope in scopes:
        if not _SCOPE_TOKEN.fullmatch(scope):
            raise ValueError(
                f"scopes_supported has {scope!r}, which is not one scope-token (RFC 6749 §3.3)"
            )
    if OFFLINE_ACCESS in scopes:
        raise ValueError(
            "scopes_supported must not contain offline_access (MCP: refresh tokens are not a "
            "resource requirement); remove it from the resource's scopes"
        )
    methods = list(bearer_methods_supported)
    if not set(methods) <= {"header", "body", "query"}:
        raise ValueError(f"bearer_methods_supported has unknown methods {methods!r} (RFC 6750 §2)")
    return ResourceMetadata(
        resource=check_resource(resource),
        authorization_servers=tuple(authorization_servers),
        bearer_methods_supported=tuple(methods),
        scopes_supported=tuple(scopes) or None,
        resource_name=resource_name or None,
        resource_documentation=resource_documentation or None,
        dpop_signing_alg_values_supported=tuple(dpop_signing_alg_values_supported) or None,
        dpop_bound_access_tokens_required=True if dpop_bound_access_tokens_required else None,
    )


__all__ = [
    "OFFLINE_ACCESS",
    "MetadataError",
    "ResourceMetadata",
    "build_metadata",
    "check_resource",
    "metadata_url",
]
