"""RFC 3339 date-times to and from the registry's Unix milliseconds, and the millisecond clock."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

MillisClock = Callable[[], int]

# RFC 3339 §5.6 date-time: full-date "T" full-time, with a mandatory offset ("T" and "Z" may be
# lowercase, §5.6 NOTE).
_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
)


def system_millis() -> int:
    """Unix time in milliseconds."""
    return time.time_ns() // 1_000_000


def parse_rfc3339(value: str) -> int:
    """Unix milliseconds of an RFC 3339 date-time (fractions below a millisecond are dropped).

    Raises ValueError for anything else: a date alone, no offset, a leap second, year 0.
    """
    match = _DATE_TIME.fullmatch(value)
    if match is None:
        raise ValueError(
            f"not an RFC 3339 date-time with an offset (like 2025-08-07T13:15:04.280Z): {value!r}"
        )
    fraction = (match.group(7) or ".0")[1:7].ljust(6, "0")
    zone = match.group(8).upper()
    text = (
        f"{match.group(1)}-{match.group(2)}-{match.group(3)}T{match.group(4)}:{match.group(5)}:"
        f"{match.group(6)}.{fraction}{'+00:00' if zone == 'Z' else zone}"
    )
    try:
        moment = datetime.fromisoformat(text)
        seconds = int(moment.replace(microsecond=0).timestamp())
    except (ValueError, OverflowError):
        raise ValueError(f"not a valid date-time: {value!r}") from None
    return seconds * 1000 + moment.microsecond // 1000


def format_rfc3339(millis: int) -> str:
    """``2025-08-07T13:15:04.280Z`` for Unix milliseconds."""
    moment = datetime.fromtimestamp(millis // 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis % 1000:03d}Z"


__all__ = ["MillisClock", "format_rfc3339", "parse_rfc3339", "system_millis"]
