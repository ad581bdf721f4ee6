"""Hypothesis strategies for hostile HTTP input: text, JSON, form bodies, headers.

Text includes control characters, NUL, every Unicode plane but the surrogates, and very long
values; JSON nests and mixes types (NaN and Infinity included: Python's parser accepts them);
form bodies repeat, omit and misspell parameters. Header values are restricted to the bytes
HTTP/1.1 can carry (RFC 9110 §5.5: VCHAR, SP, HTAB, obs-text): uvicorn/h11 refuse anything else
before an app sees it, so fuzzing it in-process would prove nothing.
"""

from __future__ import annotations

import base64
import functools
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus, urlencode

from hypothesis import strategies as st

T = TypeVar("T")
TRICKY = [
    "",
    " ",
    "\x00",
    "\t",
    "\r\n",
    "null",
    "None",
    "undefined",
    "0",
    "-1",
    "1e309",
    "[]",
    "{}",
    "true",
    "%00",
    "%",
    "%zz",
    "%2F",
    "&",
    "=",
    "+",
    "'",
    '"',
    "\\",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "😀",
    "\u202e",
    "\ufeff",
    "\u0130",
    "https://client.example/app.json",
    "http://127.0.0.1:53682/callback",
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    "eyJhbGciOiJIUzI1NiJ9.e30.c2ln",
    "a.b.c",
    "S256",
    "plain",
    "code",
    "mcp:tools",
    "http://localhost:9001/mcp",
]
LONG_SIZES = [256, 2100, 5000]


@functools.cache
def text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Any text: ASCII with control characters, any non-surrogate code point, tricky values,
    and long runs."""
    return st.one_of(
        st.text(st.characters(max_codepoint=0x7F), max_size=max_size),
        st.text(st.characters(codec="utf-8"), max_size=max_size),
        st.sampled_from(TRICKY),
        st.builds(
            lambda c, n: c * n,
            st.sampled_from(["a", "é", "\x00", "%", "/"]),
            st.sampled_from(LONG_SIZES),
        ),
    )


@functools.cache
def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value (NaN and the infinities too), nested."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        text(),
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(text(12), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def dumps(value: Any) -> bytes:
    """JSON as Python writes it (NaN, Infinity allowed), UTF-8."""
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def pick_or_text(pool: list[str], max_size: int = 40) -> st.SearchStrategy[str]:
    """A value from ``pool`` (the real codes, tokens, ids of the test's world) or any text."""
    return _pick_or_text(tuple(pool), max_size)


@functools.cache
def _pick_or_text(pool: tuple[str, ...], max_size: int) -> st.SearchStrategy[str]:
    # Cached: building strategies costs more than drawing from them.
    return st.one_of(st.sampled_from(pool), text(max_size)) if pool else text(max_size)


Pairs = list[tuple[str, str]]


@st.composite
def mutated(
    draw: st.DrawFn, template: Pairs, names: list[str], values: list[str], *, anything: bool = True
) -> Pairs:
    """A valid request's parameters, then a few of: drop one, replace a value, repeat one, add
    an unknown or known parameter, rename one. Most cases stay close to valid, so they reach
    the checks deep in an endpoint, not only its first line. Without ``anything``, names and
    values come from the lists only."""

    def pick(pool: list[str], max_size: int = 40) -> st.SearchStrategy[str]:
        return pick_or_text(pool, max_size) if anything else _sampled(tuple(pool))

    pairs = list(template)
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["drop", "replace", "repeat", "add", "rename"]))
        if action == "add" or not pairs:
            name = draw(pick(names, 20))
            pairs.insert(draw(st.integers(0, len(pairs))), (name, draw(pick(values))))
            continue
        at = draw(st.integers(0, len(pairs) - 1))
        name, value = pairs[at]
        if action == "drop":
            del pairs[at]
        elif action == "replace":
            pairs[at] = (name, draw(pick(values)))
        elif action == "repeat":
            pairs.insert(at, (name, draw(st.sampled_from([value, *values[:3]]))))
        else:
            pairs[at] = (draw(pick(names, 20)), value)
    return pairs


