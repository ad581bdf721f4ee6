"""JWT access tokens (RFC 9068) verified locally with the authorization server's JWKS (RFC 7517
§5): signature with an allow-listed asymmetric algorithm (RFC 8725 §3.1, §3.2: never ``none``,
never HMAC), ``typ`` (RFC 9068 §4), ``iss`` (RFC 9068 §4 step 3), ``aud`` containing this
resource (RFC 9068 §4 step 4, RFC 8707 §2; MCP checklist R04), ``exp``/``nbf``/``iat`` with a
small leeway (RFC 7519 §4.1.4, §4.1.5).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

from bastion.clock import Clock, system_clock
from bastion.oauth import jose
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
_FAILURE_BACKOFF = 5.0

# The asymmetric JWS algorithms a verifier may allow: the table of bastion.oauth.jose (never
# none, never HMAC: RFC 8725 §2.1, §3.1).
SUPPORTED_ALGORITHMS = jose.SUPPORTED_ALGORITHMS
DEFAULT_ALGORITHMS = ("ES256", "ES384", "Ed25519", "EdDSA", "RS256", "PS256")

PublicKey = jose.PublicKey


def _malformed(exc: jose.MalformedJws) -> InvalidToken:
    if exc.encrypted:
        return InvalidToken("encrypted (JWE) access tokens are not supported")
    if exc.part == "token":
        return InvalidToken("not a JWT (a JWS compact serialization has three parts)")
    return InvalidToken(f"malformed JWT: {exc}")


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
            if alg not in jose.ALGORITHMS:
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
        self._keys = jose.UsableKeys()
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
        try:
            header = jose.read_header(token)
            alg = jose.signing_alg(header, self.algorithms)
        except jose.MalformedJws as exc:
            raise _malformed(exc) from None
        except jose.AlgorithmNotAllowed as exc:
            if exc.is_none:
                raise InvalidToken("alg none is never accepted (RFC 8725 section 3.2)") from None
            raise InvalidToken(
                f"alg {short(exc.alg)} is not allowed; allowed: {', '.join(self.algorithms)}"
            ) from None
        except jose.CriticalHeader:
            raise InvalidToken(
                "the JWT header has critical extensions this resource ignores"
            ) from None
        self._check_typ(header.get("typ"))
        try:
            kid = jose.key_id(header)
        except jose.BadKeyId:
            raise InvalidToken("kid in the JWT header is not a string") from None
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
    ) -> jose.JsonObject:
        """The verified claims (RFC 7515 §5.2), trying each candidate key (one when kid is set)."""
        try:
            verified = jose.verify_signature(token, alg, candidates)
        except jose.BadSignature as exc:
            self.signature_checks += exc.tried
            which = f"key {kid!r}" if kid else "any key of the JWKS"
            raise InvalidToken(f"bad signature: the token does not verify with {which}") from None
        except jose.MalformedJws as exc:
            self.signature_checks += 1
            raise _malformed(exc) from None
        self.signature_checks += verified.tried
        return verified.claims

    def _check_claims(self, claims: jose.JsonObject, now: int) -> Principal:
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

    async def _keys_for(self, kid: str | None, alg: str) -> list[PublicKey]:
        await self._ensure_loaded()
        try:
            try:
                return self._keys.candidates(kid, alg)
            except jose.UnknownKey:
                await self._refetch_for_unknown_kid()
                return self._keys.candidates(kid, alg)
        except jose.UnknownKey:
            if kid is not None:
                raise InvalidToken(f"unknown key: kid {kid!r} is not in the AS's JWKS") from None
            raise InvalidToken(f"unknown key: the AS's JWKS has no key for {alg}") from None
        except jose.KeyDoesNotFit as exc:
            raise InvalidToken(
                f"key {kid!r} ({exc.key_type}) cannot verify alg {alg}: key type, curve or "
                "the key's own alg does not fit"
            ) from None

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

    async def has_keys(self) -> bool:
        """Whether the AS's JWKS is in memory, fetching it first if it never was (within the
        usual backoff after a failure): without it no token can be verified."""
        if self._loaded_at is None:
            try:
                await self._ensure_loaded()
            except TemporarilyUnavailable:
                return False
        return self._loaded_at is not None

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
        self._keys = keys
        self._loaded_at = now
        self._failed_at = None

    async def _fetch(self) -> jose.UsableKeys:
        headers = {"Accept": "application/jwk-set+json, application/json"}
        async with self._http.stream("GET", self.jwks_uri, headers=headers) as response:
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            body = await read_limited(response, MAX_JWKS_BYTES, "the JWKS")
        return jose.usable_keys(json.loads(body))


__all__ = ["AT_JWT", "DEFAULT_ALGORITHMS", "SUPPORTED_ALGORITHMS", "JwtVerifier", "PublicKey"]
