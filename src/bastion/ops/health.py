"""``/healthz`` and ``/readyz`` on every listener, for load balancers and orchestrators.

- ``GET /healthz``: the process is alive and its event loop answers; 200 ``{"status": "ok"}``,
  no I/O. A liveness probe: failing it means restart the process.
- ``GET /readyz``: whether this process should get traffic now; 200 ``{"status": "ready"}`` or
  503 ``{"status": "not_ready"}``, each with ``checks``: ``{name: {"ok": bool, "reason": ...}}``.
  A readiness probe: failing it means take the process out of the load balancer, not restart it.

The answers are unauthenticated, so they say only a check's name, whether it passed and a short
fixed reason; what went wrong (the exception, the database URL, an upstream's address) goes to
the log, once per change. Both are sent with ``Cache-Control: no-store`` so no proxy serves a
stale "ready". Checks run concurrently, each within :data:`CHECK_TIMEOUT` seconds, and probes
that arrive while a run is under way share its answer: a hanging database costs one connection
attempt per run, never one per probe.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import sqlalchemy as sa
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.edge.asgi import send_bytes
from bastion.logs import get_logger
from bastion.store.database import Database, alembic_config

log = get_logger("bastion.ops.health")

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
PROBE_PATHS = (HEALTH_PATH, READY_PATH)
CHECK_TIMEOUT = 2.0


@dataclass(frozen=True)
class Outcome:
    """What one check found: ``ok``, and when not, a short fixed ``reason`` (never exception
    text: the answer is public). ``detail`` is for the log only."""

    ok: bool
    reason: str = ""
    detail: str = ""


Check = Callable[[], Awaitable[Outcome]]


@dataclass(frozen=True)
class _Entry:
    check: Check
    required: bool
    failure: str


class Readiness:
    """The readiness checks of one app. The app's lifespan adds its checks (:meth:`require`,
    :meth:`inform`) once it has opened what they look at and calls :meth:`started`; until then,
    and after :meth:`stopping`, the app is not ready. ``parts`` are the readiness of apps
    served together on one listener (the authorization server and the registry): their checks
    are run instead of checks of its own, a name they share passing only when it passes in
    each."""

    def __init__(self, *, timeout: float = CHECK_TIMEOUT, parts: Sequence[Readiness] = ()) -> None:
        self.timeout = timeout
        self.parts = tuple(parts)
        self._entries: dict[str, _Entry] = {}
        self._serving = False
        self._run: asyncio.Task[dict[str, tuple[Outcome, bool]]] | None = None
        self._last: dict[str, bool] = {}

    def require(self, name: str, check: Check, *, failure: str = "check failed") -> None:
        """``check`` must pass for the app to be ready; ``failure`` is the reason given when
        it raises."""
        self._entries[name] = _Entry(check, True, failure)

    def inform(self, name: str, check: Check, *, failure: str = "check failed") -> None:
        """``check`` is reported but does not decide readiness."""
        self._entries[name] = _Entry(check, False, failure)

    def started(self) -> None:
        """The app has started: its checks now decide."""
        self._serving = True

    def stopping(self) -> None:
        """The app is shutting down: not ready from now on."""
        self._serving = False
        self._entries.clear()

    @property
    def serving(self) -> bool:
        """Whether the app (or every part) has started and not begun to stop."""
        if self.parts:
            return all(part.serving for part in self.parts)
        return self._serving

    async def report(self) -> tuple[bool, dict[str, dict[str, object]]]:
        """Run the checks (or join a run under way): whether ready, and each check's result."""
        if not self.serving:
            return False, {"started": {"ok": False, "reason": "starting or stopping"}}
        if self._run is None or self._run.done():
            self._run = asyncio.ensure_future(self._results())
        results = await asyncio.shield(self._run)
        ready = all(outcome.ok or not required for outcome, required in results.values())
        checks: dict[str, dict[str, object]] = {}
        for name, (outcome, required) in sorted(results.items()):
            entry: dict[str, object] = {"ok": outcome.ok}
            if not outcome.ok:
                entry["reason"] = outcome.reason
            if not required:
                entry["required"] = False
            checks[name] = entry
        return ready, checks

    async def _results(self) -> dict[str, tuple[Outcome, bool]]:
        """Every check of every part at once; a name several parts share keeps its first
        failure, and is required when any part requires it."""
        runs = [
            (name, entry, part._one(name, entry))
            for part in self.parts or (self,)
            for name, entry in part._entries.items()
        ]
        outcomes = await asyncio.gather(*(run for _, _, run in runs))
        found: dict[str, tuple[Outcome, bool]] = {}
        for (name, entry, _), outcome in zip(runs, outcomes, strict=True):
            earlier, required = found.get(name, (outcome, entry.required))
            found[name] = (earlier if not earlier.ok else outcome, required or entry.required)
        return found

    async def _one(self, name: str, entry: _Entry) -> Outcome:
        try:
            outcome = await asyncio.wait_for(entry.check(), self.timeout)
        except TimeoutError:
            outcome = Outcome(False, "timed out", f"no answer within {self.timeout} s")
        except Exception as exc:  # any failure is "not ready", reported without its text
            outcome = Outcome(False, entry.failure, f"{type(exc).__name__}: {exc}")
        self._note(name, outcome)
        return outcome

    def _note(self, name: str, outcome: Outcome) -> None:
        """Log a check's change of state (not every probe): what failed and why, or that it
        passes again."""
        if self._last.get(name, True) == outcome.ok:
            self._last[name] = outcome.ok
            return
        self._last[name] = outcome.ok
        if outcome.ok:
            log.warning("readiness: %s passes again", name)
        else:
            detail = f" ({outcome.detail})" if outcome.detail else ""
            log.warning("readiness: %s failed: %s%s", name, outcome.reason, detail)


