"""Fixtures of the fuzzers: the backend's name, a tally of cases per endpoint group printed at
the end of the run (so a CI log shows what was proven), and the authorization server world."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bastion.config import Settings
from tests.fuzz.profile import GROUP_CASES, PROFILE, Tally
from tests.fuzz.world import AuthWorld, auth_world

TALLY = pytest.StashKey[Counter[tuple[str, str]]]()
OUTCOMES = pytest.StashKey[dict[str, Counter[str]]]()


@pytest.fixture
def backend_name(backend: dict[str, Any]) -> str:
    return "postgres" if "database_schema" in backend else "sqlite"


@pytest.fixture
def tally(request: pytest.FixtureRequest, backend_name: str) -> Tally:
    """``tally(group, n, outcomes)``: record that ``n`` cases of an endpoint group ran on this
    backend, and what they were answered (``status error`` -> count)."""
    counter = request.config.stash.setdefault(TALLY, Counter())
    answers = request.config.stash.setdefault(OUTCOMES, {})

    def add(group: str, n: int, outcomes: Counter[str]) -> None:
        counter[(group, backend_name)] += n
        answers.setdefault(group, Counter()).update(outcomes)

    return add


@pytest.fixture
def world(make_settings: Callable[..., Settings], backend_name: str) -> Iterator[AuthWorld]:
    """The authorization server with a user, clients, codes and tokens (tests.fuzz.world)."""
    with auth_world(make_settings(), backend_name) as built:
        yield built


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    counter = config.stash.get(TALLY, None)
    if not counter:
        return
    terminalreporter.section(f"fuzz cases ({PROFILE} profile, floor {GROUP_CASES} per group)")
    for (group, backend), n in sorted(counter.items()):
        terminalreporter.write_line(f"{group:<32} {backend:<9} {n:>7}")
    if config.get_verbosity() > 0:
        for group, answers in sorted(config.stash.get(OUTCOMES, {}).items()):
            seen = ", ".join(f"{k}: {n}" for k, n in answers.most_common())
            terminalreporter.write_line(f"{group}: {seen}")