def mostly(usual: st.SearchStrategy[T], other: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """``usual`` four times in five, else ``other``: keeps most cases valid where it matters, so
    that they get past the first check of an endpoint."""
    # Hypothesis leans towards the first choice: that is the usual one.
    return st.sampled_from(range(5)).flatmap(lambda i: other if i == 4 else usual)


@functools.cache
def _sampled(pool: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.sampled_from(pool)


def form_pairs(names: list[str], values: list[str]) -> st.SearchStrategy[Pairs]:
    """Arbitrary parameter lists made of known names and values, or any text."""
    return st.lists(st.tuples(pick_or_text(names, 20), pick_or_text(values)), max_size=10)


@st.composite
def form_body(draw: st.DrawFn, pairs: st.SearchStrategy[Pairs]) -> bytes:
    """An encoded form: well-encoded pairs, or raw bytes that only look like a form (bad
    percent escapes, invalid UTF-8, stray separators), or more than the body limit."""
    encoded = urlencode(draw(pairs)).encode("ascii")
    kind = draw(st.sampled_from(["form"] * 6 + ["raw", "bytes", "spliced", "oversized"]))
    if kind == "form":
        return encoded
    if kind == "raw":
        return draw(st.text(max_size=60)).encode("utf-8", "surrogatepass")
    if kind == "bytes":
        return draw(st.binary(max_size=60))
    if kind == "spliced":
        junk = draw(st.sampled_from([b"&&", b"=", b"%", b"%zz", b"%C3%28", b"\xff", b";", b"a"]))
        at = draw(st.integers(0, len(encoded)))
        return encoded[:at] + junk + encoded[at:]
    return encoded + b"&pad=" + b"x" * draw(st.sampled_from([64 * 1024, 200 * 1024]))


CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=utf-8",
    "APPLICATION/X-WWW-FORM-URLENCODED",
    "application/json",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded, application/json",
    ";",
    "",
]

# RFC 9110 §5.5: field-value bytes (no CR, LF, NUL or other controls but HTAB).
_FIELD_BYTES = [bytes([b]) for b in [0x09, *range(0x20, 0x7F), *range(0x80, 0x100)]]


@functools.cache
def header_value(max_size: int = 60) -> st.SearchStrategy[bytes]:
    """Any bytes a header value can carry, trimmed as HTTP/1.1 servers trim them."""
    return st.lists(st.sampled_from(_FIELD_BYTES), max_size=max_size).map(
        lambda parts: b"".join(parts).strip(b" \t")
    )


@functools.cache
def content_type() -> st.SearchStrategy[bytes | None]:
    return st.one_of(st.none(), st.sampled_from(CONTENT_TYPES).map(str.encode), header_value(40))


def basic(client_id: str, secret: str, *, encode: bool = True) -> bytes:
    """A Basic header; RFC 6749 §2.3.1 form-encodes both parts first (``encode``)."""
    if encode:
        client_id, secret = quote_plus(client_id), quote_plus(secret)
    raw = f"{client_id}:{secret}".encode("utf-8", "surrogatepass")
    return b"Basic " + base64.b64encode(raw)


def authorization(
    valid: list[bytes], ids: list[str], secrets: list[str]
) -> st.SearchStrategy[bytes | None]:
    """An Authorization header: none, a valid one, Basic with other ids and secrets (encoded or
    not), Basic that is not base64 or not UTF-8, another scheme, any bytes."""
    return st.one_of(
        st.none(),
        st.sampled_from(valid) if valid else st.none(),
        st.builds(basic, pick_or_text(ids), pick_or_text(secrets), encode=st.booleans()),
        st.binary(max_size=40).map(lambda b: b"Basic " + base64.b64encode(b)),
        st.tuples(
            st.sampled_from([b"Basic", b"basic", b"BASIC", b"Bearer", b"Digest", b"DPoP"]),
            header_value(60),
        ).map(lambda t: t[0] + b" " + t[1]),
        header_value(),
    )


@functools.cache
def path_segment() -> st.SearchStrategy[str]:
    """A path segment, percent-encoded as a client would send it (slashes and dots too)."""
    return text(30).map(lambda s: quote(s, safe=""))


@dataclass
class Spec:
    """One request to send: what hypothesis drew."""

    method: str
    path: str
    headers: dict[str, bytes] = field(default_factory=dict)
    content: bytes = b""

    def __repr__(self) -> str:
        # Bounded: hypothesis prints the failing case, and bodies can be 200 kB.
        content = self.content[:400] + (b"..." if len(self.content) > 400 else b"")
        path = self.path[:400] + ("..." if len(self.path) > 400 else "")
        return f"Spec({self.method!r}, {path!r}, headers={self.headers!r}, content={content!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis would otherwise print the dataclass in full

    def header(self, name: str, value: bytes | None) -> Spec:
        if value is not None:
            self.headers[name] = value
        return self


__all__ = [
    "CONTENT_TYPES",
    "TRICKY",
    "Pairs",
    "Spec",
    "authorization",
    "b64url",
    "basic",
    "content_type",
    "dumps",
    "form_body",
    "form_pairs",
    "header_value",
    "json_values",
    "mostly",
    "mutated",
    "path_segment",
    "pick_or_text",
    "text",
]


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
