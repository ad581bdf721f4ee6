"""Answers of registry reads kept in memory, for as long as the registry has not changed.

A read (a list page, a server's versions, one version) is answered from the bytes built for an
earlier request with the same parameters *and the same visibility* (admin or not, subject, and
every group of the token's claim and of its ``:<group>`` read scopes: what
:meth:`~bastion.registry.access.Caller.viewer` returns), as long as the registry's generation
(:func:`bastion.store.registry.generation`, moved by database triggers on every write to the
entries or their groups, from any process) is the one the answer was built at. The scope check
runs and the audit record is written for every request, cached or not.

How fresh an answer is:

- A change made by this process (the API's publish, edit, delete and status changes, the
  console's, a mirror run, an import, the gateway listing: every registry write goes through
  :func:`writing`) empties every cache of the process when its transaction is over: no later
  read of this process sees the state before it.
- Any other change (another process or replica, ``bastion registry`` commands, SQL by hand) is
  seen within :data:`CONFIRM_SECONDS`: a cached answer is used only while the
  generation was read from the database less than that long ago; the first read after that
  reads it again (one small query, shared by the reads waiting for it) before answering.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy.ext.asyncio import AsyncConnection

from bastion.store import registry as rows
from bastion.store.database import Database

# How long another process's change may go unseen: the generation is read again after this.
CONFIRM_SECONDS = 0.5
MAX_ANSWERS = 2048
MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Answer:
    """A read's answer: the JSON body, and what its audit record says about it: ``detail``
    (a page's entries and count, the query), ``latest`` (the version ``latest`` stood for)."""

    body: bytes
    detail: dict[str, object] | None = None
    latest: str | None = None

    @cached_property
    def detail_json(self) -> str | None:
        """``detail`` as the audit column stores it, serialized once for every request the
        answer is kept for."""
        return None if self.detail is None else json.dumps(self.detail)


class ReadCache:
    """Answers by (request, visibility), valid for one generation of the registry."""

    def __init__(
        self,
        db: Database,
        *,
        confirm_seconds: float = CONFIRM_SECONDS,
        max_answers: int = MAX_ANSWERS,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.confirm_seconds = confirm_seconds
        self.max_answers = max_answers
        self.max_bytes = max_bytes
        self.clock = clock
        self._answers: OrderedDict[Hashable, Answer] = OrderedDict()
        self._bytes = 0
        self._generation: int | None = None
        self._confirmed_at = float("-inf")
        self._confirming: asyncio.Future[int | None] | None = None
        self._changes = 0
        _caches.add(self)

    def __repr__(self) -> str:
        return f"ReadCache(generation={self._generation}, answers={len(self._answers)})"

    async def generation(self) -> int | None:
        """The registry's generation, read from the database unless it was read less than
        ``confirm_seconds`` ago (None: the database has none, so nothing is cached)."""
        if (
            self._generation is not None
            and self.clock() - self._confirmed_at < self.confirm_seconds
        ):
            return self._generation
        if self._confirming is None:
            self._confirming = asyncio.ensure_future(self._confirm())
        return await asyncio.shield(self._confirming)

    async def _confirm(self) -> int | None:
        changes = self._changes
        started = self.clock()
        try:
            async with self.db.connect() as conn:
                value = await rows.generation(conn)
        finally:
            self._confirming = None
        if changes != self._changes:
            # A change of this process committed meanwhile; the value may predate it.
            return None
        if value != self._generation:
            self._clear()
            self._generation = value
        self._confirmed_at = started
        return value

    def changed(self) -> None:
        """Forget every answer: this process changed the registry (its transaction is over)."""
        self._changes += 1
        self._generation = None
        self._confirmed_at = float("-inf")
        self._clear()

    def get(self, key: Hashable, generation: int | None) -> Answer | None:
        """The answer kept for ``key`` at ``generation``, if any."""
        if generation is None or generation != self._generation:
            return None
        found = self._answers.get(key)
        if found is not None:
            self._answers.move_to_end(key)
        return found

    def put(self, key: Hashable, generation: int | None, answer: Answer) -> None:
        """Keep ``answer``, built from what the database held at ``generation`` or later, unless
        the generation has moved on since; the least recently used answers go first."""
        if generation is None or generation != self._generation or key in self._answers:
            return
        if len(answer.body) > self.max_bytes // 4:
            return
        self._answers[key] = answer
        self._bytes += len(answer.body)
        while len(self._answers) > self.max_answers or self._bytes > self.max_bytes:
            _, dropped = self._answers.popitem(last=False)
            self._bytes -= len(dropped.body)

    def _clear(self) -> None:
        self._answers.clear()
        self._bytes = 0


_caches: weakref.WeakSet[ReadCache] = weakref.WeakSet()


def changed_in_process() -> None:
    """Every cache of this process forgets its answers: this process changed the registry."""
    for cache in list(_caches):
        cache.changed()


@asynccontextmanager
async def writing(db: Database) -> AsyncIterator[AsyncConnection]:
    """A transaction that changes the registry; once it is over (committed or not) every cache
    of this process forgets its answers, so that nothing read before it is answered after it."""
    try:
        async with db.transaction() as conn:
            yield conn
    finally:
        changed_in_process()


__all__ = ["CONFIRM_SECONDS", "Answer", "ReadCache", "changed_in_process", "writing"]
