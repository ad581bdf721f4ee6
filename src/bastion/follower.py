"""A background task that follows a source of changes into memory: PostgreSQL notifications of
client changes, revocations from the database or from the authorization server's document.

:class:`Follower` starts and stops with the app's lifespan, retries with bounded backoff when
following fails, and logs a problem once (and once more when it is solved) rather than on every
retry. It never raises into the app: while its source cannot be reached, what is in memory stays
as it is, and each follower catches up when the source is back (it reloads what it keeps).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

MIN_BACKOFF = 0.5
MAX_BACKOFF = 30.0


class Follower(ABC):
    """Follows :attr:`source` in the background (see the module docstring).

    ``ready`` is set while what is in memory is known to be complete (the subclass calls
    :meth:`_ready` after it has (re)loaded everything) and cleared when following fails.
    Subclasses implement :meth:`_follow`, which runs until it fails, and set :attr:`topic`
    (what is followed, e.g. "revocations"), :attr:`consequence` (what a failure means for
    requests) and :attr:`hint` (what the operator should check), which the warning says.
    """

    topic = "changes"
    consequence = ""
    hint = ""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.ready = asyncio.Event()
        self.failures = 0
        self._task: asyncio.Task[None] | None = None
        self._problem: str | None = None
        self._backoff = MIN_BACKOFF

    @property
    @abstractmethod
    def source(self) -> str:
        """What is followed, as the operator's log names it."""

    async def start(self, *, wait: float = 2.0) -> None:
        """Start following; wait up to ``wait`` seconds until ready, and go on without it if
        the source is not there yet (the follower keeps trying)."""
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name=f"bastion {self.topic}: {self.source}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), wait)

    async def aclose(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the source may be restarting: try again later
                self.ready.clear()
                self.failures += 1
                self._report(exc)
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, MAX_BACKOFF)

    def _ready(self) -> None:
        """What is in memory now reflects the whole source."""
        self.ready.set()
        self._backoff = MIN_BACKOFF
        if self._problem is not None:
            self.log.warning("%s: following %s again", self.topic, self.source)
            self._problem = None

    def _report(self, exc: Exception) -> None:
        problem = str(exc) or type(exc).__name__
        if problem == self._problem:
            return
        self._problem = problem
        notes = "".join(f"; {note}" for note in (self.consequence, self.hint) if note)
        self.log.warning(
            "%s: cannot follow %s (%s)%s; retrying, every %.0f s at most",
            self.topic,
            self.source,
            problem,
            notes,
            MAX_BACKOFF,
        )

    @abstractmethod
    async def _follow(self) -> None:
        """Load everything, call :meth:`_ready`, follow changes; raise when that fails."""


__all__ = ["MAX_BACKOFF", "MIN_BACKOFF", "Follower"]
