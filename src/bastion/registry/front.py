"""The registry's front: plain reads answered in one ASGI call, everything else through the
full stack (:func:`bastion.registry.app.create_registry_app`).

A plain read is a GET under the API paths that the token check would let through unchanged
(:meth:`~bastion.resource.ResourceServerMiddleware.plain_read`: one Bearer token the verifier
accepts, with the read scope, no ``Origin``, no DPoP). It skips Starlette and the layers that
would pass it through untouched (probes, CORS, routing), and does in one place what the others
do: a request id (:mod:`bastion.ops.request_id`: the scope, the log context, the response
header, the access log), the audit record committed before the last byte
(:class:`~bastion.registry.audit.AuditMiddleware`), the HTTP metrics, and a 500 problem for an
unexpected error. Every other request, a refused one included, takes the full stack, which
answers it as before: its status, challenge and body are unchanged
(``tests/registry/test_live_reads.py`` pins them over real HTTP).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.routing import Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.logs import REQUEST_ID, get_logger
from bastion.ops.http_metrics import HttpMetrics
from bastion.ops.request_id import (
    HEADER,
    ROOT_KEY,
    SCOPE_KEY,
    access_logged,
    log_access,
    new_request_id,
    request_id_from,
)
from bastion.registry.audit import AuditMiddleware, challenge_of
from bastion.registry.problems import Problem
from bastion.resource import ResourceServerMiddleware

log = get_logger("bastion.registry")
_HEADER = HEADER.encode()


class RegistryFront:
    """Answer plain reads of ``api`` directly; hand everything else to ``full``."""

    def __init__(
        self,
        full: Starlette,
        *,
        api: ASGIApp,
        protected: ResourceServerMiddleware,
        audit: AuditMiddleware,
        prefixes: Sequence[str],
        metrics: HttpMetrics | None = None,
    ) -> None:
        self.full = full
        self.api = api
        self.protected = protected
        self.audit = audit
        self.prefixes = tuple(prefixes)
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or SCOPE_KEY in scope
            or not scope["path"].startswith(self.prefixes)
            or await self.protected.plain_read(scope) is None
        ):
            await self.full(scope, receive, send)
            return
        await self._read(scope, receive, send)

    async def _read(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = request_id_from(scope["headers"]) or new_request_id()
        scope[SCOPE_KEY] = request_id
        scope[ROOT_KEY] = scope.get("root_path", "")
        id_header = (_HEADER, request_id.encode("ascii"))
        note = self.audit.note(scope)
        status = 500
        challenge: str | None = None
        answered: int | None = None
        written = False

        async def sending(message: Message) -> None:
            nonlocal status, challenge, answered, written
            if message["type"] == "http.response.start":
                answered = status = message["status"]
                if status >= 300:
                    challenge = challenge_of(message)
                message = {**message, "headers": [*message.get("headers", []), id_header]}
            elif (
                message["type"] == "http.response.body"
                and not message.get("more_body")
                and not written
            ):
                written = True
                await self.audit.write(scope, note, status, challenge)
            await send(message)

        token = REQUEST_ID.set(request_id)
        failed = False
        try:
            try:
                await self.api(scope, receive, sending)
            except Exception:
                log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
                if not written:
                    written = True
                    await self.audit.write(scope, note, 500, None)
                if answered is not None:
                    raise
                answered = status = 500
                problem = Problem(500, "internal error; see the server log").response()
                await problem(scope, receive, self._with_id(send, id_header))
            if not written:  # the app returned without finishing an answer
                await self.audit.write(scope, note, status, challenge)
        except BaseException:
            failed = True
            raise
        finally:
            if self.metrics is not None:
                self.metrics.observe(scope, status, time.perf_counter() - started)
            if access_logged():
                log_access(scope, request_id, answered, failed, time.perf_counter() - started)
            REQUEST_ID.reset(token)

    @property
    def state(self) -> State:
        """The full stack's ``state``."""
        return self.full.state

    @property
    def router(self) -> Router:
        """The full stack's router, whose ``lifespan_context`` the servers enter."""
        return self.full.router

    @staticmethod
    def _with_id(send: Send, header: tuple[bytes, bytes]) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        return sending


__all__ = ["RegistryFront"]
