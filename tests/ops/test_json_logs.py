"""The JSON log form (logging.format = "json") and the text form's request fields: one record
is one line of valid JSON whatever it holds; request fields and exceptions are fields."""

from __future__ import annotations

import io
import json
import logging
import re
import sys

import pytest

from bastion.logs import FORMAT, REQUEST_ID, RequestContext, SafeFormatter
from bastion.ops.json_logs import JsonFormatter, rfc3339
from bastion.ops.user_ids import UserIdFilter, UserIdPolicy

CONTROLS = "a\nb\rc\td\x00e\x1bf\x7fg\x85h\u2028i\u2029j"


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("bastion.test", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_a_record_with_control_characters_is_one_line_of_the_same_text() -> None:
    record = _record("got %s", CONTROLS, route=CONTROLS, client_id="c\nforged")
    line = JsonFormatter().format(record)
    assert "\n" not in line and line.isprintable()
    document = json.loads(line)
    assert document["message"] == f"got {CONTROLS}"
    assert document["route"] == CONTROLS
    assert document["client_id"] == "c\nforged"


def test_keys_come_in_order_and_absent_fields_are_left_out() -> None:
    record = _record(
        "GET /token 200",
        request_id="r1",
        method="GET",
        route="/token",
        status=200,
        latency_ms=1.5,
        subject=None,
    )
    record.created = 1767323045.678
    document = json.loads(JsonFormatter().format(record))
    assert list(document) == [
        "time",
        "level",
        "logger",
        "message",
        "request_id",
        "method",
        "route",
        "status",
        "latency_ms",
    ]
    assert document["time"] == "2026-01-02T03:04:05.678Z" == rfc3339(record.created)
    assert (document["level"], document["logger"]) == ("warning", "bastion.test")
    assert (document["status"], document["latency_ms"]) == (200, 1.5)


def test_an_exception_is_a_string_field_not_more_lines() -> None:
    record = _record("failed")
    try:
        raise ValueError("bad\n2026-01-01 INFO forged")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert line.count("\n") == 0
    exception = json.loads(line)["exception"]
    assert exception.startswith("Traceback (most recent call last):")
    assert exception.endswith("ValueError: bad\n2026-01-01 INFO forged")


def test_records_made_during_a_request_carry_its_id_in_both_forms() -> None:
    """RequestContext (on configure_logging's handler) gives every record, of any logger, the
    id of the request being served; a record that names one keeps its own."""
    out = {"json": io.StringIO(), "text": io.StringIO()}
    logger = logging.getLogger("other.library")
    handlers = []
    for name, formatter in (("json", JsonFormatter()), ("text", SafeFormatter(FORMAT))):
        handler = logging.StreamHandler(out[name])
        handler.setFormatter(formatter)
        handler.addFilter(RequestContext())
        logger.addHandler(handler)
        handlers.append(handler)
    logger.propagate = False
    token = REQUEST_ID.set("req-7")
    try:
        logger.warning("inside")
        logger.warning("named", extra={"request_id": "own", "client_id": "vscode"})
    finally:
        REQUEST_ID.reset(token)
        logger.warning("outside")
        for handler in handlers:
            logger.removeHandler(handler)
        logger.propagate = True
    inside, named, outside = [json.loads(line) for line in out["json"].getvalue().splitlines()]
    assert inside["request_id"] == "req-7"
    assert (named["request_id"], named["client_id"]) == ("own", "vscode")
    assert "request_id" not in outside
    text = out["text"].getvalue().splitlines()
    assert text[0].endswith("WARNING other.library inside request_id=req-7")
    assert text[1].endswith("named request_id=own client_id=vscode")
    assert text[2].endswith("WARNING other.library outside")


def _subject_through(policy: UserIdPolicy, subject: str) -> object:
    record = _record("x", subject=subject)
    UserIdFilter(policy).filter(record)
    UserIdFilter(policy).filter(record)  # a second handler: rendered once only
    return record.__dict__["subject"]


def test_user_ids_omitted_never_appear() -> None:
    policy = UserIdPolicy("omit")
    assert _subject_through(policy, "alice") is None
    line = JsonFormatter().format(_record("x", subject=policy.render("alice")))
    assert "alice" not in line and "subject" not in json.loads(line)


def test_user_ids_hashed_are_keyed_stable_and_not_the_id() -> None:
    """The same subject under the same secret gives the same digest (across processes and
    restarts, as the key comes from secret_key); another secret gives another, so nobody
    without the secret can test a guess."""
    policy = UserIdPolicy("hash", "deployment-secret-0123456789abcdef")
    rendered = _subject_through(policy, "alice")
    assert isinstance(rendered, str) and re.fullmatch(r"h:[0-9a-f]{16}", rendered)
    assert "alice" not in rendered
    assert UserIdPolicy("hash", "deployment-secret-0123456789abcdef").render("alice") == rendered
    assert UserIdPolicy("hash", "another-secret-0123456789abcdef01").render("alice") != rendered
    assert policy.render("bob") != rendered


def test_hashing_without_a_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="needs the secret key"):
        UserIdPolicy("hash", None)


def test_user_ids_plain_are_kept() -> None:
    assert _subject_through(UserIdPolicy("plain"), "alice") == "alice"
