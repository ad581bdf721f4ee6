"""``logging.format = "json"``: one JSON object per line, for a log pipeline (Loki, Elastic…).

Keys, in this order: ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``,
``message``; then, when the record has them, ``request_id``, ``method``, ``route``, ``status``,
``latency_ms``, ``client_id``, ``subject`` (:data:`bastion.logs.FIELDS`); then ``exception``
and ``stack`` as strings. A record is one line whatever it holds: ``json.dumps`` escapes C0
controls, :func:`~bastion.logs.escape_json_controls` the rest.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from bastion.logs import FIELDS, escape_json_controls


def rfc3339(created: float) -> str:
    """A record's ``created`` time as ``2026-01-02T03:04:05.678Z``."""
    stamp = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                document[name] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        line = json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str)
        return escape_json_controls(line)


__all__ = ["JsonFormatter", "rfc3339"]
