"""``WWW-Authenticate`` challenges: building Bearer and DPoP challenges and parsing any challenge
list.

Grammar (RFC 9110 §11.6.1 and §11.3, §5.6.2 token, §5.6.4 quoted-string)::

    WWW-Authenticate = #challenge
    challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
    auth-param       = token BWS "=" BWS ( token / quoted-string )
    token68          = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="

The Bearer scheme and its parameters ``realm``, ``scope``, ``error``, ``error_description`` are
RFC 6750 §3; ``resource_metadata`` is RFC 9728 §5.1; the DPoP scheme and its ``algs`` are
RFC 9449 §7.1. The builder is strict (it refuses values a
conforming parser could not read back); the parser is lenient (it never raises and returns what
it can make sense of), because it reads headers written by servers we do not control.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

# RFC 9110 §5.6.2: tchar.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# RFC 9110 §11.2: the characters of token68 before its trailing "=" padding.
_TOKEN68_CHAR = frozenset("-._~+/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_WS = " \t"
# RFC 6750 §3: scope-token, error and error_description character sets.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_NQSCHAR = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
# RFC 9110 §5.6.4: what a quoted-string may carry (qdtext and quoted-pair), obs-text excluded
# because header values travel as ASCII here.
_QUOTABLE = re.compile(r"[\t\x20-\x7e]*")


@dataclass(frozen=True)
class Challenge:
    """One parsed challenge: the scheme (lowercased), its auth-params (names lowercased; the
    first occurrence of a repeated name wins) or its token68."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None

    def get(self, name: str) -> str | None:
        """The value of parameter ``name`` (case-insensitive), or None."""
        return self.params.get(name.lower())


def quote(value: str) -> str:
    """``value`` as an RFC 9110 §5.6.4 quoted-string: ``"`` and ``\\`` escaped with ``\\``.

    Raises ValueError for characters a quoted-string cannot carry (control characters other
    than HTAB, and non-ASCII), which would otherwise allow header injection.
    """
    if not _QUOTABLE.fullmatch(value):
        raise ValueError(f"value {value!r} has characters a quoted-string cannot carry")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _description(text: str) -> str:
    # RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E. Descriptions come from
    # exception text, so map the rest instead of failing the response.
    text = text.replace('"', "'").replace("\\", "/")
    return re.sub(r"[^\x20\x21\x23-\x5b\x5d-\x7e]", "?", text)


def _params(
    *,
    realm: str | None,
    resource_metadata: str | None,
    scope: str | None,
    error: str | None,
    error_description: str | None,
) -> list[tuple[str, str]]:
    """The RFC 6750 §3 parameters (and RFC 9728 §5.1 ``resource_metadata``) of a challenge, in
    the order realm, resource_metadata, scope, error, error_description; absent ones left out."""
    params: list[tuple[str, str]] = []
    if realm:
        params.append(("realm", realm))
    if resource_metadata:
        params.append(("resource_metadata", resource_metadata))
    if scope:
        tokens = scope.split(" ")
        if not all(_SCOPE_TOKEN.fullmatch(t) for t in tokens):
            raise ValueError(f"scope {scope!r} is not space-separated scope-tokens (RFC 6750 §3)")
        params.append(("scope", scope))
    if error:
        if not _NQSCHAR.fullmatch(error):
            raise ValueError(f"error code {error!r} has characters RFC 6750 §3 forbids")
        params.append(("error", error))
    if error_description:
        params.append(("error_description", _description(error_description)))
    return params


def _challenge(scheme: str, params: list[tuple[str, str]]) -> str:
    if not params:
        return scheme
    return scheme + " " + ", ".join(f"{name}={quote(value)}" for name, value in params)


def build_bearer_challenge(
    *,
    resource_metadata: str | None,
    scope: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
    realm: str | None = None,
) -> str:
    """A Bearer challenge (RFC 6750 §3) with ``resource_metadata`` (RFC 9728 §5.1).

    Parameters appear in the order realm, resource_metadata, scope, error, error_description,
    each as a quoted-string; absent (None or empty) ones are left out. ``scope`` must be
    space-separated scope-tokens and ``error`` an RFC 6750 §3 NQSCHAR string (ValueError
    otherwise); ``error_description`` is reduced to the characters RFC 6750 §3 allows.
    """
    return _challenge(
        "Bearer",
        _params(
            realm=realm,
            resource_metadata=resource_metadata,
            scope=scope,
            error=error,
            error_description=error_description,
        ),
    )


