"""The token endpoint's answers (RFC 6749 §5.1, §5.2): built by the authorization server, read
by bastion's client and by federation (bastion as a client of an upstream identity provider).

:func:`read` decides what an answer is, once for both readers:

- an object with a string ``error`` member is an error response (RFC 6749 §5.2), whatever the
  HTTP status: GitHub answers its token errors with 200;
- otherwise anything but 200 with a JSON object is :class:`MalformedTokenResponse`;
- a success (RFC 6749 §5.1) has a non-empty ``access_token`` (Appendix A.12) and a
  ``token_type`` of Bearer compared without case (§5.1, §7.1; RFC 6750 §4); a ``scope`` is a
  string (§3.3), because a scope read as absent would mean "granted as requested";
  ``expires_in`` counts only as a non-negative JSON integer (§5.1, Appendix A.14) and a
  ``refresh_token`` only as a non-empty string, else they read as absent (the lifetime is then
  unknown, the grant not refreshable). Other members (an OpenID Connect ``id_token``) are kept
  in ``extra``.

The errors raised are neutral; each reader turns them into its own exception and words. The
HTTP exchange itself stays with the readers: this module does no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

_MEMBERS = ("access_token", "token_type", "expires_in", "scope", "refresh_token")

Problem = Literal["not_an_object", "not_a_success", "no_access_token", "not_bearer", "bad_scope"]


class MalformedTokenResponse(ValueError):
    """An answer that is neither a usable success nor an error response.

    ``problem`` names the defect, ``value`` the offending member's value (the whole body for
    ``not_an_object`` and ``not_a_success``)."""

    def __init__(self, problem: Problem, reason: str, value: object = None) -> None:
        super().__init__(reason)
        self.problem = problem
        self.reason = reason
        self.value = value


@dataclass(frozen=True)
class TokenResponse:
    """A successful token response (RFC 6749 §5.1): an access token of type Bearer (RFC 6750)
    with its lifetime in seconds (None: not given), the granted ``scope`` (None: not given,
    which means as requested), and a ``refresh_token`` when the client may refresh."""

    access_token: str = field(repr=False)
    expires_in: int | None
    scope: str | None = None
    refresh_token: str | None = field(default=None, repr=False)
    token_type: str = "Bearer"
    # RFC 8693 §2.2.1: what an exchange issued (REQUIRED there, absent elsewhere).
    issued_token_type: str | None = None
    extra: Mapping[str, object] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, compare=False
    )

    @classmethod
    def parse(cls, body: object, *, token_types: Collection[str] = ("Bearer",)) -> TokenResponse:
        """Read a 200 answer's JSON body; raise :class:`MalformedTokenResponse`.

        ``token_types`` are the types the reader can use (compared without case, kept in the
        reader's spelling): a client that sent a DPoP proof also takes ``DPoP`` (RFC 9449 §5),
        one that asked for an ID-JAG ``N_A`` (RFC 8693 §2.2.1)."""
        if not isinstance(body, Mapping):
            raise MalformedTokenResponse("not_an_object", "is not a JSON object", body)
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise MalformedTokenResponse("no_access_token", "has no access_token", access)
        token_type = body.get("token_type")
        usable = {name.lower(): name for name in token_types}
        if not isinstance(token_type, str) or token_type.lower() not in usable:
            raise MalformedTokenResponse(
                "not_bearer",
                f"has token_type {token_type!r}, not {' or '.join(token_types)}",
                token_type,
            )
        scope = body.get("scope")
        if scope is not None and not isinstance(scope, str):
            raise MalformedTokenResponse("bad_scope", "has a scope that is not a string", scope)
        expires_in = body.get("expires_in")
        refresh = body.get("refresh_token")
        return cls(
            access_token=access,
            expires_in=expires_in
            if isinstance(expires_in, int) and not isinstance(expires_in, bool) and expires_in >= 0
            else None,
            scope=scope,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            token_type=usable[token_type.lower()],
            extra=MappingProxyType({k: v for k, v in body.items() if k not in _MEMBERS}),
        )

    @property
    def scopes(self) -> tuple[str, ...] | None:
        """The granted scope tokens in the order given (RFC 6749 §3.3); None when not given."""
        return None if self.scope is None else tuple(s for s in self.scope.split(" ") if s)

    def expires_at(self, now: float) -> float | None:
        """The absolute expiry, if the server gave a lifetime."""
        return None if self.expires_in is None else now + self.expires_in

    def with_refresh_token(self, refresh_token: str) -> TokenResponse:
        """The same response carrying ``refresh_token`` (rotation, OAuth 2.1 §4.3.1)."""
        return replace(self, refresh_token=refresh_token)

    def to_json(self) -> dict[str, str | int]:
        """The JSON object with its members in a fixed order (access_token, issued_token_type,
        token_type, expires_in, scope, refresh_token); an absent issued token type, an absent
        lifetime, an empty scope and an absent refresh token are left out."""
        out: dict[str, str | int] = {"access_token": self.access_token}
        if self.issued_token_type is not None:
            out["issued_token_type"] = self.issued_token_type
        out["token_type"] = self.token_type
        if self.expires_in is not None:
            out["expires_in"] = self.expires_in
        if self.scope:
            out["scope"] = self.scope
        if self.refresh_token is not None:
            out["refresh_token"] = self.refresh_token
        return out


@dataclass(frozen=True)
class TokenErrorResponse:
    """An error response (RFC 6749 §5.2): the ``error`` code and, when given as strings, the
    ``error_description`` and ``error_uri``. The authorization server builds its own with
    :meth:`bastion.oauth.errors.OAuthError.body`."""

    error: str
    error_description: str | None = None
    error_uri: str | None = None

    @classmethod
    def parse(cls, body: object) -> TokenErrorResponse | None:
        """The error response in ``body``, or None when it is not one (no string ``error``)."""
        if not isinstance(body, Mapping):
            return None
        error = body.get("error")
        if not isinstance(error, str) or not error:
            return None
        description = body.get("error_description")
        uri = body.get("error_uri")
        return cls(
            error=error,
            error_description=description if isinstance(description, str) else None,
            error_uri=uri if isinstance(uri, str) else None,
        )


def read(
    status: int, body: object, *, token_types: Collection[str] = ("Bearer",)
) -> TokenResponse | TokenErrorResponse:
    """What a token endpoint answered with HTTP ``status`` and the parsed ``body`` (None when
    the body is not JSON): an error response, or a success with one of ``token_types``; raise
    :class:`MalformedTokenResponse` for anything else (see the module's rules)."""
    error = TokenErrorResponse.parse(body)
    if error is not None:
        return error
    if status != 200:
        raise MalformedTokenResponse(
            "not_a_success", f"answered HTTP {status} without an error object", body
        )
    return TokenResponse.parse(body, token_types=token_types)


__all__ = ["MalformedTokenResponse", "Problem", "TokenErrorResponse", "TokenResponse", "read"]
