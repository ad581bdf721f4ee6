"""Error answers as RFC 9457 problem details (``application/problem+json``).

Every error of the registry API is a problem object: ``type`` (``about:blank``, so ``title`` is
the HTTP status phrase, RFC 9457 §4.2.1), ``status``, ``detail`` saying what went wrong, and for
input errors an ``errors`` extension member listing each failing field (RFC 9457 §3.2)::

    {"type": "about:blank", "title": "Bad Request", "status": 400,
     "detail": "the server.json is not valid",
     "errors": [{"location": "body.name", "message": "must be <namespace>/<name> ...",
                 "value": "bad name"}]}

``location`` is ``body.<JSON path>``, ``query.<parameter>`` or ``path.<parameter>``. Refusals of
the resource-server middleware (401, and 403 for a token without the read scope) keep their
OAuth form (RFC 6750 §3: ``error``, ``error_description`` and ``WWW-Authenticate``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus

from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"
_MAX_VALUE = 200


@dataclass(frozen=True)
class FieldError:
    """One failing input field."""

    location: str
    message: str
    value: object = None
    has_value: bool = False

    @classmethod
    def of(cls, location: str, message: str, value: object) -> FieldError:
        """A field error that also shows the value seen (shortened when long)."""
        return cls(location, message, _shorten(value), True)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"location": self.location, "message": self.message}
        if self.has_value:
            out["value"] = self.value
        return out


def _shorten(value: object) -> object:
    if isinstance(value, str) and len(value) > _MAX_VALUE:
        return value[: _MAX_VALUE - 3] + "..."
    if isinstance(value, dict | list):
        text = json.dumps(value)
        return value if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 3] + "..."
    return value


@dataclass(eq=False)
class Problem(Exception):
    """An error answer; raise it from anywhere below a handler."""

    status: int
    detail: str
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    # The audit ``result`` of this refusal (a short code), default: from the status.
    result: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.detail)

    @property
    def title(self) -> str:
        return HTTPStatus(self.status).phrase

    def body(self) -> dict[str, object]:
        out: dict[str, object] = {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            out["errors"] = [e.to_json() for e in self.errors]
        return out

    def response(self) -> Response:
        headers = {"Cache-Control": "no-store", **self.headers}
        return Response(
            json.dumps(self.body()).encode("utf-8"),
            status_code=self.status,
            media_type=PROBLEM_JSON,
            headers=headers,
        )

    @property
    def audit_result(self) -> str:
        return self.result or status_result(self.status)


def status_result(status: int) -> str:
    """The audit's word for an answer with ``status`` when nothing more precise is known."""
    return _RESULTS.get(status, "error" if status >= 500 else f"http_{status}")


_RESULTS = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
}


def bad_request(detail: str, *errors: FieldError) -> Problem:
    """400 naming the failing fields."""
    return Problem(400, detail, list(errors))


def not_found(detail: str) -> Problem:
    """404 (also for entries the caller may not see: their existence is not revealed)."""
    return Problem(404, detail)


__all__ = ["PROBLEM_JSON", "FieldError", "Problem", "bad_request", "not_found", "status_result"]
