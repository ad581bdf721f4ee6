"""Results of a run: rows (one per measured target), ratios between them, and their rendering
as a markdown table (``latest.md``) and JSON (``latest.json``)."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.loadgen import BUSY_LOADER, Result

# Above this share of wall time waiting for its CPU, the load generator's waits are shown.
STARVED_LOADER = 0.1
# Above this share, a row is flagged: the generator was starved of its CPU.
STARVED_REPORTED = 0.5
# The unit of rows whose samples are delays (p50 and p99 matter; a rate means nothing).
DELAYS = "delays"


@dataclass
class Row:
    """One target measured in one or more rounds (or not measured, with the reason)."""

    group: str
    name: str
    unit: str = "requests/s"
    rounds: list[Result] = field(default_factory=list)
    note: str = ""
    rate_override: float | None = None  # for in-process loops measured without the loader

    @property
    def measured(self) -> bool:
        return bool(self.rounds) or self.rate_override is not None

    @property
    def rate(self) -> float:
        if self.rate_override is not None:
            return self.rate_override
        return statistics.median(r.rate for r in self.rounds) if self.rounds else 0.0

    def _latencies(self) -> Result:
        merged = Result()
        for r in self.rounds:
            merged.latencies_ms.extend(r.latencies_ms)
        return merged

    @property
    def p50(self) -> float:
        return self._latencies().percentile(50)

    @property
    def p99(self) -> float:
        return self._latencies().percentile(99)

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.rounds)

    @property
    def server_cpu_ms(self) -> float | None:
        """Milliseconds of the watched servers' CPU per request, over every round (None when
        a round did not watch them)."""
        if not self.rounds or any(r.server_cpu is None for r in self.rounds):
            return None
        requests = self.requests
        return sum(r.server_cpu or 0.0 for r in self.rounds) * 1000 / requests if requests else None

    def note_text(self) -> str:
        """The note, after the server CPU per request when it was measured."""
        cpu = self.server_cpu_ms
        if cpu is None:
            return self.note
        return f"server CPU {cpu:.2f} ms/request" + (f"; {self.note}" if self.note else "")

    @property
    def loader_cpu(self) -> float | None:
        """The load generator's highest CPU share over the rounds (None: not known)."""
        shares = [r.loader_cpu for r in self.rounds if r.loader_cpu is not None]
        return max(shares) if shares else None

    @property
    def loader_busy(self) -> bool:
        """Whether the load generator used more than 90 % of its CPU in some round."""
        return (self.loader_cpu or 0.0) > BUSY_LOADER

    @property
    def loader_wait(self) -> float | None:
        """The highest share of wall time the load generator waited for its CPU (None: not
        known, e.g. wrk)."""
        waits = [r.loader_wait for r in self.rounds if r.loader_wait is not None]
        return max(waits) if waits else None

    @property
    def loader_starved(self) -> bool:
        """Whether the load generator waited for its CPU more than half of some round."""
        return (self.loader_wait or 0.0) > STARVED_REPORTED

    def loader_text(self) -> str:
        """e.g. ``38 %``, ``**95 %**`` (busy), ``38 % (waited 20 %)`` (it waited for its CPU
        that long), with ``wrk`` when wrk sent the load."""
        share = self.loader_cpu
        if share is None:
            return ""
        text = f"{share * 100:.0f} %"
        text = f"**{text}**" if self.loader_busy else text
        wait = self.loader_wait
        if wait is not None and wait > STARVED_LOADER:
            waited = f"waited {wait * 100:.0f} %"
            text += f" (**{waited}**)" if self.loader_starved else f" ({waited})"
        return text + (" wrk" if any(r.loader == "wrk" for r in self.rounds) else "")

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.rounds)

    def as_dict(self) -> dict[str, Any]:
        merged = self._latencies()
        return {
            "group": self.group,
            "name": self.name,
            "unit": self.unit,
            "measured": self.measured,
            "rate": round(self.rate, 1),
            "p50_ms": round(merged.percentile(50), 3) if self.rounds else None,
            "p99_ms": round(merged.percentile(99), 3) if self.rounds else None,
            "requests": self.requests,
            "errors": self.errors,
            "round_rates": [round(r.rate, 1) for r in self.rounds],
            "loader_cpu": None if self.loader_cpu is None else round(self.loader_cpu, 3),
            "loader_wait": None if self.loader_wait is None else round(self.loader_wait, 3),
            "server_cpu_ms": None if self.server_cpu_ms is None else round(self.server_cpu_ms, 4),
            "rounds": [r.summary() for r in self.rounds],
            "note": self.note,
        }


@dataclass
class Ratio:
    """``numerator`` / ``denominator`` (row names), with the target it should reach, if any.
    With ``at_most``, the value is a quantity that must stay at or below the target (such as
    an added latency in ``unit``), given by the suite."""

    label: str
    numerator: str
    denominator: str
    target: float | None = None
    value: float | None = None
    note: str = ""
    # Measured by the suite itself (e.g. the median of paired rounds), not rate / rate.
    given: float | None = None
    at_most: bool = False
    unit: str = ""
    by_suite: bool = False  # the value is ``given`` only, never rate / rate

    @property
    def met(self) -> bool | None:
        if self.target is None or self.value is None:
            return None
        return self.value <= self.target if self.at_most else self.value >= self.target

    def target_text(self) -> str:
        if self.target is None:
            return ""
        unit = f" {self.unit}" if self.unit else ""
        return f"{'<=' if self.at_most else '>='} {self.target:.2f}{unit}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "value": None if self.value is None else round(self.value, 3),
            "target": self.target,
            "at_most": self.at_most,
            "unit": self.unit,
            "met": self.met,
            "note": self.note,
        }


