"""JWT access tokens (RFC 9068) verified locally with the authorization server's JWKS (RFC 7517
§5): signature with an allow-listed asymmetric algorithm (RFC 8725 §3.1, §3.2: never ``none``,
never HMAC), ``typ`` (RFC 9068 §4), ``iss`` (RFC 9068 §4 step 3), ``aud`` containing this
resource (RFC 9068 §4 step 4, RFC 8707 §2; MCP checklist R04), ``exp``/``nbf``/``iat`` with a
small leeway (RFC 7519 §4.1.4, §4.1.5).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

from bastion import safe_json
from bastion.clock import Clock, system_clock
from bastion.oauth.errors import InvalidToken, TemporarilyUnavailable
from bastion.oauth.resource import canonical
from bastion.resource.principal import Principal
from bastion.resource.revocation import RevocationCheck
from bastion.resource.token_claims import (
    audience_matches,
    check_times,
    principal_from_claims,
    refuse_sender_constrained,
    short,
)
from bastion.resource.verifier import CachingVerifier, read_limited

log = logging.getLogger(__name__)

AT_JWT = "at+jwt"
MAX_JWKS_BYTES = 512 * 1024
MAX_JWKS_KEYS = 100
_FAILURE_BACKOFF = 5.0

# RFC 7518 §3.1, RFC 8037 §3.1, RFC 9864 §2: the asymmetric JWS algorithms a verifier may allow,
# with the key type and curves each needs. HMAC ("HS*") and "none" are absent on purpose: a
# resource server holds only public keys, and an HMAC "signature" made with a public key as the
# secret is the classic algorithm-confusion forgery (RFC 8725 §2.1, §3.1).
_KEY_FOR_ALG: dict[str, tuple[str, frozenset[str] | None]] = {
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
SUPPORTED_ALGORITHMS = tuple(_KEY_FOR_ALG)
DEFAULT_ALGORITHMS = ("ES256", "ES384", "Ed25519", "EdDSA", "RS256", "PS256")
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")

PublicKey = ECKey | OKPKey | RSAKey


def _b64json(segment: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = safe_json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidToken(f"malformed JWT: the {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise InvalidToken(f"malformed JWT: the {what} is not a JSON object")
    return value


def _import_public(data: Mapping[str, Any]) -> PublicKey | None:
    """A JWK of the JWKS as a public key, or None when it cannot verify JWS signatures."""
    public = {k: v for k, v in data.items() if k not in _PRIVATE_MEMBERS}
    kty = public.get("kty")
    if public.get("use") not in (None, "sig"):
        return None
    ops = public.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)
            if kty == "EC":
                return ECKey.import_key(public)
            if kty == "OKP":
                key = OKPKey.import_key(public)
                return key if key.curve_name in ("Ed25519", "Ed448") else None
            if kty == "RSA":
                rsa = RSAKey.import_key(public)
                # RFC 7518 §3.3: keys of 2048 bits or larger MUST be used.
                return rsa if rsa.raw_value.key_size >= 2048 else None
    except (JoseError, ValueError, TypeError, KeyError):
        return None
    # "oct" (symmetric) keys and anything unknown are never used to verify.
    return None


def _fits(key: PublicKey, alg: str) -> bool:
    """Whether ``key`` may verify ``alg``: key type, curve, and the JWK's own alg if it has one."""
    kty, curves = _KEY_FOR_ALG[alg]
    if key.key_type != kty:
        return False
    if curves is not None and not (isinstance(key, ECKey | OKPKey) and key.curve_name in curves):
        return False
    designed = key.get("alg")
    return designed is None or designed == alg


