"""JOSE, decided once for every verifier in bastion: the access-token verifier of the resource
side, the ID Token check of federation and the client assertions of ``private_key_jwt``.

- One algorithm table (RFC 7518 §3.1, RFC 8037 §3.1, RFC 9864 §2): the asymmetric JWS
  algorithms, with the key type and curves each needs. ``none`` and HMAC are absent on purpose
  (RFC 8725 §2.1, §3.1): a verifier holds public keys only, and an HMAC "signature" keyed with a
  public key is the classic algorithm-confusion forgery.
- The usable signature keys of a JWK Set (RFC 7517 §4.2 ``use``, §4.3 ``key_ops``, §4.4
  ``alg``, §4.5 ``kid``, §5): public members only, RSA of 2048 bits or more (RFC 7518 §3.3).
- The signature check of a compact JWS (RFC 7515 §5.2) against an allow-list of algorithms.
- The time claims ``exp``, ``nbf`` and ``iat`` (RFC 7519 §4.1.4-§4.1.6) with a leeway, at an
  instant the caller reads from its own clock.

Pure: no I/O. The callers fetch the keys and read the clock; every refusal is a
:class:`JoseError`, which each caller words as its own error (``invalid_token``, an ID Token
refused, ``invalid_client``). Headers and claims are JSON objects, typed :data:`JsonObject`:
each reader narrows the member values it uses.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from joserfc import jws
from joserfc.errors import JoseError as _JoserfcError
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

PublicKey = ECKey | OKPKey | RSAKey
# A JOSE header or a JWT claims set: a JSON object whose member values each reader narrows.
JsonObject = dict[str, object]

# RFC 7518 §3.1, RFC 8037 §3.1, RFC 9864 §2: JWS alg -> (kty, the curves it allows or None).
# "EdDSA" is the polymorphic name RFC 9864 deprecates: with an Ed25519 key it is the algorithm
# now named Ed25519, with an Ed448 key the one named Ed448.
ALGORITHMS: Mapping[str, tuple[str, frozenset[str] | None]] = MappingProxyType(
    {
        "ES256": ("EC", frozenset({"P-256"})),
        "ES384": ("EC", frozenset({"P-384"})),
        "ES512": ("EC", frozenset({"P-521"})),
        "Ed25519": ("OKP", frozenset({"Ed25519"})),
        "Ed448": ("OKP", frozenset({"Ed448"})),
        "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
        "RS256": ("RSA", None),
        "RS384": ("RSA", None),
        "RS512": ("RSA", None),
        "PS256": ("RSA", None),
        "PS384": ("RSA", None),
        "PS512": ("RSA", None),
    }
)
SUPPORTED_ALGORITHMS = tuple(ALGORITHMS)
MAX_JWKS_KEYS = 100
MIN_RSA_BITS = 2048  # RFC 7518 §3.3
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_EDWARDS_CURVES = ("Ed25519", "Ed448")
# One registry per algorithm: a JWS verifies only under the alg its header names and the
# caller allowed. Header members besides the registered ones are tolerated (strict_check_header
# off); "crit" is refused before (see signing_alg).
_REGISTRIES = {
    alg: jws.JWSRegistry(algorithms=[alg], strict_check_header=False) for alg in ALGORITHMS
}
# A JWS whose header carries its public key (a DPoP proof's jwk, RFC 9449 §4.2) has a longer
# header than joserfc's default limit of 512 octets: an RSA jwk alone is about 400 characters.
MAX_EMBEDDED_KEY_HEADER = 4096
_EMBEDDED_KEY_REGISTRIES = {
    alg: jws.JWSRegistry(algorithms=[alg], strict_check_header=False) for alg in ALGORITHMS
}
for _registry in _EMBEDDED_KEY_REGISTRIES.values():
    _registry.max_header_length = MAX_EMBEDDED_KEY_HEADER


# -- errors -----------------------------------------------------------------------------------


class JoseError(ValueError):
    """A JWS, a JWK Set or a claim was refused; ``str()`` says why in neutral words."""


class MalformedJws(JoseError):
    """Not a compact JWS (RFC 7515 §7.1), or a part that is not a base64url JSON object.

    ``part`` is ``"token"`` (the serialization itself: ``encrypted`` when it has the five parts
    of a JWE), ``"header"`` or ``"payload"``."""

    def __init__(
        self, part: Literal["token", "header", "payload"], reason: str, *, encrypted: bool = False
    ) -> None:
        super().__init__(f"the {part} {reason}")
        self.part = part
        self.reason = reason
        self.encrypted = encrypted


class AlgorithmNotAllowed(JoseError):
    """The header's ``alg`` is not one the caller allows (RFC 8725 §3.1); ``none`` never is."""

    def __init__(self, alg: object, allowed: Sequence[str]) -> None:
        super().__init__(f"alg {alg!r} is not allowed; allowed: {', '.join(allowed)}")
        self.alg = alg
        self.allowed = tuple(allowed)

    @property
    def is_none(self) -> bool:
        """Whether the header asked for no signature at all (RFC 8725 §3.2), in any case."""
        return isinstance(self.alg, str) and self.alg.lower() == "none"


