"""DPoP proofs (RFC 9449): the check of one proof JWT, for the authorization server (§4.3) and
the resource (§7, with ``ath``).

Pure: no I/O, no clock, no store. The caller passes the ``DPoP`` header values of the request,
its method and URI, the instant ``now``, the nonce it demands (if any) and the access token (at
a resource). The replay check of ``jti`` (§11.1) is the caller's: :class:`DPoPProof` returns
the ``jti`` and ``iat`` a store records. The key binding of a token (``cnf.jkt``, §6.1) is the
caller's too: :attr:`DPoPProof.jkt` is the RFC 7638 thumbprint it compares.

Every refusal is a :class:`DPoPError`: ``use_dpop_nonce`` when the nonce is missing or not the
one demanded (§8, §9), ``invalid_dpop_proof`` for everything else (§5, §7.1).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from bastion.oauth import jose
from bastion.oauth.dpop_nonce import DPoPNonces

DPoPErrorCode = Literal["invalid_dpop_proof", "use_dpop_nonce"]
PROOF_TYPE = "dpop+jwt"  # RFC 9449 §4.2
DEFAULT_ALGORITHMS = ("ES256", "EdDSA", "RS256", "PS256")
MAX_AGE = (
    60  # seconds a proof is accepted after its iat (§4.3 point 11: "within an acceptable window")
)
FUTURE_LEEWAY = 5  # seconds of clock skew allowed for an iat ahead of now
# A proof carries a public key and a signature: an RSA-4096 proof is under 2 KB. Anything far
# larger is refused before any JSON is parsed.
MAX_PROOF_LENGTH = 8192
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class DPoPError(ValueError):
    """A DPoP proof refused. ``code`` is the OAuth error code to answer with (RFC 9449 §5 at the
    token endpoint, §7.1 in a resource's challenge); ``str()`` says what was wrong in words a
    client developer can act on."""

    def __init__(self, code: DPoPErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: DPoPErrorCode = code


def _invalid(message: str) -> DPoPError:
    return DPoPError("invalid_dpop_proof", message)


@dataclass(frozen=True)
class DPoPProof:
    """A proof that passed every check: the RFC 7638 SHA-256 thumbprint of its key (``jkt``,
    what ``cnf.jkt`` holds), its ``jti`` and ``iat`` (for the caller's replay store) and the
    ``alg`` it was signed with."""

    jkt: str
    jti: str
    iat: int
    alg: str


# Proof keys already imported, by their JWK: a client signs every proof with one key, and
# importing it (point decoding, curve check) costs a third of a proof's verification.
_KEYS_KEPT = 4096
_keys: dict[str, tuple[jose.PublicKey, str] | None] = {}


def _proof_key(jwk: Mapping[str, object]) -> tuple[jose.PublicKey, str] | None:
    """The public key of a proof's ``jwk`` header and its RFC 7638 thumbprint (None when it
    is not a usable public key), remembered for the next proof of the same key."""
    try:
        cache_key = json.dumps(jwk, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        cache_key = None
    if cache_key is not None and cache_key in _keys:
        return _keys[cache_key]
    key = jose.public_key(jwk)
    found = None if key is None else (key, key.thumbprint())
    if cache_key is not None:
        if len(_keys) >= _KEYS_KEPT:
            _keys.clear()
        _keys[cache_key] = found
    return found


def jwk_thumbprint(jwk: Mapping[str, object]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public signature JWK (EC, OKP or RSA), base64url
    without padding: the hash of its required members only, sorted, without whitespace (§3.2).
    Raises ValueError for a JWK that is not a usable public signature key
    (:func:`bastion.oauth.jose.public_key`)."""
    key = jose.public_key(jwk)
    if key is None:
        raise ValueError("not a usable public signature JWK (EC, OKP or RSA of 2048 bits or more)")
    return key.thumbprint()


def access_token_hash(access_token: str) -> str:
    """The ``ath`` of an access token (RFC 9449 §4.2): base64url of SHA-256 of its ASCII octets."""
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _percent_normalized(text: str) -> str:
    """RFC 3986 §6.2.2.1-§6.2.2.2: percent-encodings in uppercase, unreserved ones decoded."""

    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(0)[1:], 16))
        return char if char in _UNRESERVED else match.group(0).upper()

    return _PERCENT.sub(one, text)


