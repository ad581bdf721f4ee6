"""Configuration mistakes told the way an operator can fix them: the file, line and column of a
TOML syntax error with the line itself, and "did you mean" for a misspelt key."""

from __future__ import annotations

import difflib
import re
import tomllib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

_POSITION = re.compile(r"^(?P<what>.*?) \(at line (?P<line>\d+), column (?P<column>\d+)\)$")


def describe_toml_error(path: Path, exc: tomllib.TOMLDecodeError) -> list[str]:
    """Lines explaining a TOML syntax error: where, what was expected, and the line marked."""
    found = _POSITION.match(str(exc))
    if found is None:
        return [f"{path} is not valid TOML: {exc}"]
    line, column = int(found["line"]), int(found["column"])
    what = found["what"]
    out = [f"{path}:{line}:{column}: not valid TOML: {what[:1].lower()}{what[1:]}"]
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return out
    if 1 <= line <= len(text):
        shown = text[line - 1].expandtabs(1)
        out.append(f"  {line:>4} | {shown}")
        out.append(f"       | {' ' * (column - 1)}^")
    return out


def describe_validation_error(exc: ValidationError, model: type[BaseModel]) -> list[str]:
    """One line per mistake, ``where: what``; an unknown key names the closest known one."""
    out = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        where = _dotted(loc) or "(top level)"
        if error["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
            known = _fields_at(model, loc[:-1])
            close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
            hint = f"; did you mean {_dotted((*loc[:-1], close[0]))!r}?" if close else ""
            out.append(f"{where}: unknown setting{hint}")
            continue
        given = error.get("input")
        shown = "" if isinstance(given, dict | list) or given is None else f" (got {given!r})"
        out.append(f"{where}: {error['msg']}{shown}")
    return out


def _dotted(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model found by following ``loc`` (list indexes skipped)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        field = current.model_fields.get(part)
        current = _model_in(field.annotation) if field is not None else None
    return list(current.model_fields) if current is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


__all__ = ["describe_toml_error", "describe_validation_error"]
