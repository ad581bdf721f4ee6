"""Fixtures of the fuzzers: the backend's name, a tally of cases per endpoint group (printed at
the end of the run by tests/fuzz/report.py), and the authorization server world."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bastion.config import Settings
from tests.fuzz.profile import Tally
from tests.fuzz.report import outcomes_of, tally_of
from tests.fuzz.world import AuthWorld, auth_world


@pytest.fixture
def backend_name(backend: dict[str, Any]) -> str:
    return "postgres" if "database_schema" in backend else "sqlite"


@pytest.fixture
def tally(request: pytest.FixtureRequest, backend_name: str) -> Tally:
    """``tally(group, n, outcomes)``: record that ``n`` cases of an endpoint group ran on this
    backend, and what they were answered (``status error`` -> count)."""
    counter = tally_of(request.config)
    answers = outcomes_of(request.config)

    def add(group: str, n: int, outcomes: Counter[str]) -> None:
        counter[(group, backend_name)] += n
        answers.setdefault(group, Counter()).update(outcomes)

    return add


@pytest.fixture
def world(make_settings: Callable[..., Settings], backend_name: str) -> Iterator[AuthWorld]:
    """The authorization server with a user, clients, codes and tokens (tests.fuzz.world)."""
    with auth_world(make_settings(), backend_name) as built:
        yield built
