"""The acceptable endpoint URL: one rule, with a policy for what each use allows.

An endpoint URL (an issuer, a metadata document's endpoints, a client's jwks_uri, a Client ID
Metadata Document's URL, an upstream provider's or registry's URL) is an absolute http(s) URL
with a host and no fragment (RFC 8414 §2, RFC 6749 §3.1 and §3.1.2). Whether http is acceptable
is policy: MCP ("Communication Security") and OAuth 2.1 §1.5 require https, with http on a
loopback host for development (RFC 8252 §8.3); some uses also refuse a query (an issuer, RFC
8414 §2) or user credentials in the URL.

:meth:`EndpointUrlPolicy.problem` names the first defect, in a fixed order: the URL does not
parse, its scheme, its host, credentials, query, fragment, then http. The names are neutral;
each caller words them its own way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal
from urllib.parse import urlsplit

from bastion.oauth.redirect_uri import is_loopback_host

Problem = Literal["invalid", "scheme", "no_host", "credentials", "query", "fragment", "http"]
HttpPolicy = Literal["never", "loopback", "any"]


@dataclass(frozen=True)
class EndpointUrlPolicy:
    """What a use of endpoint URLs accepts beyond the rule every endpoint URL follows.

    ``http``: never, on a loopback host only (the default), or on any host (a test network, or
    a check that leaves http to a later one); ``query`` and ``credentials`` (user name or
    password in the authority): whether the URL may have them."""

    http: HttpPolicy = "loopback"
    query: bool = True
    credentials: bool = True

    def problem(self, url: str) -> Problem | None:
        """The first thing that makes ``url`` unacceptable under this policy, or None."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in range
        except ValueError:
            return "invalid"
        if parts.scheme not in ("http", "https"):
            return "scheme"
        if not parts.hostname:
            return "no_host"
        if not self.credentials and "@" in parts.netloc:
            return "credentials"
        if not self.query and parts.query:
            return "query"
        if parts.fragment or "#" in url:
            return "fragment"
        if parts.scheme == "http" and not self.allows_http_to(parts.hostname):
            return "http"
        return None

    def allows_http_to(self, host: str | None) -> bool:
        """Whether plain http to ``host`` is acceptable."""
        return self.http == "any" or (self.http == "loopback" and is_loopback_host(host))


ANY_HTTP = EndpointUrlPolicy(http="any")
"""The rule alone: http left to a later check (metadata members, configured service URLs)."""

REASONS: Mapping[Problem, str] = MappingProxyType(
    {
        "invalid": "is not a valid URL",
        "scheme": "must use https",
        "no_host": "must have a host",
        "credentials": "must not contain a user name or password",
        "query": "must not contain a query",
        "fragment": "must not contain a fragment",
        "http": "must use https",
    }
)
"""Plain words for each problem, to complete a sentence that names the URL; a caller replaces
those it words otherwise."""


__all__ = ["ANY_HTTP", "REASONS", "EndpointUrlPolicy", "HttpPolicy", "Problem"]