def build_dpop_challenge(
    *,
    algs: Sequence[str],
    resource_metadata: str | None,
    scope: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
    realm: str | None = None,
) -> str:
    """A DPoP challenge (RFC 9449 §7.1): the parameters of :func:`build_bearer_challenge` (the
    DPoP scheme takes RFC 6750's, and its errors ``invalid_dpop_proof`` and ``use_dpop_nonce``,
    §7.1 and §9), then ``algs``, the space-separated JWS algorithms the resource accepts in
    proofs."""
    for alg in algs:
        if not _SCOPE_TOKEN.fullmatch(alg):
            raise ValueError(f"algorithm {alg!r} cannot be listed in algs (RFC 9449 §7.1)")
    params = _params(
        realm=realm,
        resource_metadata=resource_metadata,
        scope=scope,
        error=error,
        error_description=error_description,
    )
    if algs:
        params.append(("algs", " ".join(algs)))
    return _challenge("DPoP", params)


class _Reader:
    """A cursor over a header value; every method is total (never raises)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1

    def skip_separators(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WS + ",":
            self.pos += 1

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TCHAR:
            self.pos += 1
        return self.text[start : self.pos]

    def unquoted(self) -> str:
        """An unquoted parameter value: a token by the grammar, but read up to the next comma or
        whitespace, so that out-of-grammar values seen in the wild (``resource_metadata=https://
        h/p``, whose ``:`` and ``/`` are not tchar) are kept whole instead of cut short."""
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _WS + ",":
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        """A quoted-string starting at the opening quote; an unterminated one runs to the end."""
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if char == '"':
                break
            out.append(char)
        return "".join(out)

    def param_ahead(self) -> bool:
        """Whether an auth-param (``token BWS "="`` not followed by more "=") starts here."""
        save = self.pos
        try:
            if not self.token():
                return False
            self.skip_ws()
            if self.peek() != "=":
                return False
            self.pos += 1
            # "a==" or "a=" at the end is token68 padding, not a parameter.
            self.skip_ws()
            return self.peek() not in ("=", "", ",")
        finally:
            self.pos = save

    def token68_ahead(self) -> int:
        """The length of a token68 here if it stands alone up to a comma or the end, else 0."""
        end = self.pos
        while end < len(self.text) and self.text[end] in _TOKEN68_CHAR:
            end += 1
        if end == self.pos:
            return 0
        while end < len(self.text) and self.text[end] == "=":
            end += 1
        after = end
        while after < len(self.text) and self.text[after] in _WS:
            after += 1
        if after < len(self.text) and self.text[after] != ",":
            return 0
        return end - self.pos


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value (RFC 9110 §11.6.1) into its challenges.

    Several challenges may share one value, separated by commas like their parameters; quoted
    strings may hold escaped characters and commas; scheme and parameter names are
    case-insensitive (returned lowercased). Malformed input never raises: unreadable characters
    are skipped and the challenges that could be read are returned. An unquoted value runs to
    the next comma or whitespace, even where it holds characters a token may not (``:``, ``/``,
    ``?``, ``=``): servers do send ``resource_metadata=https://...`` unquoted. To read several
    header fields, join them with ", " first (RFC 9110 §5.3).
    """
    reader = _Reader(header if isinstance(header, str) else "")
    out: list[Challenge] = []
    guard = 0
    while not reader.done() and guard <= len(reader.text):
        guard += 1
        reader.skip_separators()
        if reader.done():
            break
        scheme = reader.token()
        if not scheme:
            reader.pos += 1  # garbage before a scheme: skip it
            continue
        params: dict[str, str] = {}
        token68: str | None = None
        reader.skip_ws()
        if reader.param_ahead():
            _read_params(reader, params)
        else:
            length = reader.token68_ahead()
            if length:
                token68 = reader.text[reader.pos : reader.pos + length]
                reader.pos += length
        out.append(Challenge(scheme.lower(), params, token68))
    return out


def _read_params(reader: _Reader, params: dict[str, str]) -> None:
    """Read ``#auth-param`` into ``params`` until the next challenge begins or the input ends."""
    while not reader.done():
        name = reader.token().lower()
        reader.skip_ws()
        reader.pos += 1  # the "=" that param_ahead() saw
        reader.skip_ws()
        value = reader.quoted() if reader.peek() == '"' else reader.unquoted()
        params.setdefault(name, value)
        # Skip anything up to the next comma that does not belong to the grammar.
        reader.skip_ws()
        while not reader.done() and reader.peek() != ",":
            reader.pos += 1
        reader.skip_separators()
        if not reader.param_ahead():
            return


__all__ = [
    "Challenge",
    "build_bearer_challenge",
    "build_dpop_challenge",
    "parse_challenges",
    "quote",
]
