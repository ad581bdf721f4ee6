"""How ``bastion doctor`` prints: the client diagnosis of a URL (a table of steps with ✓/✗ marks
and the fix under each failing one, or JSON) and the identity-provider checks."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bastion.cli.display import print_table
from bastion.doctor import Diagnosis

if TYPE_CHECKING:
    from bastion.identity.doctor import Check as UpstreamCheck

MARKS = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red"), "skip": ("-", "dim")}


def diagnosis_table(diagnosis: Diagnosis) -> Table:
    """One row per check (mark, name, detail and URL), the fix on a row of its own below."""
    title = f"{diagnosis.kind} {diagnosis.url}" + (
        f"  (resource {diagnosis.resource})" if diagnosis.resource else ""
    )
    table = Table(title=title, title_justify="left")
    table.add_column("")
    table.add_column("check", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for check in diagnosis.checks:
        mark, colour = MARKS[check.status]
        detail = Text(check.detail)
        if check.url:
            detail.append(f"\n{check.url}", style="dim")
        table.add_row(Text(mark, style=colour), Text(check.name, style=colour), detail)
        if check.fix and check.status in ("fail", "warn"):
            table.add_row("", "", Text.assemble(("fix: ", f"bold {colour}"), check.fix))
    return table


def summary(diagnosis: Diagnosis) -> str:
    """One closing line: the counts and the verdict."""
    counts = diagnosis.counts()
    shown = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    if diagnosis.ok:
        return f"[green]no step failed[/green] ({shown})"
    names = ", ".join(dict.fromkeys(c.name for c in diagnosis.failed))
    return f"[red]{len(diagnosis.failed)} failed[/red]: {escape(names)} ({shown})"


def print_diagnosis(console: Console, diagnosis: Diagnosis, *, as_json: bool = False) -> None:
    """The diagnosis as a table and a summary line, or as one JSON document."""
    if as_json:
        console.file.write(json.dumps(diagnosis.to_json(), indent=2) + "\n")
        return
    console.print(diagnosis_table(diagnosis))
    console.print(summary(diagnosis))


def print_upstream_checks(console: Console, name: str, checks: Iterable[UpstreamCheck]) -> bool:
    """The identity-provider checks of one upstream as a table; True when one failed."""
    table = Table("check", "result", "detail", title=f"upstream {name}")
    failed = False
    for check in checks:
        failed = failed or check.status == "fail"
        colour = MARKS[check.status][1]
        table.add_row(check.name, f"[{colour}]{check.status}", check.detail)
    print_table(console, table)
    return failed


__all__ = ["MARKS", "diagnosis_table", "print_diagnosis", "print_upstream_checks", "summary"]