def _ratio_text(value: float) -> str:
    """Two decimals, or three below 0.1 (where two would round 0.016 and 0.024 alike)."""
    return f"{value:.3f}" if value < 0.1 else f"{value:.2f}"


@dataclass
class Report:
    """Everything a run produced."""

    command: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started_at: str = ""
    seconds: float = 0.0

    def row(self, name: str) -> Row | None:
        return next((r for r in self.rows if r.name == name), None)

    def compute_ratios(self) -> None:
        for ratio in self.ratios:
            if ratio.given is not None or ratio.by_suite:
                ratio.value = ratio.given
                ratio.note = ratio.note or ("" if ratio.given is not None else "not measured")
                continue
            top, bottom = self.row(ratio.numerator), self.row(ratio.denominator)
            if top is None or bottom is None or not top.measured or not bottom.measured:
                ratio.value = None
                ratio.note = ratio.note or "not measured"
            elif bottom.rate:
                ratio.value = top.rate / bottom.rate

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "started_at": self.started_at,
            "seconds": round(self.seconds, 1),
            "machine": self.machine,
            "settings": self.settings,
            "rows": [r.as_dict() for r in self.rows],
            "ratios": [r.as_dict() for r in self.ratios],
            "notes": self.notes,
        }

    def markdown(self) -> str:
        m = self.machine
        packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
        out = [
            "# bastion benchmarks",
            "",
            f"Run {self.started_at}, {self.seconds:.0f} s: `{self.command}`",
            "",
            f"- Machine: {m['cpu']}, {m['cores']} cores ({m['memory']}), {m['os']}",
            f"- {m['python']}; Node {m['node']}; PostgreSQL {m['postgresql']}",
            f"- Packages: {packages}",
            f"- Settings: {', '.join(f'{k} {v}' for k, v in self.settings.items())}",
            "",
        ]
        groups: list[str] = []
        for row in self.rows:
            if row.group not in groups:
                groups.append(row.group)
        for group in groups:
            out += [
                f"## {group}",
                "",
                "| target | rate | p50 ms | p99 ms | requests | errors | rounds | load gen CPU "
                "| note |",
                "|---|---:|---:|---:|---:|---:|---|---:|---|",
            ]
            for row in (r for r in self.rows if r.group == group):
                if not row.measured:
                    out.append(f"| {row.name} | not measured | | | | | | | {row.note} |")
                    continue
                if row.unit == DELAYS:
                    out.append(
                        f"| {row.name} | | {row.p50:.2f} | {row.p99:.2f} | {row.requests} | "
                        f"{row.errors} | | {row.loader_text()} | {row.note_text()} |"
                    )
                    continue
                rounds = ", ".join(f"{r.rate:.0f}" for r in row.rounds)
                latency = (f"{row.p50:.2f}", f"{row.p99:.2f}") if row.rounds else ("", "")
                requests = str(row.requests) if row.rounds else ""
                errors = str(row.errors) if row.rounds else ""
                out.append(
                    f"| {row.name} | {row.rate:,.0f} {row.unit} | {latency[0]} | {latency[1]} | "
                    f"{requests} | {errors} | {rounds} | {row.loader_text()} | {row.note_text()} |"
                )
            out.append("")
        out += ["## ratios (same run)", "", "| ratio | value | target | met |"]
        out.append("|---|---:|---:|---|")
        for ratio in self.ratios:
            value = "not measured" if ratio.value is None else _ratio_text(ratio.value)
            value += f" {ratio.unit}" if ratio.unit and ratio.value is not None else ""
            target = ratio.target_text()
            met = {None: "", True: "yes", False: "**no**"}[ratio.met]
            note = f" ({ratio.note})" if ratio.note and ratio.value is None else ""
            out.append(f"| {ratio.label}{note} | {value} | {target} | {met} |")
        out.append("")
        for flagged, headline, meaning in (
            (
                [r.name for r in self.rows if r.loader_busy],
                f"used more than {BUSY_LOADER:.0%} of its CPU",
                "Their rates may be the generator's limit, not the server's.",
            ),
            (
                [r.name for r in self.rows if r.loader_starved],
                f"waited for its CPU more than {STARVED_REPORTED:.0%} of the time",
                "(Other processes had it.) Their rates and latencies tell of the machine's "
                "contention as much as of the server.",
            ),
        ):
            if flagged:
                out += [
                    f"**The load generator {headline}** in: {'; '.join(flagged)}. {meaning}",
                    "",
                ]
        if self.notes:
            out += ["## notes", ""] + [f"- {n}" for n in self.notes] + [""]
        return "\n".join(out)

    def write(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        md = directory / "latest.md"
        js = directory / "latest.json"
        md.write_text(self.markdown())
        js.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        return md, js


def cpu_ratio(label: str, numerator: Row, denominator: Row, target: float | None = None) -> Ratio:
    """The throughput ratio ``numerator`` / ``denominator`` that their servers' CPU per request
    predicts for servers with a CPU of their own (the denominator's CPU per request over the
    numerator's): it holds on a machine that runs other work, where rates swing."""
    given = None
    if numerator.server_cpu_ms and denominator.server_cpu_ms:
        given = denominator.server_cpu_ms / numerator.server_cpu_ms
    return Ratio(label, numerator.name, denominator.name, target=target, given=given, by_suite=True)


__all__ = ["DELAYS", "Ratio", "Report", "Row", "cpu_ratio"]
