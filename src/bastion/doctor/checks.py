"""The results of ``bastion doctor URL``: one :class:`Check` per step, recorded in order."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Literal

Status = Literal["ok", "warn", "fail", "skip"]

VSCODE = 'a known cause of VS Code\'s "mcp oauth: disabled" or of a failed sign-in'


@dataclass(frozen=True)
class Check:
    """One step of the diagnosis: ``status`` is the verdict, ``detail`` what was seen, ``url``
    what was asked, ``fix`` what the operator should change (set when the step fails or warns)."""

    name: str
    status: Status
    detail: str
    url: str | None = None
    fix: str | None = None

    def to_json(self) -> dict[str, str | None]:
        """The check as a JSON object."""
        return asdict(self)


@dataclass
class CheckList:
    """The checks made so far, in order."""

    items: list[Check] = field(default_factory=list)

    def add(
        self,
        name: str,
        status: Status,
        detail: str,
        url: str | None = None,
        fix: str | None = None,
    ) -> int:
        """Record a check; its index, to :meth:`amend` it later."""
        self.items.append(Check(name, status, detail, url, fix))
        return len(self.items) - 1

    def amend(self, index: int, *, status: Status | None = None, detail: str | None = None) -> None:
        """Change the status or detail of a recorded check."""
        check = self.items[index]
        self.items[index] = replace(
            check, status=status or check.status, detail=detail or check.detail
        )

    def span_ok(self, start: int, end: int) -> bool:
        """Whether no check from ``start`` to ``end`` (exclusive) failed."""
        return all(c.status != "fail" for c in self.items[start:end])


__all__ = ["VSCODE", "Check", "CheckList", "Status"]