def _dot_segments_removed(path: str) -> str:
    """RFC 3986 §5.2.4 remove_dot_segments (§6.2.2.3), for an absolute path."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def normalized_htu(uri: str) -> str | None:
    """``uri`` as ``htu`` is compared (RFC 9449 §4.3 point 9): query and fragment dropped, then
    the syntax-based and scheme-based normalization of RFC 3986 §6.2.2-§6.2.3 (scheme and host
    in lowercase, percent-encodings normalized, dot segments removed, the default port dropped,
    an empty path as "/"). None when ``uri`` is not an absolute http(s) URI."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or parts.username or parts.password:
        return None
    host = _percent_normalized(host).lower()
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    path = _dot_segments_removed(_percent_normalized(parts.path or "/"))
    return urlunsplit((scheme, netloc, path, "", ""))


def _string_claim(claims: Mapping[str, object], name: str, meaning: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise _invalid(f"the DPoP proof has no {name} claim ({meaning}; RFC 9449 section 4.2)")
    return value


def verify_proof(
    header_values: Sequence[str],
    *,
    method: str,
    uri: str,
    now: int,
    allowed_algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
    nonce: str | DPoPNonces | None = None,
    access_token: str | None = None,
    max_age: int = MAX_AGE,
    future_leeway: int = FUTURE_LEEWAY,
) -> DPoPProof:
    """Check the DPoP proof of a request (RFC 9449 §4.3; with ``access_token``, §7.1 too).

    ``header_values``: every ``DPoP`` header value of the request; ``method`` and ``uri``: the
    request's method and URI (its query and fragment are ignored); ``now``: the checking
    instant; ``nonce``: the nonce this server demands, if it demands one (a fixed value, or the
    :class:`~bastion.oauth.dpop_nonce.DPoPNonces` whose current nonces it accepts);
    ``access_token``: the token presented with the proof, whose hash ``ath`` must be.
    Raises :class:`DPoPError`.
    """
    # §4.3 point 1: exactly one DPoP header field.
    if len(header_values) != 1:
        raise _invalid(
            f"the request must carry exactly one DPoP header (RFC 9449 section 4.3); "
            f"it carries {len(header_values)}"
        )
    token = header_values[0].strip()
    if len(token) > MAX_PROOF_LENGTH:
        raise _invalid(f"the DPoP proof is longer than {MAX_PROOF_LENGTH} characters")
    # §4.3 point 2: a well-formed JWT (a compact JWS: never a JWE, never unsigned).
    try:
        header = jose.read_header(token)
    except jose.MalformedJws as exc:
        raise _invalid(
            f"the DPoP header is not a signed JWT (RFC 9449 section 4.2): {exc}"
        ) from None
    # §4.3 point 4: typ.
    if header.get("typ") != PROOF_TYPE:
        raise _invalid(
            f"the DPoP proof's typ must be {PROOF_TYPE!r} (RFC 9449 section 4.2); "
            f"got {header.get('typ')!r}"
        )
    # §4.3 point 5: an asymmetric algorithm this server supports (never none, never HMAC).
    try:
        alg = jose.signing_alg(header, allowed_algorithms)
    except jose.AlgorithmNotAllowed as exc:
        raise _invalid(
            f"the DPoP proof's alg {exc.alg!r} is not accepted (RFC 9449 section 4.3); "
            f"sign with one of: {', '.join(allowed_algorithms)}"
        ) from None
    except jose.CriticalHeader as exc:
        raise _invalid(f"the DPoP proof is refused: {exc}") from None
    # §4.3 point 7: the jwk header is a public key, without private members.
    jwk = header.get("jwk")
    if not isinstance(jwk, Mapping):
        raise _invalid("the DPoP proof has no jwk header (RFC 9449 section 4.2)")
    private = sorted(name for name in jwk if name in jose._PRIVATE_MEMBERS)
    if private:
        raise _invalid(
            f"the DPoP proof's jwk holds private key members ({', '.join(private)}): send the "
            f"public key only (RFC 9449 section 4.3)"
        )
    found = _proof_key(jwk)
    if found is None or not jose.fits(found[0], alg):
        raise _invalid(
            f"the DPoP proof's jwk is not a public key that can verify {alg} "
            f"(RFC 9449 section 4.3; RSA keys need 2048 bits or more)"
        )
    key, jkt = found
    # §4.3 point 6: the signature verifies with that key.
    try:
        claims = jose.verify_signature(token, alg, [key], embedded_key=True).claims
    except jose.BadSignature:
        raise _invalid(
            "the DPoP proof's signature does not verify with its jwk (RFC 9449 section 4.3)"
        ) from None
    except jose.MalformedJws as exc:
        raise _invalid(f"the DPoP proof is not a JWT (RFC 9449 section 4.2): {exc}") from None
    # §4.3 point 3: the required claims.
    jti = _string_claim(claims, "jti", "a unique identifier of the proof")
    htm = _string_claim(claims, "htm", "the HTTP method of the request")
    htu = _string_claim(claims, "htu", "the URI of the request")
    # §4.3 point 8: htm.
    if htm != method:
        raise _invalid(f"the DPoP proof's htm {htm!r} is not this request's method {method!r}")
    # §4.3 point 9: htu, compared without query and fragment, after normalization.
    expected = normalized_htu(uri)
    if expected is None or normalized_htu(htu) != expected:
        raise _invalid(
            f"the DPoP proof's htu {htu!r} is not this request's URI {expected or uri!r} "
            f"(RFC 9449 section 4.3; query and fragment are ignored)"
        )
    # §4.3 point 10: the nonce the server demands (§8, §9).
    if nonce is not None:
        sent = claims.get("nonce")
        if sent is None:
            raise DPoPError("use_dpop_nonce", "this server requires a nonce in the DPoP proof")
        if not isinstance(sent, str) or not (
            nonce.accepts(sent, now)
            if isinstance(nonce, DPoPNonces)
            else hmac.compare_digest(sent.encode(), nonce.encode())
        ):
            raise DPoPError(
                "use_dpop_nonce", "the DPoP proof's nonce is not the one this server provided"
            )
    # §4.3 point 11: iat within the window.
    try:
        iat = jose.numeric_date(claims, "iat")
    except jose.TimeClaimError:
        iat = None
    if iat is None:
        raise _invalid("the DPoP proof has no numeric iat claim (RFC 9449 section 4.2)")
    if iat > now + future_leeway:
        raise _invalid(
            f"the DPoP proof was issued in the future (iat {int(iat)}, now {now}): check the "
            f"client's clock"
        )
    if iat < now - max_age:
        raise _invalid(
            f"the DPoP proof is too old (iat {int(iat)}, now {now}, at most {max_age} s): "
            f"make a new proof for each request"
        )
    # §4.3 point 12, §7.1: ath, the hash of the access token presented with the proof.
    if access_token is not None:
        ath = claims.get("ath")
        if not isinstance(ath, str):
            raise _invalid(
                "the DPoP proof has no ath claim for the access token (RFC 9449 section 7)"
            )
        if not hmac.compare_digest(ath.encode(), access_token_hash(access_token).encode()):
            raise _invalid(
                "the DPoP proof's ath is not the hash of the access token sent (RFC 9449 section 7)"
            )
    return DPoPProof(jkt=jkt, jti=jti, iat=int(iat), alg=alg)


__all__ = [
    "DEFAULT_ALGORITHMS",
    "FUTURE_LEEWAY",
    "MAX_AGE",
    "MAX_PROOF_LENGTH",
    "PROOF_TYPE",
    "DPoPError",
    "DPoPErrorCode",
    "DPoPProof",
    "access_token_hash",
    "jwk_thumbprint",
    "normalized_htu",
    "verify_proof",
]
