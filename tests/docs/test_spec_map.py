"""docs/spec-map.md against the tests and the code: the rule ids in test names resolve there.

A test named ``test_c05_…`` (or ``test_c01_c02_…``) proves the rule with id C05 (C01, C02). The
map must have a row for every such id, list every test file that has such a test in that row,
and name only paths that exist. Pure file reading.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "docs" / "spec-map.md"

# A test name's leading run of ``<letter><digits>_`` parts, each one rule id.
RULE_IDS = re.compile(r"def (test_(?:[a-z]\d+_)+)")
# Leading parts that look like ids but are words of the test's name.
NOT_RULE_IDS = {
    "s256",  # PKCE's S256 method (tests/oauth/test_pkce.py)
    "v0",  # the registry API's /v0 paths (tests/registry/test_api.py)
}
ROW = re.compile(r"^\| ([A-Z]\d+) \|(.*)\|\s*$")
CELL_BORDER = re.compile(r"(?<!\\)\|")  # a pipe not escaped as \| in a cell
PATH = re.compile(r"`((?:src|tests|docs)/[^`\s]+)`")


def rows(text: str) -> dict[str, list[str]]:
    """The map's rows by id: the cells after the id. An id given twice is an error."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match is None:
            continue
        rule_id, rest = match.groups()
        assert rule_id not in found, f"docs/spec-map.md has two rows for {rule_id}"
        found[rule_id] = [cell.strip() for cell in CELL_BORDER.split(rest)]
    return found


def named_in_tests() -> dict[str, set[str]]:
    """Every rule id a test function's name carries, with the test files that carry it."""
    where: dict[str, set[str]] = defaultdict(set)
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for match in RULE_IDS.finditer(path.read_text(encoding="utf-8")):
            for part in match.group(1).removeprefix("test_").rstrip("_").split("_"):
                if part not in NOT_RULE_IDS:
                    where[part.upper()].add(path.relative_to(ROOT).as_posix())
    return where


def test_every_rule_id_in_a_test_name_has_a_row_listing_its_test_files() -> None:
    table = rows(MAP.read_text(encoding="utf-8"))
    named = named_in_tests()
    assert named, "no test named for a rule id was found: is RULE_IDS still right?"
    missing_rows = sorted(set(named) - set(table))
    assert not missing_rows, f"docs/spec-map.md has no row for {', '.join(missing_rows)}"
    unlisted = {
        rule_id: sorted(files - set(PATH.findall(" ".join(table[rule_id]))))
        for rule_id, files in named.items()
    }
    unlisted = {rule_id: files for rule_id, files in unlisted.items() if files}
    assert not unlisted, f"docs/spec-map.md rows do not list these tests: {unlisted}"


def test_every_row_is_complete_and_every_path_it_names_exists() -> None:
    table = rows(MAP.read_text(encoding="utf-8"))
    assert len(table) >= 50, f"only {len(table)} rows found: is ROW still right?"
    for rule_id, cells in table.items():
        assert len(cells) == 4, f"{rule_id}: want level, rule, code, tests; got {cells}"
        assert all(cells), f"{rule_id}: a cell is empty: {cells}"
    named = sorted({path for cells in table.values() for path in PATH.findall(" ".join(cells))})
    assert named, "docs/spec-map.md names no path: is PATH still right?"
    absent = [path for path in named if not (ROOT / path).is_file()]
    assert not absent, f"docs/spec-map.md names paths that do not exist: {absent}"
