"""How ``--help`` names values: ``--port PORT``, ``USERNAME``, ``--log-level [debug|info|…]``,
and nothing after a flag, instead of type tags such as ``<str>``, ``<bool>`` or
``<list[str]>`` that say nothing to someone who does not read Python."""

from __future__ import annotations

import inspect
from typing import Any

import typer
import typer.core


def metavar_for(param: Any) -> str:
    """What ``--help`` shows after a parameter: its name in capitals, the choices of a choice,
    FILE or DIR for a path, nothing for a flag."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    kind = getattr(param, "type_descriptor", None)
    if kind is not None and kind.is_choice:
        return "[" + "|".join(str(c) for c in kind.choices or ()) + "]"
    name = (param.name or "value").upper()
    if kind is not None and kind.is_path and not name.endswith(("FILE", "DIR", "PATH")):
        return "DIR" if "DIR" in name else "FILE"
    return name


def styled(command: Any) -> Any:
    """``command`` (from ``typer.main.get_command``) with :func:`metavar_for` on every
    parameter of every subcommand (parameters that name their metavar keep it), arguments
    named ``USERNAME`` in usage lines as click does, and no type column.

    Typer (0.2x) prints a type tag beside every parameter whatever its metavar; the overrides
    are per instance and only where typer has the method, so another typer falls back to its
    own style rather than failing."""
    if getattr(command, "help", None):
        command.help = unwrapped(command.help)
    for param in getattr(command, "params", []):
        _style(param)
    if hasattr(command, "get_help_option"):
        help_option = command.get_help_option

        def get_help_option(ctx: Any) -> Any:
            found = help_option(ctx)
            if found is not None:
                _style(found)
            return found

        command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        styled(sub)
    return command


def unwrapped(text: str) -> str:
    """A docstring's paragraphs each on one line, so that the terminal wraps them (rich keeps
    the docstring's own line breaks, which then break lines in the middle); paragraphs whose
    lines are indented (examples) stay as they are."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(
        p if any(line.startswith(" ") for line in p.splitlines()) else " ".join(p.split("\n"))
        for p in paragraphs
    )


def _style(param: Any) -> None:
    if param.metavar is None:
        param.metavar = metavar_for(param)
    if param.param_type_name == "argument":
        shown = param.metavar + ("..." if param.nargs != 1 else "")
        if param.required and hasattr(param, "_usage_display_name"):
            param._usage_display_name = lambda: shown
        if hasattr(param, "display_type_rich"):
            param.display_type_rich = lambda ctx: None
    elif hasattr(param, "display_type_rich"):
        value = param.metavar or None
        param.display_type_rich = lambda ctx: value


class StyledGroup(typer.core.TyperGroup):
    """The root command group (``typer.Typer(cls=StyledGroup)``): every command under it is
    :func:`styled` when typer builds the click command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        styled(self)


__all__ = ["StyledGroup", "metavar_for", "styled", "unwrapped"]