class CriticalHeader(JoseError):
    """The header has ``crit`` (RFC 7515 §4.1.11) or ``b64`` (RFC 7797): extensions a verifier
    that understands none must refuse."""


class BadKeyId(JoseError):
    """The header's ``kid`` is not a string (RFC 7515 §4.1.4)."""

    def __init__(self, kid: object) -> None:
        super().__init__(f"kid {kid!r} is not a string")
        self.kid = kid


class UnknownKey(JoseError):
    """No key to try: ``kid`` names none in the JWK Set, or (without ``kid``) no key fits
    ``alg``. A caller may fetch the JWK Set again: the signer may have rotated its keys."""

    def __init__(self, kid: str | None, alg: str) -> None:
        which = f"kid {kid!r}" if kid is not None else f"a key for {alg}"
        super().__init__(f"the JWK Set has no {which}")
        self.kid = kid
        self.alg = alg


class KeyDoesNotFit(JoseError):
    """The keys ``kid`` names cannot verify ``alg``: key type, curve or the key's own ``alg``."""

    def __init__(self, kid: str, key_type: str, alg: str) -> None:
        super().__init__(f"key {kid!r} ({key_type}) cannot verify alg {alg}")
        self.kid = kid
        self.key_type = key_type
        self.alg = alg


class BadSignature(JoseError):
    """The signature verifies with none of the candidate keys (RFC 7515 §5.2 step 8)."""

    def __init__(self, alg: str, tried: int) -> None:
        super().__init__(f"the {alg} signature verifies with none of {tried} keys")
        self.alg = alg
        self.tried = tried


class NotAJwkSet(JoseError):
    """The document is not a JWK Set: no ``keys`` array (RFC 7517 §5)."""


TimeProblem = Literal[
    "missing", "not_a_number", "expired", "not_yet_valid", "issued_in_future", "too_long"
]


class TimeClaimError(JoseError):
    """A time claim refused (RFC 7519 §4.1.4-§4.1.6): ``claim`` names it, ``problem`` says how,
    ``value`` is what the token said and ``now`` the instant it was checked at (None for a claim
    that is not a number, which is wrong at any time)."""

    def __init__(
        self, claim: str, problem: TimeProblem, value: object, now: int | None, message: str
    ) -> None:
        super().__init__(message)
        self.claim = claim
        self.problem: TimeProblem = problem
        self.value = value
        self.now = now


# -- keys -------------------------------------------------------------------------------------