class Probes:
    """Answer ``/healthz`` and ``/readyz`` (also under each of ``prefixes``, e.g. the issuer's
    path) before the app sees the request; everything else goes to the app. Only GET and HEAD
    (405 with ``Allow`` otherwise)."""

    def __init__(self, app: ASGIApp, *, readiness: Readiness, prefixes: Sequence[str] = ()) -> None:
        self.app = app
        self.readiness = readiness
        self.paths = {f"{prefix}{path}": path for prefix in ("", *prefixes) for path in PROBE_PATHS}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        probe = self.paths.get(scope.get("path", "")) if scope["type"] == "http" else None
        if probe is None:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            document: Mapping[str, object] = {"status": "method_not_allowed"}
            await _answer(send, method, 405, document, [("Allow", "GET, HEAD")])
            return
        if probe == HEALTH_PATH:
            await _answer(send, method, 200, {"status": "ok"})
            return
        ready, checks = await self.readiness.report()
        status = "ready" if ready else "not_ready"
        await _answer(send, method, 200 if ready else 503, {"status": status, "checks": checks})


async def _answer(
    send: Send,
    method: str,
    status: int,
    document: Mapping[str, object],
    headers: Sequence[tuple[str, str]] = (),
) -> None:
    body = json.dumps(document).encode("utf-8")
    await send_bytes(
        send,
        status,
        b"" if method == "HEAD" else body,
        [("Content-Type", "application/json"), ("Cache-Control", "no-store"), *headers],
        length=len(body),
    )


# -- checks ----------------------------------------------------------------------------------


@cache
def head_revision() -> str | None:
    """The newest migration of this version of bastion (Alembic's head)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def database_check(db: Database) -> Check:
    """The database answers ``SELECT 1`` (through the app's own pool)."""

    async def check() -> Outcome:
        async with db.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return Outcome(True)

    return check


def migrations_check(db: Database) -> Check:
    """The schema is at this version's newest migration: older means ``bastion db upgrade``
    has not run, newer (or unknown) means a newer bastion migrated it, and this process would
    read tables it does not know."""

    async def check() -> Outcome:
        async with db.connect() as conn:
            found = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).all()
        revisions = {row[0] for row in found}
        head = head_revision()
        if revisions == {head}:
            return Outcome(True)
        seen = ", ".join(sorted(revisions)) or "none"
        return Outcome(False, "not at this version's head", f"schema at {seen}, head is {head}")

    return check


class HasKeys(Protocol):
    """A token verifier that can say whether it holds the AS's keys (``JwtVerifier``)."""

    async def has_keys(self) -> bool:
        """Whether the keys are in memory (fetched first if they never were)."""
        ...


def keys_check(verifiers: Sequence[HasKeys]) -> Check:
    """Every verifier holds the AS's JWKS: a resource without it refuses every token."""

    async def check() -> Outcome:
        held = await asyncio.gather(*(verifier.has_keys() for verifier in verifiers))
        return Outcome(True) if all(held) else Outcome(False, "not fetched")

    return check


def flag_check(flag: Callable[[], bool], reason: str) -> Check:
    """Passes while ``flag()`` is true (state kept in memory, no I/O)."""

    async def check() -> Outcome:
        return Outcome(True) if flag() else Outcome(False, reason)

    return check


__all__ = [
    "CHECK_TIMEOUT",
    "HEALTH_PATH",
    "PROBE_PATHS",
    "READY_PATH",
    "Check",
    "HasKeys",
    "Outcome",
    "Probes",
    "Readiness",
    "database_check",
    "flag_check",
    "head_revision",
    "keys_check",
    "migrations_check",
]
