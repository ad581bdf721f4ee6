"""Upstreams with their own OAuth (``auth = "oauth"``): the person's upstream token on each
request, or the answer the gateway gives in the upstream's place.

After the resource-server middleware has checked bastion's token (the caller is
:func:`~bastion.resource.principal.principal_of`), per request:

- A machine (a client_credentials token: ``sub`` is the client itself) has no account
  upstream: 403 with a JSON-RPC error saying the upstream needs a person's sign-in.
- A person without a usable connection: every JSON-RPC request of the POST (``initialize``
  included) is answered, with HTTP 200, by error -32042 (MCP 2025-11-25 client/elicitation,
  "URL Elicitation Required Error") whose ``data.elicitations`` holds one URL elicitation: the
  connect page on bastion's issuer with a random elicitation id recorded for this person and
  client (:meth:`~bastion.vault.tokens.VaultTokens.connect_request`), nothing secret in it
  (elicitation, "Safe URL Handling"). The error's ``message`` carries the URL too, for clients
  without URL elicitation. Nothing reaches the upstream.
- A POST of only notifications and responses without a connection gets 202 and is not
  forwarded: it asks for no answer, and the upstream holds no session for a person who has
  not connected (``initialize`` was answered by -32042); the next request brings the link.
- GET (the SSE stream) and DELETE without a connection: 403 with a JSON-RPC error saying to
  connect first (no elicitation: only a JSON-RPC response can carry one; 401 would send the
  client to bastion's authorization server for a token it already has).
- With a connection: the upstream gets ``Authorization: Bearer <the person's upstream
  token>`` (the client's own Authorization is dropped before, MCP "Token Passthrough", R05).
  When the upstream answers 401, the connection is deleted and the request answered as
  without one, so the next call after connecting again works (no loop of errors).
- The upstream's authorization server unreachable (the token is due for refresh and has
  expired) or misconfigured: 502 with a JSON-RPC error naming the upstream.
- bastion's database (where the tokens are) failing: 503 with a JSON-RPC error; the request
  does not reach the upstream.
"""

from __future__ import annotations

import json
import logging

from sqlalchemy.exc import SQLAlchemyError
from starlette.types import Scope, Send

from bastion.config import UpstreamSettings
from bastion.edge import jsonrpc
from bastion.edge.asgi import send_bytes, send_empty, send_json
from bastion.edge.body import RequestBody
from bastion.logs import get_logger
from bastion.ops import metrics
from bastion.resource.principal import Principal, principal_of
from bastion.vault.errors import ConnectionNeeded, UpstreamMisconfigured, VaultError
from bastion.vault.tokens import VaultTokens

log = get_logger(__name__)

# MCP 2025-11-25, client/elicitation: "URL Elicitation Required Error".
URL_ELICITATION_REQUIRED = -32042