def public_key(jwk: object) -> PublicKey | None:
    """The JWK as a public key that may verify JWS signatures, or None when it may not.

    Private members are dropped. RFC 7517 §4.2: ``use``, if present, must be ``sig``; §4.3:
    ``key_ops``, if present, must include ``verify``. Symmetric (``oct``) keys, curves no JWS
    algorithm here uses, and RSA keys under 2048 bits (RFC 7518 §3.3) never verify.
    """
    if not isinstance(jwk, Mapping):
        return None
    public = {k: v for k, v in jwk.items() if k not in _PRIVATE_MEMBERS}
    if public.get("use") not in (None, "sig"):
        return None
    ops = public.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    kty = public.get("kty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)
            if kty == "EC":
                return ECKey.import_key(public)
            if kty == "OKP":
                okp = OKPKey.import_key(public)
                return okp if okp.curve_name in _EDWARDS_CURVES else None
            if kty == "RSA":
                rsa = RSAKey.import_key(public)
                return rsa if rsa.raw_value.key_size >= MIN_RSA_BITS else None
    except (_JoserfcError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return None


def _fully_specified(alg: str, curve: str | None) -> str:
    """RFC 9864 §2: "EdDSA" with an Ed25519 (Ed448) key is the algorithm named Ed25519 (Ed448)."""
    if alg == "EdDSA" and curve is not None and curve in _EDWARDS_CURVES:
        return curve
    return alg


def fits(key: PublicKey, alg: str) -> bool:
    """Whether ``key`` may verify ``alg``: its type and curve (the table) and its own ``alg``
    when it has one (RFC 7517 §4.4), EdDSA and the fully specified names compared by curve."""
    rule = ALGORITHMS.get(alg)
    if rule is None:
        return False
    kty, curves = rule
    if key.key_type != kty:
        return False
    curve = key.curve_name if isinstance(key, ECKey | OKPKey) else None
    if curves is not None and curve not in curves:
        return False
    designed = key.get("alg")
    if designed is None:
        return True
    return isinstance(designed, str) and (
        _fully_specified(designed, curve) == _fully_specified(alg, curve)
    )


class UsableKeys:
    """The keys of a JWK Set that may verify JWS signatures, in the set's order."""

    __slots__ = ("_by_kid", "keys")

    def __init__(self, keys: Sequence[PublicKey] = ()) -> None:
        self.keys: tuple[PublicKey, ...] = tuple(keys)
        by_kid: dict[str, list[PublicKey]] = {}
        for key in self.keys:
            if isinstance(key.kid, str) and key.kid:
                by_kid.setdefault(key.kid, []).append(key)
        self._by_kid = by_kid

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"UsableKeys(kids={sorted(self._by_kid)!r}, count={len(self.keys)})"

    @property
    def kids(self) -> frozenset[str]:
        """The key ids the set holds."""
        return frozenset(self._by_kid)

    def candidates(self, kid: str | None, alg: str) -> list[PublicKey]:
        """The keys to try for a JWS with ``alg`` and ``kid``: those ``kid`` names (RFC 7517
        §4.5 lets keys of different types share one), else every key (RFC 7515 §4.1.4: kid is
        optional); of those, the ones that fit ``alg``.

        Raises :class:`UnknownKey` when ``kid`` names no key or, without ``kid``, no key fits;
        :class:`KeyDoesNotFit` when the keys ``kid`` names cannot verify ``alg``.
        """
        if kid is None:
            found = [key for key in self.keys if fits(key, alg)]
            if not found:
                raise UnknownKey(None, alg)
            return found
        named = self._by_kid.get(kid)
        if not named:
            raise UnknownKey(kid, alg)
        usable = [key for key in named if fits(key, alg)]
        if not usable:
            raise KeyDoesNotFit(kid, named[0].key_type, alg)
        return usable


def usable_keys(jwks: object) -> UsableKeys:
    """The usable signature keys of a JWK Set (RFC 7517 §5), the first :data:`MAX_JWKS_KEYS`
    read; keys that may not verify (:func:`public_key`) are skipped. Raises
    :class:`NotAJwkSet` when ``jwks`` has no ``keys`` array."""
    raw = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(raw, list):
        raise NotAJwkSet("not a JWK Set (RFC 7517 §5): no keys array")
    found = [key for key in map(public_key, raw[:MAX_JWKS_KEYS]) if key is not None]
    return UsableKeys(found)


# -- the JWS ----------------------------------------------------------------------------------


def _json_object(raw: bytes, part: Literal["header", "payload"], what: str) -> JsonObject:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedJws(part, f"is not {what}") from None
    if not isinstance(value, dict):
        raise MalformedJws(part, "is not a JSON object")
    return value


def read_header(token: str) -> JsonObject:
    """The JOSE header of a compact JWS (RFC 7515 §7.1), unverified: only to choose the
    algorithm and key."""
    segments = token.split(".")
    if len(segments) == 5:
        raise MalformedJws("token", "is a JWE (five parts), not a JWS", encrypted=True)
    if len(segments) != 3:
        raise MalformedJws("token", "is not a JWS compact serialization of three parts")
    segment = segments[0]
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise MalformedJws("header", "is not base64url JSON") from None
    return _json_object(raw, "header", "base64url JSON")


def read_claims(token: str) -> JsonObject:
    """The claims of a compact JWS, unverified: only to find whose keys verify it (an empty
    object when there are none to read)."""
    segments = token.split(".")
    if len(segments) != 3:
        return {}
    segment = segments[1]
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return _json_object(raw, "payload", "base64url JSON")
    except (binascii.Error, ValueError):
        return {}


def signing_alg(header: Mapping[str, object], allowed: Sequence[str]) -> str:
    """The header's ``alg`` if it is in the table and in ``allowed`` (RFC 8725 §3.1: never
    ``none``, never HMAC); a header with ``crit`` (RFC 7515 §4.1.11) or ``b64`` (RFC 7797) is
    refused too, since no extension is understood here."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHMS or alg not in allowed:
        raise AlgorithmNotAllowed(alg, allowed)
    if "crit" in header or "b64" in header:
        raise CriticalHeader("the header has critical extensions, none of which is understood")
    return alg


def key_id(header: Mapping[str, object]) -> str | None:
    """The header's ``kid`` (RFC 7515 §4.1.4), or None."""
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise BadKeyId(kid)
    return kid


@dataclass(frozen=True)
class Verified:
    """A JWS whose signature verified: its header and claims, the alg and the key that
    verified it, and how many keys were tried."""

    header: JsonObject
    claims: JsonObject
    alg: str
    key: PublicKey
    tried: int


def _for_joserfc(key: PublicKey, alg: str) -> PublicKey:
    """``key`` as joserfc may use it for ``alg``: joserfc refuses a key whose own alg is another
    name, so a key published for "EdDSA" that :func:`fits` "Ed25519" (or the other way round)
    is handed over without its alg."""
    designed = key.get("alg")
    if designed is None or designed == alg:
        return key
    unnamed = {k: v for k, v in key.as_dict(private=False).items() if k != "alg"}
    return type(key).import_key(unnamed)


def verify_signature(
    token: str, alg: str, candidates: Sequence[PublicKey], *, embedded_key: bool = False
) -> Verified:
    """Check the signature of ``token`` under ``alg`` with each candidate key in turn (RFC 7515
    §5.2); the payload must be a JSON object (RFC 7519 §7.2 step 10). ``embedded_key``: the
    header carries a ``jwk`` and may be up to :data:`MAX_EMBEDDED_KEY_HEADER` long. Raises
    :class:`BadSignature` when no key verifies it."""
    registry = (_EMBEDDED_KEY_REGISTRIES if embedded_key else _REGISTRIES)[alg]
    for tried, key in enumerate(candidates, start=1):
        try:
            with warnings.catch_warnings():
                # joserfc warns on the polymorphic "EdDSA" name (RFC 9864); allowing it is the
                # caller's choice, made in its allow-list.
                warnings.simplefilter("ignore", SecurityWarning)
                verified = jws.deserialize_compact(token, _for_joserfc(key, alg), registry=registry)
        except (_JoserfcError, ValueError, TypeError):
            continue
        claims = _json_object(verified.payload or b"", "payload", "JSON")
        return Verified(dict(verified.headers()), claims, alg, key, tried)
    raise BadSignature(alg, len(candidates))


def verify(token: str, keys: UsableKeys, allowed: Sequence[str]) -> Verified:
    """Read the header, check its ``alg`` against ``allowed``, pick the keys (``kid``) and check
    the signature: every :class:`JoseError` above may be raised."""
    header = read_header(token)
    alg = signing_alg(header, allowed)
    return verify_signature(token, alg, keys.candidates(key_id(header), alg))


# -- time claims ------------------------------------------------------------------------------


def numeric_date(claims: Mapping[str, object], name: str) -> float | None:
    """The NumericDate claim ``name`` (RFC 7519 §2: a finite JSON number of seconds), or None
    when absent."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TimeClaimError(
            name,
            "not_a_number",
            value,
            None,
            f"claim {name} is not a NumericDate (RFC 7519 section 2)",
        )
    return float(value)


def check_times(
    claims: Mapping[str, object],
    *,
    now: int,
    leeway: int,
    require_exp: bool = True,
    require_iat: bool = False,
    refuse_future_iat: bool = True,
    max_lifetime: int | None = None,
) -> float | None:
    """Check the time claims at ``now`` with ``leeway`` seconds of clock skew; return ``exp``.

    RFC 7519 §4.1.4: refused from ``exp`` + leeway on (``require_exp``: it must be present;
    ``max_lifetime``: at most that many seconds ahead). §4.1.5: refused before ``nbf`` -
    leeway. §4.1.6: ``iat`` later than now + leeway is refused (``refuse_future_iat``;
    ``require_iat``: it must be present).
    """
    exp = numeric_date(claims, "exp")
    if exp is None:
        if require_exp:
            raise TimeClaimError("exp", "missing", None, now, "token has no exp claim")
    elif now >= exp + leeway:
        raise TimeClaimError("exp", "expired", exp, now, f"token expired at {int(exp)} (now {now})")
    elif max_lifetime is not None and exp > now + max_lifetime:
        raise TimeClaimError(
            "exp",
            "too_long",
            exp,
            now,
            f"token expires at {int(exp)}, more than {max_lifetime} s after now ({now})",
        )
    nbf = numeric_date(claims, "nbf")
    if nbf is not None and nbf > now + leeway:
        raise TimeClaimError(
            "nbf", "not_yet_valid", nbf, now, f"token is not valid before {int(nbf)} (now {now})"
        )
    iat = numeric_date(claims, "iat")
    if iat is None:
        if require_iat:
            raise TimeClaimError("iat", "missing", None, now, "token has no iat claim")
    elif refuse_future_iat and iat > now + leeway:
        raise TimeClaimError(
            "iat",
            "issued_in_future",
            iat,
            now,
            f"token was issued in the future ({int(iat)}, now {now})",
        )
    return exp


__all__ = [
    "ALGORITHMS",
    "MAX_EMBEDDED_KEY_HEADER",
    "MAX_JWKS_KEYS",
    "MIN_RSA_BITS",
    "SUPPORTED_ALGORITHMS",
    "AlgorithmNotAllowed",
    "BadKeyId",
    "BadSignature",
    "CriticalHeader",
    "JoseError",
    "JsonObject",
    "KeyDoesNotFit",
    "MalformedJws",
    "NotAJwkSet",
    "PublicKey",
    "TimeClaimError",
    "TimeProblem",
    "UnknownKey",
    "UsableKeys",
    "Verified",
    "check_times",
    "fits",
    "key_id",
    "numeric_date",
    "public_key",
    "read_claims",
    "read_header",
    "signing_alg",
    "usable_keys",
    "verify",
    "verify_signature",
]
