"""Request parsing and response helpers shared by the endpoints.

Parsing is strict: a wrong content type, an oversized body, a repeated parameter or a body that
is not what it claims to be is an ``invalid_request`` with a message that says what was wrong.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion import safe_json
from bastion.oauth.errors import InvalidRequest
from bastion.oauth.form import single

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# Parameters that may appear more than once (RFC 8707 §2 allows several `resource` values, RFC
# 8693 §2.1 several `audience` values; we then refuse with invalid_target, which is the RFCs'
# error for it, rather than invalid_request).
REPEATABLE = frozenset({"resource", "audience"})
MAX_FIELDS = 100
# What Starlette's JSONResponse renders, with one encoder made once instead of one per answer.
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class BodyTooLarge(InvalidRequest):
    """The request body exceeds the configured maximum."""

    status_code = 413


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("Content-Length is not a number")
        if int(declared) > limit:
            raise BodyTooLarge(f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def parse_params(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Group parameters; parameters sent with an empty value are treated as omitted
    (RFC 6749 §3.1), and repeated ones are refused (RFC 6749 §3.1, §3.2)."""
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        if "\x00" in key or "\x00" in value:
            # Never meaningful in OAuth parameters, and PostgreSQL text cannot store it.
            raise InvalidRequest("a parameter contains a NUL character")
        if value == "":
            continue
        out.setdefault(key, []).append(value)
    for key, values in out.items():
        if len(values) > 1 and key not in REPEATABLE:
            raise InvalidRequest(f"parameter {key} is repeated; send it once")
    return out


async def read_form(request: Request, limit: int) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` POST body as grouped parameters."""
    if _media_type(request) != "application/x-www-form-urlencoded":
        raise InvalidRequest("send the parameters as application/x-www-form-urlencoded")
    body = await read_body(request, limit)
    try:
        pairs = form_pairs(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the form body is not valid UTF-8 form encoding") from None
    return parse_params(pairs)


def form_pairs(text: str) -> list[tuple[str, str]]:
    """The name/value pairs of ``application/x-www-form-urlencoded`` text, as
    ``parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)`` reads them (fields
    split on ``&`` only, empty fields skipped, a field without ``=`` has an empty value,
    undecodable escapes become U+FFFD), without its per-call overhead; ValueError beyond
    :data:`MAX_FIELDS` fields."""
    if text.count("&") >= MAX_FIELDS:
        raise ValueError("too many fields")
    pairs: list[tuple[str, str]] = []
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            pairs.append((_unquote_plus(name), _unquote_plus(value)))
    return pairs


def _unquote_plus(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    return unquote(text) if "%" in text else text


def query_params(request: Request) -> dict[str, list[str]]:
    """The query string as grouped parameters (same rules as forms)."""
    try:
        pairs = parse_qsl(request.url.query, keep_blank_values=True, max_num_fields=100)
    except ValueError:
        raise InvalidRequest("the query string has too many parameters") from None
    return parse_params(pairs)


def is_vschar(value: str) -> bool:
    """Whether ``value`` is made of visible ASCII and spaces only (RFC 6749 Appendix A: VSCHAR,
    %x20-7E), the syntax of client_id and similar identifiers."""
    return value.isascii() and value.isprintable()


async def read_json(request: Request, limit: int) -> object:
    """A JSON request body (nested at most :data:`bastion.safe_json.MAX_DEPTH` levels)."""
    if _media_type(request) != "application/json":
        raise InvalidRequest("send the body as application/json")
    body = await read_body(request, limit)
    try:
        return safe_json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None


def json_bytes(data: object) -> bytes:
    """``data`` as the JSON bytes :func:`json_response` sends (compact, UTF-8)."""
    return _JSON.encode(data).encode("utf-8")


class _Json(JSONResponse):
    def render(self, content: object) -> bytes:
        return json_bytes(content)


def json_response(
    data: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response that caches nowhere (RFC 6749 §5.1)."""
    return _Json(data, status_code=status, headers={**NO_STORE, **headers} if headers else NO_STORE)


__all__ = [
    "NO_STORE",
    "BodyTooLarge",
    "form_pairs",
    "is_vschar",
    "json_bytes",
    "json_response",
    "parse_params",
    "query_params",
    "read_body",
    "read_form",
    "read_json",
    "single",
]
