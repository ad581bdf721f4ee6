"""How many cases the fuzzers run: the CI profile (default) or the deep one (``make fuzz``).

``BASTION_FUZZ_PROFILE=ci``: 2,000 cases per endpoint group on SQLite (a tenth on PostgreSQL,
which is slower), derandomized, so that every CI run sends the same requests and a failure
reproduces. ``BASTION_FUZZ_PROFILE=deep``: ten times as many, with a fresh random seed each
run (hypothesis prints the seed and a ``@reproduce_failure`` blob when it finds something).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

PROFILES = {"ci": 2000, "deep": 20_000}
PROFILE = os.environ.get("BASTION_FUZZ_PROFILE", "ci")
if PROFILE not in PROFILES:
    raise RuntimeError(
        f"BASTION_FUZZ_PROFILE must be one of {', '.join(PROFILES)}; got {PROFILE!r}"
    )
# The floor of every endpoint group on SQLite: the issue asks for at least 2,000 cases each.
GROUP_CASES = PROFILES[PROFILE]
POSTGRES_DIVISOR = 10
# The ``tally`` fixture: (endpoint group, cases run, answers seen as "status error" -> count).
Tally = Callable[[str, int, Counter[str]], None]


def cases(share: float, backend: str) -> int:
    """The number of cases for a test that covers ``share`` of its endpoint group."""
    count = round(GROUP_CASES * share)
    return max(1, count // POSTGRES_DIVISOR) if backend == "postgres" else count


def examples(count: int) -> hypothesis_settings:
    """Hypothesis settings for ``count`` cases: no deadline (the database is real), no example
    database (runs do not depend on earlier ones), no health checks about fixture scope or
    generation speed (one app serves every case, on purpose)."""
    return hypothesis_settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=PROFILE == "ci",
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        report_multiple_bugs=False,
    )


T = TypeVar("T")


def run_cases(count: int, strategy: st.SearchStrategy[T], check: Callable[[T], None]) -> int:
    """Run ``check`` on ``count`` cases drawn from ``strategy``; the number actually run (at
    least ``count``: the floor is asserted, not assumed)."""
    ran = 0

    @examples(count)
    @given(case=strategy)
    def one(case: T) -> None:
        nonlocal ran
        ran += 1
        check(case)

    one()
    assert ran >= count, f"hypothesis ran {ran} cases, not {count}"
    return ran


__all__ = ["GROUP_CASES", "POSTGRES_DIVISOR", "PROFILE", "Tally", "cases", "examples", "run_cases"]
