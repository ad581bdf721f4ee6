"""OAuth 2.0 Authorization Server Metadata (RFC 8414 §2), with the OpenID Connect Discovery 1.0
§3 members a relying party reads.

:class:`ServerMetadata` is the document as typed data: the authorization server builds its
document from it, and the client, federation and the doctor parse fetched documents into it.
:meth:`ServerMetadata.parse` checks each member's form (URLs, arrays of strings); what a side
then demands (an exact issuer, RFC 8414 §3.3; https; PKCE S256; the members it needs) is the
side's own check, made on the typed result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from bastion.oauth.metadata import (
    MetadataError,
    flag,
    required_string,
    strings,
    to_json,
    unknown,
    url,
)


def advertises_s256(code_challenge_methods_supported: tuple[str, ...] | None) -> bool:
    """Whether PKCE with S256 is advertised (RFC 7636 §4.2, RFC 8414 §2; MCP security
    considerations: absent means no PKCE)."""
    return "S256" in (code_challenge_methods_supported or ())


class AdvertisedMethods:
    """What an RFC 8414 §2 document advertises about PKCE and client authentication, for the
    classes that hold its two members (:class:`ServerMetadata`, and the client's view of it)."""

    code_challenge_methods_supported: tuple[str, ...] | None
    token_endpoint_auth_methods_supported: tuple[str, ...] | None

    @property
    def supports_s256(self) -> bool:
        """Whether PKCE with S256 is advertised (see :func:`advertises_s256`)."""
        return advertises_s256(self.code_challenge_methods_supported)

    @property
    def auth_methods(self) -> tuple[str, ...]:
        """Token endpoint auth methods; RFC 8414 §2 default ``client_secret_basic`` when
        absent."""
        return self.token_endpoint_auth_methods_supported or ("client_secret_basic",)


@dataclass(frozen=True)
class ServerMetadata(AdvertisedMethods):
    """An RFC 8414 §2 document. Members are in the order the authorization server serves them;
    ``extra`` keeps the members this model does not know, as they were."""

    issuer: str
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    jwks_uri: str | None = None
    scopes_supported: tuple[str, ...] | None = None
    response_types_supported: tuple[str, ...] | None = None
    response_modes_supported: tuple[str, ...] | None = None
    grant_types_supported: tuple[str, ...] | None = None
    token_endpoint_auth_methods_supported: tuple[str, ...] | None = None
    token_endpoint_auth_signing_alg_values_supported: tuple[str, ...] | None = None
    code_challenge_methods_supported: tuple[str, ...] | None = None
    authorization_response_iss_parameter_supported: bool | None = None
    client_id_metadata_document_supported: bool | None = None
    introspection_endpoint: str | None = None
    introspection_endpoint_auth_methods_supported: tuple[str, ...] | None = None
    revocation_endpoint: str | None = None
    revocation_endpoint_auth_methods_supported: tuple[str, ...] | None = None
    registration_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    id_token_signing_alg_values_supported: tuple[str, ...] | None = None
    # RFC 9449 §5.1: DPoP is supported, with proofs signed with these algorithms.
    dpop_signing_alg_values_supported: tuple[str, ...] | None = None
    extra: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}), compare=False)

    @classmethod
    def parse(cls, doc: Mapping[str, object]) -> ServerMetadata:
        """Read a fetched document; raise :class:`~bastion.oauth.metadata.MetadataError` at the
        first malformed member.

        ``issuer`` is required (RFC 8414 §2); endpoints are URLs; the ``*_supported`` members
        are arrays of strings; the two flags count only as JSON booleans. The members a client
        relies on most are read first (issuer, token, authorization and registration
        endpoints, PKCE methods), so a document with several defects is reported by the one
        that matters most.
        """
        issuer = required_string(doc, "issuer")
        token_endpoint = url(doc, "token_endpoint")
        authorization_endpoint = url(doc, "authorization_endpoint")
        registration_endpoint = url(doc, "registration_endpoint")
        code_challenge_methods = strings(doc, "code_challenge_methods_supported")
        return cls(
            issuer=issuer,
            authorization_endpoint=authorization_endpoint,
            token_endpoint=token_endpoint,
            jwks_uri=url(doc, "jwks_uri"),
            scopes_supported=strings(doc, "scopes_supported"),
            response_types_supported=strings(doc, "response_types_supported"),
            response_modes_supported=strings(doc, "response_modes_supported"),
            grant_types_supported=strings(doc, "grant_types_supported"),
            token_endpoint_auth_methods_supported=strings(
                doc, "token_endpoint_auth_methods_supported"
            ),
            token_endpoint_auth_signing_alg_values_supported=strings(
                doc, "token_endpoint_auth_signing_alg_values_supported"
            ),
            code_challenge_methods_supported=code_challenge_methods,
            authorization_response_iss_parameter_supported=flag(
                doc, "authorization_response_iss_parameter_supported"
            ),
            client_id_metadata_document_supported=flag(
                doc, "client_id_metadata_document_supported"
            ),
            introspection_endpoint=url(doc, "introspection_endpoint"),
            introspection_endpoint_auth_methods_supported=strings(
                doc, "introspection_endpoint_auth_methods_supported"
            ),
            revocation_endpoint=url(doc, "revocation_endpoint"),
            revocation_endpoint_auth_methods_supported=strings(
                doc, "revocation_endpoint_auth_methods_supported"
            ),
            registration_endpoint=registration_endpoint,
            userinfo_endpoint=url(doc, "userinfo_endpoint"),
            id_token_signing_alg_values_supported=strings(
                doc, "id_token_signing_alg_values_supported"
            ),
            dpop_signing_alg_values_supported=strings(doc, "dpop_signing_alg_values_supported"),
            extra=unknown(doc, cls),
        )

    def to_json(self) -> dict[str, object]:
        """The JSON object: members in declaration order, absent ones left out, then ``extra``."""
        return to_json(self)


__all__ = ["AdvertisedMethods", "MetadataError", "ServerMetadata", "advertises_s256"]
