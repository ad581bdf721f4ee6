"""bastion.logs (security review L6): one log record is one line, whoever formats it."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path

from bastion.gateway.audit import AuditLog
from bastion.logs import FORMAT, SafeFormatter, escape_controls, escape_json_controls, get_logger

CONTROLS = "a\nb\rc\td\x00e\x1bf\x7fg\x85h\u2028i"


def test_control_characters_and_line_separators_are_escaped() -> None:
    assert escape_controls(CONTROLS) == "a\\nb\\rc\\td\\x00e\\x1bf\\x7fg\\x85h\\u2028i"
    assert escape_controls("é ü / \\ ok") == "é ü / \\ ok"


def test_bastion_loggers_escape_whatever_the_formatter() -> None:
    """The filter on bastion's loggers renders the message escaped before any handler, so an
    application's own plain formatter writes one line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = get_logger("bastion.test_logs")
    assert get_logger("bastion.test_logs").filters == logger.filters
    assert len(logger.filters) == 1
    logger.addHandler(handler)
    try:
        logger.warning("value %s and %d", "x\nERROR forged", 7)
        logger.warning("no arguments %s")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == ("WARNING value x\\nERROR forged and 7\nWARNING no arguments %s\n")


def test_safe_formatter_keeps_other_libraries_and_tracebacks_on_their_records() -> None:
    """configure_logging's formatter: messages of any logger are escaped; every traceback line
    is indented, so an exception message with a newline cannot start a record."""
    record = logging.LogRecord("other", logging.ERROR, __file__, 1, "got %s", ("x\ny",), None)
    try:
        raise ValueError("bad\n2026-01-01 00:00:00,000 INFO forged")
    except ValueError:
        record.exc_info = sys.exc_info()
    first, *rest = SafeFormatter(FORMAT).format(record).split("\n")
    assert first.endswith("ERROR other got x\\ny")
    assert rest[0] == "  Traceback (most recent call last):"
    assert rest[-2:] == ["  ValueError: bad", "  2026-01-01 00:00:00,000 INFO forged"]
    assert all(line.startswith("  ") for line in rest)


def test_audit_lines_stay_one_line_and_valid_json(tmp_path: Path) -> None:
    """json.dumps escapes C0 controls but not DEL, C1 or U+2028: the audit escapes them too."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.write({"tool": CONTROLS})
    log.close()
    text = path.read_text()
    assert text.count("\n") == 1
    assert text[:-1].isprintable()
    assert json.loads(text) == {"tool": CONTROLS}
    assert json.loads(escape_json_controls(json.dumps(CONTROLS, ensure_ascii=False))) == CONTROLS