class JwtVerifier(CachingVerifier):
    """Verify JWT access tokens (RFC 9068) with the authorization server's JWKS.

    The JWKS is fetched on first use and cached; it is fetched again after ``jwks_max_age``
    seconds (by one request, the others keep using the cached keys; a failed refresh keeps them
    too), and at once when a token names a ``kid`` the cache does not hold, which is how a key
    rotation at the AS never makes a request fail. Such unknown-kid refetches happen at most
    once per ``jwks_refresh_min_interval`` seconds, so a flood of tokens with random kids costs
    the AS one request per interval; concurrent refetches are coalesced into one.

    ``audience`` is this resource's canonical URI (MCP: the RFC 8707 resource clients request);
    tokens whose ``aud`` (string or array) does not contain it are refused (checklist R04).
    ``revocations`` (a :class:`~bastion.resource.revocation.RevocationList` kept current by a
    feed) makes it refuse tokens whose grant or jti has been revoked, cached tokens included.
    ``signature_checks`` and ``jwks_fetches`` count the work done (for tests and metrics).
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_uri: str,
        http: httpx.AsyncClient | None = None,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        leeway: int = 30,
        require_typ: bool = True,
        cache_size: int = 10_000,
        jwks_refresh_min_interval: float = 30.0,
        jwks_max_age: float = 300.0,
        clock: Clock = system_clock,
        revocations: RevocationCheck | None = None,
    ) -> None:
        if not issuer:
            raise ValueError("issuer is required: the exact iss value of the tokens")
        for alg in algorithms:
            if alg not in _KEY_FOR_ALG:
                raise ValueError(
                    f"algorithm {alg!r} is not allowed for access tokens; choose from "
                    f"{', '.join(SUPPORTED_ALGORITHMS)} (never none or HMAC, RFC 8725 §3.1)"
                )
        if not algorithms:
            raise ValueError("algorithms must name at least one signature algorithm")
        parts = urlsplit(jwks_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"jwks_uri must be an absolute http(s) URL; got {jwks_uri!r}")
        if leeway < 0 or cache_size < 0 or jwks_refresh_min_interval < 0 or jwks_max_age <= 0:
            raise ValueError("leeway, cache_size and the JWKS intervals must not be negative")
        self.issuer = issuer
        self.audience = canonical(audience)
        self.jwks_uri = jwks_uri
        self.algorithms = tuple(dict.fromkeys(algorithms))
        self.leeway = leeway
        self.require_typ = require_typ
        self.jwks_refresh_min_interval = jwks_refresh_min_interval
        self.jwks_max_age = jwks_max_age
        super().__init__(http=http, cache_size=cache_size, clock=clock, revocations=revocations)
        self._registries = {
            alg: jws.JWSRegistry(algorithms=[alg], strict_check_header=False)
            for alg in self.algorithms
        }
        self._by_kid: dict[str, PublicKey] = {}
        self._kidless: list[PublicKey] = []
        self._loaded_at: float | None = None
        self._failed_at: float | None = None
        self._last_kid_refetch: float | None = None
        self._generation = 0
        self._lock = asyncio.Lock()
        self.signature_checks = 0
        self.jwks_fetches = 0

    def __repr__(self) -> str:
        return (
            f"JwtVerifier(issuer={self.issuer!r}, audience={self.audience!r}, "
            f"jwks_uri={self.jwks_uri!r}, algorithms={self.algorithms!r})"
        )

    async def _verify_uncached(self, token: str) -> tuple[Principal, int]:
        """Verify a JWT access token (RFC 9068 §4): the principal, cached until its exp."""
        principal = await self._verify(token, self.clock())
        return principal, principal.expires_at

    async def _verify(self, token: str, now: int) -> Principal:
        segments = token.split(".")
        if len(segments) == 5:
            raise InvalidToken("encrypted (JWE) access tokens are not supported")
        if len(segments) != 3:
            raise InvalidToken("not a JWT (a JWS compact serialization has three parts)")
        header = _b64json(segments[0], "header")
        alg = header.get("alg")
        if alg == "none" or (isinstance(alg, str) and alg.lower() == "none"):
            raise InvalidToken("alg none is never accepted (RFC 8725 section 3.2)")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidToken(
                f"alg {short(alg)} is not allowed; allowed: {', '.join(self.algorithms)}"
            )
        if "crit" in header or "b64" in header:
            raise InvalidToken("the JWT header has critical extensions this resource ignores")
        self._check_typ(header.get("typ"))
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("kid in the JWT header is not a string")
        candidates = await self._keys_for(kid, alg)
        claims = self._check_signature(token, alg, candidates, kid)
        return self._check_claims(claims, now)

    def _check_typ(self, typ: object) -> None:
        if not self.require_typ:
            return
        # RFC 9068 §4: typ is "at+jwt" or "application/at+jwt"; media types are case-insensitive.
        normal = typ.lower() if isinstance(typ, str) else None
        if normal is not None and normal.startswith("application/"):
            normal = normal[len("application/") :]
        if normal != AT_JWT:
            raise InvalidToken(f"wrong typ: expected at+jwt (RFC 9068 section 4), got {short(typ)}")

    def _check_signature(
        self, token: str, alg: str, candidates: list[PublicKey], kid: str | None
    ) -> dict[str, Any]:
        """The verified claims (RFC 7515 §5.2), trying each candidate key (one when kid is set)."""
        registry = self._registries[alg]
        for key in candidates:
            self.signature_checks += 1
            try:
                with warnings.catch_warnings():
                    # joserfc warns on the polymorphic "EdDSA" name (RFC 9864); allowing it is
                    # the operator's choice, made in `algorithms`.
                    warnings.simplefilter("ignore", SecurityWarning)
                    verified = jws.deserialize_compact(token, key, registry=registry)
            except (JoseError, ValueError, TypeError):
                continue
            try:
                claims = json.loads(verified.payload or b"")
            except (ValueError, UnicodeDecodeError):
                raise InvalidToken("malformed JWT: the payload is not JSON") from None
            if not isinstance(claims, dict):
                raise InvalidToken("malformed JWT: the payload is not a JSON object")
            return claims
        which = f"key {kid!r}" if kid else "any key of the JWKS"
        raise InvalidToken(f"bad signature: the token does not verify with {which}")

    def _check_claims(self, claims: dict[str, Any], now: int) -> Principal:
        iss = claims.get("iss")
        if iss != self.issuer:
            raise InvalidToken(f"wrong issuer: expected {self.issuer!r}, got {short(iss)}")
        aud = claims.get("aud")
        if not audience_matches(aud, self.audience):
            raise InvalidToken(f"wrong audience: expected {self.audience!r}, got {short(aud)}")
        exp = check_times(claims, now, self.leeway, need_exp=True) or 0.0
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidToken("token has no sub claim (RFC 9068 section 2.2)")
        refuse_sender_constrained(claims)
        return principal_from_claims(claims, subject=sub, expires_at=int(exp))

    # -- keys ---------------------------------------------------------------------------------

    def _lookup(self, kid: str | None, alg: str) -> list[PublicKey]:
        if kid is not None:
            key = self._by_kid.get(kid)
            return [key] if key is not None else []
        return [k for k in [*self._kidless, *self._by_kid.values()] if _fits(k, alg)]

    async def _keys_for(self, kid: str | None, alg: str) -> list[PublicKey]:
        await self._ensure_loaded()
        found = self._lookup(kid, alg)
        if not found:
            await self._refetch_for_unknown_kid()
            found = self._lookup(kid, alg)
        if not found:
            if kid is not None:
                raise InvalidToken(f"unknown key: kid {kid!r} is not in the AS's JWKS")
            raise InvalidToken(f"unknown key: the AS's JWKS has no key for {alg}")
        usable = [k for k in found if _fits(k, alg)]
        if not usable:
            raise InvalidToken(
                f"key {kid!r} ({found[0].key_type}) cannot verify alg {alg}: key type, curve or "
                "the key's own alg does not fit"
            )
        return usable

    async def _ensure_loaded(self) -> None:
        now = self.clock()
        if self._loaded_at is None:
            if self._failed_at is not None and now - self._failed_at < min(
                _FAILURE_BACKOFF, self.jwks_refresh_min_interval
            ):
                raise self._unavailable("the JWKS could not be fetched a moment ago")
            seen = self._generation
            async with self._lock:
                if self._generation == seen:
                    await self._load()
            if self._loaded_at is None:
                raise self._unavailable("the JWKS could not be fetched")
            return
        if now - self._loaded_at >= self.jwks_max_age and not self._lock.locked():
            # One request refreshes; the others go on with the cached keys meanwhile.
            async with self._lock:
                if self._loaded_at is not None and self.clock() - self._loaded_at >= (
                    self.jwks_max_age
                ):
                    await self._load()

    async def _refetch_for_unknown_kid(self) -> None:
        seen = self._generation
        async with self._lock:
            if self._generation != seen:
                return  # another request fetched while this one waited: use its result
            now = self.clock()
            last = self._last_kid_refetch
            if last is not None and now - last < self.jwks_refresh_min_interval:
                return
            self._last_kid_refetch = now
            await self._load()

    def _unavailable(self, why: str) -> TemporarilyUnavailable:
        return TemporarilyUnavailable(
            "the authorization server's keys are unavailable; retry later",
            detail=f"{why}: {self.jwks_uri}",
        )

    async def _load(self) -> None:
        """Fetch the JWKS; on failure keep what is cached (stale keys beat no keys)."""
        self._generation += 1
        self.jwks_fetches += 1
        now = self.clock()
        try:
            keys = await self._fetch()
        except (httpx.HTTPError, ValueError) as exc:
            self._failed_at = now
            if self._loaded_at is not None:
                # Try again after the minimum interval rather than on every request.
                self._loaded_at = now - self.jwks_max_age + self.jwks_refresh_min_interval
            log.warning("fetching the JWKS at %s failed: %s", self.jwks_uri, exc)
            return
        by_kid: dict[str, PublicKey] = {}
        kidless: list[PublicKey] = []
        for data in keys[:MAX_JWKS_KEYS]:
            if not isinstance(data, dict):
                continue
            key = _import_public(data)
            if key is None:
                continue
            kid = data.get("kid")
            if isinstance(kid, str) and kid:
                by_kid.setdefault(kid, key)
            else:
                kidless.append(key)
        self._by_kid = by_kid
        self._kidless = kidless
        self._loaded_at = now
        self._failed_at = None

    async def _fetch(self) -> list[Any]:
        headers = {"Accept": "application/jwk-set+json, application/json"}
        async with self._http.stream("GET", self.jwks_uri, headers=headers) as response:
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            body = await read_limited(response, MAX_JWKS_BYTES, "the JWKS")
        document = json.loads(body)
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("not a JWK Set (RFC 7517 §5): no keys array")
        keys: list[Any] = document["keys"]
        return keys


__all__ = ["AT_JWT", "DEFAULT_ALGORITHMS", "SUPPORTED_ALGORITHMS", "JwtVerifier", "PublicKey"]
