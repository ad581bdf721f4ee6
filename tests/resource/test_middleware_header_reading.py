"""The resource middleware's one-pass header reading: ``_scan`` finds what Starlette's
``Headers.getlist``/``Headers.get`` find, and ``_is_b64token`` accepts exactly RFC 6750 §2.1's
``b64token`` (the regular expression it replaced)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import Headers

from bastion.resource.middleware import _is_b64token, _scan

B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
NAMES = st.sampled_from([b"authorization", b"origin", b"content-type", b"dpop", b"host"])
VALUES = st.binary(max_size=12)
TOKENS = st.lists(
    st.sampled_from(["a", "Z", "0", "-", ".", "_", "~", "+", "/", "=", " ", "é", "%", "\x00"]),
    max_size=12,
).map("".join)


@given(st.lists(st.tuples(NAMES, VALUES), max_size=8))
def test_scan_reads_as_starlette_headers(raw: list[tuple[bytes, bytes]]) -> None:
    headers = Headers(scope={"type": "http", "headers": raw})
    assert _scan(raw) == (
        headers.getlist("origin"),
        headers.getlist("authorization"),
        headers.get("content-type"),
    )


@given(st.one_of(TOKENS, st.text(max_size=12)))
def test_b64token_is_the_abnf(token: str) -> None:
    assert _is_b64token(token) == bool(B64TOKEN.fullmatch(token))
