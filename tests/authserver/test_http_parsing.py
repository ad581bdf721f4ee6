"""bastion.authserver.http's parsing: ``form_pairs`` reads every form body exactly as
``urllib.parse.parse_qsl`` (keep_blank_values, at most 100 fields) does, refusals included, and
``is_vschar`` admits exactly RFC 6749 appendix A's VSCHAR (%x20-7E)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.authserver.http import MAX_FIELDS, form_pairs, is_vschar

PIECES = st.sampled_from(["&", "=", "+", "%", "%2", "%41", "%zz", "%C3%A9", "%FF", "a", " ", "é"])


def reference(text: str) -> list[tuple[str, str]] | str:
    try:
        return parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        return "refused"


def ours(text: str) -> list[tuple[str, str]] | str:
    try:
        return form_pairs(text)
    except ValueError:
        return "refused"


@given(st.lists(PIECES, max_size=40).map("".join))
def test_form_pairs_read_as_parse_qsl(text: str) -> None:
    assert ours(text) == reference(text)


@given(st.text(max_size=200))
def test_any_text_reads_as_parse_qsl(text: str) -> None:
    assert ours(text) == reference(text)


@pytest.mark.parametrize("fields", [MAX_FIELDS - 1, MAX_FIELDS, MAX_FIELDS + 1])
def test_the_field_limit_is_parse_qsl_s(fields: int) -> None:
    text = "&".join(f"a{i}=b" for i in range(fields))
    assert ours(text) == reference(text)
    assert ours(text + "&") == reference(text + "&")
    assert (ours(text) == "refused") == (fields > MAX_FIELDS)


@given(st.text(max_size=20))
def test_is_vschar_is_the_abnf(text: str) -> None:
    assert is_vschar(text) == all(0x20 <= ord(c) <= 0x7E for c in text)


@pytest.mark.parametrize("refused", ["\x7f", "\x1f", "\t", "\u00a0", "é", "a\nb"])
def test_is_vschar_refuses(refused: str) -> None:
    assert not is_vschar(refused)
