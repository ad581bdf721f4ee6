"""Upstreams that take bastion's tokens for their own resource (``auth = "exchange"``): the
gateway exchanges the caller's token for one (RFC 8693) and sends that upstream.

The caller's token (audience: the upstream's resource at the gateway) never goes upstream (MCP
"Token Passthrough", R05). After the resource-server middleware has checked it, the gateway
posts it to bastion's token endpoint as ``subject_token`` (``subject_token_type`` access
token), with ``resource`` the upstream's own resource URI and the configured ``scopes``,
authenticated as its confidential client (``client_secret_basic``). The new token's audience is
the upstream, its ``sub`` the person, its ``act.sub`` the gateway's client id: a delegation the
upstream can see, not the caller's token passed on. Which exchanges are allowed is the
authorization server's ``[[token_exchange]]`` policy.

Exchanged tokens are kept per caller's token (by its SHA-256, never the token itself) until
``refresh_margin`` seconds before they expire, at most ``cache_size`` of them (the least
recently used go first), with one exchange at a time per caller's token. A revoked grant ends
both: the middleware refuses the caller's token, and the upstream's own verifier the exchanged
one. Tokens are never logged.

Answers in the upstream's place, as JSON-RPC errors naming the upstream:

- a machine (a client_credentials token: ``sub`` is the client itself): 403, the exchange
  acts for a person;
- the authorization server refusing (``invalid_target``, ``unauthorized_client``,
  ``invalid_scope``, ``invalid_request``, or ``unsupported_grant_type`` when no rule exists at
  all): 403 with its error code, since an operator must add
  or widen a ``[[token_exchange]]`` rule (or the caller's token lacks the scopes);
- the gateway's own credentials refused (``invalid_client``), the authorization server
  unreachable or answering something else: 502.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass

import httpx
from starlette.datastructures import Headers
from starlette.types import Scope, Send

from bastion.config import UpstreamSettings
from bastion.edge import jsonrpc
from bastion.edge.asgi import send_json
from bastion.logs import get_logger
from bastion.oauth.token_request import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE
from bastion.ops import metrics
from bastion.resource.principal import principal_of

log = get_logger(__name__)

# The authorization server's refusals an operator answers with a [[token_exchange]] rule (or
# the caller with other scopes): 403. Anything else is the gateway's fault or the AS's: 502.
# unsupported_grant_type: no [[token_exchange]] rule at all, so the AS offers no exchange.
POLICY_ERRORS = frozenset(
    {
        "invalid_target",
        "unauthorized_client",
        "invalid_scope",
        "invalid_request",
        "unsupported_grant_type",
    }
)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class _Exchanged:
    token: str
    renew_at: float  # time.monotonic()


class UpstreamExchange:
    """The per-request side of one ``auth = "exchange"`` upstream (see the module docstring)."""

    def __init__(
        self, upstream: UpstreamSettings, *, token_endpoint: str, http: httpx.AsyncClient
    ) -> None:
        if upstream.exchange is None:
            raise ValueError(f'upstream {upstream.name!r} does not have auth = "exchange"')
        self.name = upstream.name
        self._settings = upstream.exchange
        self._token_endpoint = token_endpoint
        self._http = http
        self._cache: OrderedDict[str, _Exchanged] = OrderedDict()
        self._pending: dict[str, asyncio.Future[tuple[str, float]]] = {}

    def __repr__(self) -> str:
        return f"UpstreamExchange(upstream={self.name!r})"

    async def token_for(
        self, scope: Scope, send: Send, request_id: jsonrpc.RequestId | None
    ) -> str | None:
        """The exchanged token to send upstream for this request, or None after answering the
        request here."""
        try:
            return await self._token(scope)
        except _Refused as refused:
            await send_json(
                send,
                refused.status,
                jsonrpc.error(
                    jsonrpc.INVALID_REQUEST if refused.status == 403 else jsonrpc.UPSTREAM_ERROR,
                    refused.message,
                    request_id,
                ),
            )
            return None

    def refused(self, token: str) -> None:
        """The upstream answered 401 to ``token``: never send it again."""
        for key, kept in list(self._cache.items()):
            if kept.token == token:
                del self._cache[key]

    async def _token(self, scope: Scope) -> str:
        principal = principal_of(scope)
        subject = _bearer(scope)
        if principal is None or subject is None or principal.subject == principal.client_id:
            raise _Refused(
                403,
                f"upstream {self.name!r} is called for a person (the gateway exchanges their "
                "token for one for it); a client's own token (client_credentials) cannot use "
                "it: sign in as a person",
            )
        key = hashlib.sha256(subject.encode()).hexdigest()
        kept = self._cache.get(key)
        if kept is not None and time.monotonic() < kept.renew_at:
            self._cache.move_to_end(key)
            return kept.token
        # One exchange at a time per caller's token: concurrent requests of one session wait
        # for the same answer.
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._exchange(subject))
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._settled(key, done))
        token, expires_in = await asyncio.shield(pending)
        self._cache[key] = _Exchanged(
            token, time.monotonic() + max(0.0, expires_in - self._settings.refresh_margin)
        )
        self._cache.move_to_end(key)
        while len(self._cache) > self._settings.cache_size:
            self._cache.popitem(last=False)
        return token

    def _settled(self, key: str, done: asyncio.Future[tuple[str, float]]) -> None:
        self._pending.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have gone

    async def _exchange(self, subject: str) -> tuple[str, float]:
        """RFC 8693 §2.1 at bastion's token endpoint: the new token and its lifetime."""
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "resource": self._settings.resource,
        }
        if self._settings.scopes:
            form["scope"] = " ".join(self._settings.scopes)
        auth = (self._settings.client_id, self._settings.client_secret.get_secret_value())
        try:
            response = await self._http.post(self._token_endpoint, data=form, auth=auth)
        except httpx.HTTPError as exc:
            metrics.upstream_failed(self.name, "http", "exchange_unavailable")
            log.warning(
                "gateway: cannot reach bastion's token endpoint %s to exchange a token for "
                "upstream %s: %s",
                self._token_endpoint,
                self.name,
                type(exc).__name__,
            )
            raise _Refused(
                502, f"upstream {self.name!r}: the gateway cannot reach the authorization server"
            ) from None
        answer = _json(response)
        issued = answer.get("access_token")
        if response.status_code == 200 and isinstance(issued, str):
            expires_in = answer.get("expires_in")
            lifetime = float(expires_in) if isinstance(expires_in, int | float) else 0.0
            return issued, lifetime
        error = answer.get("error") if isinstance(answer.get("error"), str) else None
        described = answer.get("error_description")
        if error in POLICY_ERRORS:
            metrics.upstream_failed(self.name, "http", "exchange_refused")
            log.info(
                "gateway: bastion refused to exchange a token for upstream %s (%s): %s",
                self.name,
                error,
                described,
            )
            raise _Refused(
                403,
                f"upstream {self.name!r}: the authorization server refused the token exchange "
                f"({error}: {described}); an operator must allow it with a [[token_exchange]] "
                f"rule (client {self._settings.client_id}, to {self._settings.resource})",
            )
        metrics.upstream_failed(self.name, "http", "exchange_failed")
        log.error(
            "gateway: token exchange for upstream %s failed with HTTP %s (%s): check "
            "[gateway.upstreams.exchange] client_id and client_secret",
            self.name,
            response.status_code,
            error or "no OAuth error",
        )
        raise _Refused(
            502, f"upstream {self.name!r}: the gateway could not obtain a token for it ({error})"
        )


def _bearer(scope: Scope) -> str | None:
    """The caller's bearer token (the middleware has checked it)."""
    value = Headers(scope=scope).get("authorization", "")
    kind, _, token = value.partition(" ")
    return token.strip() or None if kind.lower() == "bearer" else None


def _json(response: httpx.Response) -> dict[str, object]:
    try:
        found = response.json()
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


__all__ = ["POLICY_ERRORS", "UpstreamExchange"]
