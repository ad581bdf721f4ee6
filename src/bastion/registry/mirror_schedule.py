"""Running the registry's mirrors in the background (``[[registry.mirrors]]``; docs/registry.md,
"Mirroring").

The registry server starts one task that runs each mirror when it is due: at start, then every
``interval_seconds``. A failed run is retried sooner and then less and less often
(:data:`RETRY_BASE` seconds, doubling, at most the larger of the interval and six hours); the
first failure of a streak is logged as a warning saying what to do, the following ones only at
debug level, and the recovery once. Nothing a run raises reaches the registry: it keeps serving.
Several registry processes may run the task; the mirror's lease lets one of them sync at a time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from bastion.config import MirrorSettings, Settings
from bastion.logs import get_logger
from bastion.registry.mirror import MirrorSync, upstream_client
from bastion.registry.times import MillisClock, system_millis
from bastion.store.database import Database

log = get_logger("bastion.registry.mirror")
RETRY_BASE = 60.0
MAX_RETRY = 6 * 3600.0
MAX_NAP = 60.0


@dataclass
class _Due:
    mirror: MirrorSettings
    at: float = 0.0
    failures: int = 0


class MirrorScheduler:
    """The background runs of ``settings.registry.mirrors`` against ``db`` (see the module
    docstring); ``retry_base`` is the first delay after a failure, in seconds."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        clock: MillisClock = system_millis,
        http: httpx.AsyncClient | None = None,
        retry_base: float = RETRY_BASE,
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.retry_base = retry_base
        self._http = http
        self._own_http: httpx.AsyncClient | None = None
        self._due = [_Due(m) for m in settings.registry.mirrors]
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"MirrorScheduler({[d.mirror.name for d in self._due]})"

    async def start(self) -> None:
        """Start the background task (the first runs happen at once)."""
        if self._due and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="bastion-registry-mirrors")

    async def aclose(self) -> None:
        """Stop the task (a run under way is cancelled; its lease runs out by itself)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._own_http is not None:
            await self._own_http.aclose()
            self._own_http = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is not None:
            return self._http
        if self._own_http is None:
            self._own_http = upstream_client()
        return self._own_http

    async def _loop(self) -> None:
        while True:
            await self.run_due()
            wait = min(d.at for d in self._due) - time.monotonic()
            await asyncio.sleep(min(max(wait, 1.0), MAX_NAP))

    async def run_due(self) -> None:
        """Run every mirror that is due, one after the other."""
        for due in self._due:
            if time.monotonic() >= due.at:
                await self.run_one(due.mirror.name)

    async def run_one(self, name: str) -> None:
        """Run mirror ``name`` now, log the outcome, and schedule its next run."""
        due = next(d for d in self._due if d.mirror.name == name)
        mirror = due.mirror
        try:
            sync = MirrorSync(self.settings, mirror, self.db, self._client(), clock=self.clock)
            report = await sync.run()
            error = report.error
        except Exception as exc:  # the registry keeps serving whatever a run raises
            error = f"{exc.__class__.__name__}: {exc}"
            report = None
        if error is None:
            if due.failures:
                log.info("mirror %s works again after %d failed runs", name, due.failures)
            due.failures = 0
            due.at = time.monotonic() + mirror.interval_seconds
            if report is not None and not report.busy:
                counts = {k: v for k, v in report.counts().items() if v and k != "unchanged"}
                if counts:
                    log.info(
                        "mirror %s: %s", name, ", ".join(f"{k} {v}" for k, v in counts.items())
                    )
            return
        due.failures += 1
        delay = min(
            self.retry_base * 2 ** (due.failures - 1),
            max(float(mirror.interval_seconds), MAX_RETRY),
        )
        due.at = time.monotonic() + delay
        if due.failures == 1:
            log.warning(
                "mirror %s could not sync: %s. The registry keeps serving what it has; the "
                "mirror retries in %.0f s, then less often; run `bastion registry sync --mirror "
                "%s` to see the error at once.",
                name,
                error,
                delay,
                name,
            )
        else:
            log.debug("mirror %s failed again (%d in a row): %s", name, due.failures, error)


__all__ = ["MAX_RETRY", "RETRY_BASE", "MirrorScheduler"]
