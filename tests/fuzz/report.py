"""The fuzz case tally at the end of the run (so a CI log shows what was proven), also under
pytest-xdist: each worker sends its counts to the controller, which adds them up and prints.

A plugin of the root conftest (``pytest_plugins``): the controller of an xdist run collects no
tests, so it never loads tests/fuzz/conftest.py."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.fuzz.profile import GROUP_CASES, PROFILE

TALLY = pytest.StashKey[Counter[tuple[str, str]]]()
OUTCOMES = pytest.StashKey[dict[str, Counter[str]]]()


def tally_of(config: pytest.Config) -> Counter[tuple[str, str]]:
    """Cases run per (endpoint group, backend) in this process."""
    return config.stash.setdefault(TALLY, Counter())


def outcomes_of(config: pytest.Config) -> dict[str, Counter[str]]:
    """Answers seen per endpoint group ("status error" -> count) in this process."""
    return config.stash.setdefault(OUTCOMES, {})


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker: hand the counts to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        config = session.config
        workeroutput["fuzz_tally"] = [[g, b, n] for (g, b), n in tally_of(config).items()]
        workeroutput["fuzz_outcomes"] = {g: dict(c) for g, c in outcomes_of(config).items()}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """On the xdist controller: add up what a worker counted."""
    output = getattr(node, "workeroutput", {})
    config = node.config
    for group, backend, n in output.get("fuzz_tally", []):
        tally_of(config)[(group, backend)] += n
    for group, answers in output.get("fuzz_outcomes", {}).items():
        outcomes_of(config).setdefault(group, Counter()).update(answers)


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