class UpstreamOAuth:
    """The per-request side of one ``auth = "oauth"`` upstream (see the module docstring)."""

    def __init__(self, upstream: UpstreamSettings, tokens: VaultTokens) -> None:
        if upstream.name not in tokens.servers:
            raise ValueError(f'upstream {upstream.name!r} does not have auth = "oauth"')
        self.name = upstream.name
        self._tokens = tokens

    def __repr__(self) -> str:
        return f"UpstreamOAuth(upstream={self.name!r})"

    async def token_for(
        self, scope: Scope, method: str, body: RequestBody, send: Send
    ) -> str | None:
        """The upstream access token to send for this request, or None after answering the
        request here."""
        person = self._person(scope)
        if person is None:
            await self._refuse_machine(send, body)
            return None
        try:
            return await self._tokens.access_token(person.subject, self.name)
        except ConnectionNeeded as exc:
            log.info(
                "vault: %s has no usable connection to %s: %s",
                person.subject,
                self.name,
                exc.detail,
            )
            await self._ask_or_fail(person, method, body, send)
        except (SQLAlchemyError, OSError) as exc:
            await self._database_failed(exc, body, send)
        except VaultError as exc:  # the upstream's OAuth unreachable or misconfigured
            misconfigured = isinstance(exc, UpstreamMisconfigured)
            reason = "oauth_misconfigured" if misconfigured else "oauth_unavailable"
            metrics.upstream_failed(self.name, "http", reason)
            log.log(logging.ERROR if misconfigured else logging.WARNING, "vault: %s", exc.detail)
            await send_json(
                send, 502, jsonrpc.error(jsonrpc.UPSTREAM_ERROR, exc.message, _one_id(body))
            )
        return None

    async def refused(
        self, scope: Scope, method: str, body: RequestBody, token: str, send: Send
    ) -> None:
        """The upstream answered 401 to ``token``: delete the connection, then answer as
        without one."""
        person = self._person(scope)
        if person is None:  # token_for gave no token to a machine; never reached
            await self._refuse_machine(send, body)
            return
        metrics.upstream_failed(self.name, "http", "token_refused")
        try:
            await self._tokens.forget(person.subject, self.name, refused=token)
        except (SQLAlchemyError, OSError) as exc:
            await self._database_failed(exc, body, send)
            return
        await self._ask_or_fail(person, method, body, send)

    async def _ask_or_fail(
        self, person: Principal, method: str, body: RequestBody, send: Send
    ) -> None:
        try:
            await self.ask_to_connect(person, method, body, send)
        except (SQLAlchemyError, OSError) as exc:
            await self._database_failed(exc, body, send)

    async def _database_failed(self, exc: Exception, body: RequestBody, send: Send) -> None:
        metrics.upstream_failed(self.name, "http", "vault_unavailable")
        log.error(
            "vault: cannot read or write the upstream tokens of %s in bastion's database: %r; "
            "check that the database is up and that the gateway's database_url is right",
            self.name,
            exc,
        )
        message = f"the gateway cannot reach its token store for {self.name!r}; try again later"
        await send_json(send, 503, jsonrpc.error(jsonrpc.UPSTREAM_ERROR, message, _one_id(body)))

    async def ask_to_connect(
        self, person: Principal, method: str, body: RequestBody, send: Send
    ) -> None:
        """Answer a request of ``person``, who has no usable connection (the module docstring
        says how, per method and message)."""
        if method != "POST":
            message = (
                f"upstream {self.name!r} needs you to connect your account there first; "
                "send a request (a POST) to get the link"
            )
            await send_json(send, 403, jsonrpc.error(jsonrpc.INVALID_REQUEST, message))
            return
        if body.problem is not None:
            await send_json(send, 400, jsonrpc.error(body.problem.code, str(body.problem)))
            return
        ids = jsonrpc.request_ids(body.messages)
        if not ids:
            await send_empty(send, 202)
            return
        elicitation_id, url = await self._tokens.connect_request(
            person.subject, self.name, person.client_id
        )
        text = f"Connect your account at {self.name} to continue: open {url}"
        error = {
            "code": URL_ELICITATION_REQUIRED,
            "message": text,
            "data": {
                "elicitations": [
                    {"mode": "url", "elicitationId": elicitation_id, "url": url, "message": text}
                ]
            },
        }
        answers = [{"jsonrpc": "2.0", "id": found, "error": error} for found in ids]
        document = answers if _is_batch(body) else answers[0]
        await send_bytes(
            send, 200, json.dumps(document).encode(), [("Content-Type", "application/json")]
        )

    @staticmethod
    def _person(scope: Scope) -> Principal | None:
        """The caller when it is a person: a client_credentials token speaks for the client
        itself (``sub`` is the client id)."""
        principal = principal_of(scope)
        if principal is None or principal.subject == principal.client_id:
            return None
        return principal

    async def _refuse_machine(self, send: Send, body: RequestBody) -> None:
        message = (
            f"upstream {self.name!r} acts for a person with their own account there; a "
            "client's own token (client_credentials) cannot use it: sign in as a person"
        )
        await send_json(send, 403, jsonrpc.error(jsonrpc.INVALID_REQUEST, message, _one_id(body)))


def _one_id(body: RequestBody) -> jsonrpc.RequestId | None:
    ids = jsonrpc.request_ids(body.messages)
    return ids[0] if len(ids) == 1 else None


def _is_batch(body: RequestBody) -> bool:
    return body.raw.lstrip().startswith(b"[")


__all__ = ["URL_ELICITATION_REQUIRED", "UpstreamOAuth"]
