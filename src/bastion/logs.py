"""Log records that request data cannot forge: one record is one line.

A ``redirect_uri`` of ``…%0a2026-01-01 INFO …`` logged as it came wrote a second, made-up log
line. Two layers keep that from happening:

- Every bastion logger (:func:`get_logger`) carries :class:`EscapeControls`, which renders the
  message with control characters escaped before any handler sees it, whatever formatter the
  application embedding bastion uses.
- :func:`configure_logging` (called by :mod:`bastion.serve` only, for ``bastion serve``,
  ``gateway``, ``quickstart`` and ``registry serve``) installs :class:`SafeFormatter` for
  every logger, uvicorn's included (:data:`UVICORN_LOGGING` sends its records there): the same
  escaping for other libraries' messages, and traceback lines indented so that none can pass
  for a record of its own.

Records made while a request is served carry its id (:data:`REQUEST_ID`, set by
:mod:`bastion.ops.request_id`); :class:`SafeFormatter` writes it, and the other request fields
a record has (:data:`FIELDS`), after the message as ``key=value``; the JSON form is
:class:`bastion.ops.json_logs.JsonFormatter`.

Escaped are C0 controls (CR and LF among them), DEL, C1 controls (NEL among them) and the
Unicode line and paragraph separators, as ``\\n``, ``\\r``, ``\\t``, ``\\xNN`` or ``\\uNNNN``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import Any, TypeAlias

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# uvicorn's own loggers hand their records to the root logger's handlers (see configure_logging).
UVICORN_LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {
        "uvicorn": {"handlers": [], "propagate": True},
        "uvicorn.access": {"handlers": [], "propagate": True},
    },
}

# The id of the request being served (None outside of one): every record made meanwhile, in
# this task or a task it started, carries it.
REQUEST_ID: ContextVar[str | None] = ContextVar("bastion.request_id", default=None)
# What a record may carry about its request, as ``extra=`` attributes, in this order.
FIELDS = ("request_id", "method", "route", "status", "latency_ms", "client_id", "subject")
# Written after the message in the text form (method, route, status and latency are in the
# access log's message itself).
_TEXT_FIELDS = ("request_id", "client_id", "subject")

# What logging passes to formatException (typeshed's _SysExcInfoType).
_ExcInfo: TypeAlias = (
    "tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]"
)


def _escape(found: re.Match[str]) -> str:
    char = found.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def escape_controls(text: str) -> str:
    """``text`` with control characters and line separators written as escapes."""
    return _CONTROLS.sub(_escape, text)


def escape_json_controls(line: str) -> str:
    """A line of JSON (``json.dumps`` escapes C0 already) with DEL, C1 controls and line
    separators as ``\\uNNNN`` escapes too: still the same JSON, and one line everywhere."""
    return _CONTROLS.sub(lambda found: f"\\u{ord(found.group()):04x}", line)


class EscapeControls(logging.Filter):
    """Render a record's message with control characters escaped (only when it has any, so
    other records keep their arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _CONTROLS.search(message):
            record.msg = escape_controls(message)
            record.args = None
        return True


_FILTER = EscapeControls()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with :class:`EscapeControls` attached (once)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


class RequestContext(logging.Filter):
    """Give a record the id of the request being served (:data:`REQUEST_ID`) unless it names
    one itself. A handler filter: it sees the records of every logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


def _indented(text: str) -> str:
    return "\n".join("  " + escape_controls(line) for line in text.split("\n"))


class SafeFormatter(logging.Formatter):
    """A formatter whose records stay one line each: control characters in the formatted
    message are escaped, and every line of a traceback or stack is indented."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = "".join(
            f" {name}={value}"
            for name in _TEXT_FIELDS
            if (value := getattr(record, name, None)) is not None
        )
        return escape_controls(super().formatMessage(record) + fields)

    def formatException(self, ei: _ExcInfo) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def configure_logging(
    level: str = "info",
    *,
    formatter: logging.Formatter | None = None,
    filters: Sequence[logging.Filter] = (),
) -> None:
    """Log at ``level`` (debug, info, warning, error) to standard error through ``formatter``
    (default :class:`SafeFormatter`), with :class:`RequestContext` and ``filters`` on the
    handler, as ``logging.basicConfig`` does (nothing changes when the application configured
    logging already)."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter or SafeFormatter(FORMAT))
    for item in (RequestContext(), *filters):
        handler.addFilter(item)
    logging.basicConfig(level=level.upper(), handlers=[handler])


__all__ = [
    "FIELDS",
    "FORMAT",
    "REQUEST_ID",
    "UVICORN_LOGGING",
    "EscapeControls",
    "RequestContext",
    "SafeFormatter",
    "configure_logging",
    "escape_controls",
    "escape_json_controls",
    "get_logger",
]
