"""Access-token verification for resource servers.

Two verifiers behind one ``TokenVerifier`` protocol:

- :class:`JwtVerifier` checks JWT access tokens (RFC 9068) locally against the authorization
  server's JWKS (RFC 7517 §5): signature with an allow-listed asymmetric algorithm (RFC 8725
  §3.1, §3.2: never ``none``, never HMAC), ``typ`` (RFC 9068 §4), ``iss`` (RFC 9068 §4 step 3),
  ``aud`` containing this resource (RFC 9068 §4 step 4, RFC 8707 §2; MCP checklist R04),
  ``exp``/``nbf``/``iat`` with a small leeway (RFC 7519 §4.1.4, §4.1.5).
- :class:`IntrospectionVerifier` asks the authorization server (RFC 7662 §2) about opaque tokens
  or tokens of an AS whose format is not known.

Both keep a bounded cache of verified tokens, keyed by the SHA-256 of the token (the token itself
is never stored or logged), that never outlives the token's ``exp``.

Failures raise :class:`~bastion.oauth.errors.InvalidToken` whose description says what was wrong
(it is sent to the client in ``error_description``). When the verifier cannot reach the
authorization server at all (JWKS or introspection endpoint down) it raises
:class:`~bastion.oauth.errors.TemporarilyUnavailable` instead: the token is not known to be bad,
so answering 401 would send every client into a needless re-authorization.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any, Protocol, Self, runtime_checkable
from urllib.parse import quote, urlsplit

import httpx
from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

from bastion.clock import Clock, system_clock
from bastion.oauth.errors import InvalidToken, TemporarilyUnavailable
from bastion.oauth.resource import canonical
from bastion.resource.principal import Principal

log = logging.getLogger(__name__)

AT_JWT = "at+jwt"
MAX_TOKEN_LENGTH = 16 * 1024
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


@runtime_checkable
class TokenVerifier(Protocol):
    """Turns a bearer token into the :class:`Principal` it speaks for.

    ``verify`` raises :class:`~bastion.oauth.errors.InvalidToken` (RFC 6750 §3.1) for a token
    that must be refused, with a description of what was wrong, and
    :class:`~bastion.oauth.errors.TemporarilyUnavailable` when it cannot tell (the authorization
    server cannot be reached).
    """

    async def verify(self, token: str) -> Principal:
        """Verify ``token`` and return its principal."""
        ...


def _fingerprint(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _short(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _VerifiedCache:
    """A bounded LRU of verified principals, each kept until a deadline (at most its exp)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[bytes, tuple[Principal, int]] = OrderedDict()

    def get(self, key: bytes, now: int) -> Principal | None:
        item = self._items.get(key)
        if item is None:
            return None
        principal, until = item
        if now >= until:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return principal

    def put(self, key: bytes, principal: Principal, until: int, now: int) -> None:
        if self.size <= 0 or until <= now:
            return
        self._items[key] = (principal, until)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(
            f"claim {name} is not a NumericDate (RFC 7519 section 2); got {_short(value)}"
        )
    return float(value)


def _check_times(
    claims: Mapping[str, Any], now: int, leeway: int, *, need_exp: bool
) -> float | None:
    """Check exp, nbf and iat (RFC 7519 §4.1.4-§4.1.6) with ``leeway`` seconds of clock skew;
    return exp."""
    exp = _number(claims, "exp")
    if exp is None:
        if need_exp:
            raise InvalidToken("token has no exp claim (RFC 9068 section 2.2)")
    elif now >= exp + leeway:
        raise InvalidToken(f"token expired at {int(exp)} (now {now})")
    nbf = _number(claims, "nbf")
    if nbf is not None and nbf > now + leeway:
        raise InvalidToken(f"token is not valid before {int(nbf)} (now {now})")
    iat = _number(claims, "iat")
    if iat is not None and iat > now + leeway:
        raise InvalidToken(f"token was issued in the future ({int(iat)}, now {now})")
    return exp


def _audience_matches(aud: object, expected: str) -> bool:
    values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
    if values is None:
        return False
    for value in values:
        if not isinstance(value, str):
            continue
        try:
            if canonical(value) == expected:
                return True
        except ValueError:
            continue
    return False


def _scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """``scope`` (RFC 9068 §2.2.3, RFC 7662 §2.2: space-separated) or ``scp`` (a list, or a
    space-separated string as Entra ID issues it)."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(s for s in scope.split(" ") if s)
    if isinstance(scope, list) and all(isinstance(s, str) for s in scope):
        return frozenset(s for s in scope if s)
    scp = claims.get("scp")
    if isinstance(scp, str):
        return frozenset(s for s in scp.split(" ") if s)
    if isinstance(scp, list) and all(isinstance(s, str) for s in scp):
        return frozenset(s for s in scp if s)
    return frozenset()


def _refuse_sender_constrained(claims: Mapping[str, Any]) -> None:
    # RFC 9449 §7.1, RFC 8705 §3: a token bound to a key (cnf) is only usable with a proof of
    # possession, which a bearer-only resource server cannot check; accepting it as a bearer
    # token would undo the binding.
    if "cnf" in claims:
        raise InvalidToken(
            "token is sender-constrained (cnf claim); this resource accepts bearer tokens only"
        )


def _principal(claims: dict[str, Any], *, subject: str, expires_at: int) -> Principal:
    client_id = claims.get("client_id", claims.get("azp"))
    jti = claims.get("jti")
    return Principal(
        subject=subject,
        client_id=client_id if isinstance(client_id, str) else None,
        scopes=_scopes_of(claims),
        claims=MappingProxyType(claims),
        token_id=jti if isinstance(jti, str) else None,
        expires_at=expires_at,
    )


def _b64json(segment: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
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


class JwtVerifier:
    """Verify JWT access tokens (RFC 9068) with the authorization server's JWKS.

    The JWKS is fetched on first use and cached; it is fetched again after ``jwks_max_age``
    seconds (by one request, the others keep using the cached keys; a failed refresh keeps them
    too), and at once when a token names a ``kid`` the cache does not hold, which is how a key
    rotation at the AS never makes a request fail. Such unknown-kid refetches happen at most
    once per ``jwks_refresh_min_interval`` seconds, so a flood of tokens with random kids costs
    the AS one request per interval; concurrent refetches are coalesced into one.

    ``audience`` is this resource's canonical URI (MCP: the RFC 8707 resource clients request);
    tokens whose ``aud`` (string or array) does not contain it are refused (checklist R04).
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
        self.clock = clock
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=5.0, follow_redirects=False)
        self._cache = _VerifiedCache(cache_size)
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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this verifier made it."""
        if self._own_http:
            await self._http.aclose()

    def __repr__(self) -> str:
        return (
            f"JwtVerifier(issuer={self.issuer!r}, audience={self.audience!r}, "
            f"jwks_uri={self.jwks_uri!r}, algorithms={self.algorithms!r})"
        )

    async def verify(self, token: str) -> Principal:
        """Verify a JWT access token (RFC 9068 §4) and return its principal."""
        if not isinstance(token, str) or not token:
            raise InvalidToken("no token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken(f"token is longer than {MAX_TOKEN_LENGTH} characters")
        key = _fingerprint(token)
        now = self.clock()
        cached = self._cache.get(key, now)
        if cached is not None:
            return cached
        principal = await self._verify(token, now)
        self._cache.put(key, principal, principal.expires_at, now)
        return principal

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
                f"alg {_short(alg)} is not allowed; allowed: {', '.join(self.algorithms)}"
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
            raise InvalidToken(
                f"wrong typ: expected at+jwt (RFC 9068 section 4), got {_short(typ)}"
            )

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
            raise InvalidToken(f"wrong issuer: expected {self.issuer!r}, got {_short(iss)}")
        aud = claims.get("aud")
        if not _audience_matches(aud, self.audience):
            raise InvalidToken(f"wrong audience: expected {self.audience!r}, got {_short(aud)}")
        exp = _check_times(claims, now, self.leeway, need_exp=True) or 0.0
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidToken("token has no sub claim (RFC 9068 section 2.2)")
        _refuse_sender_constrained(claims)
        return _principal(claims, subject=sub, expires_at=int(exp))

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
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"JWKS larger than {MAX_JWKS_BYTES} bytes")
        document = json.loads(bytes(body))
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("not a JWK Set (RFC 7517 §5): no keys array")
        keys: list[Any] = document["keys"]
        return keys


class IntrospectionVerifier:
    """Verify tokens by asking the authorization server (RFC 7662 §2).

    For opaque tokens, or an AS whose token format the resource should not depend on. The
    resource authenticates as a confidential client with ``client_secret_basic`` (RFC 6749
    §2.3.1). An answer is used only if ``active`` is true, ``token_type`` (if given) is a bearer
    access token, ``iss`` equals ``issuer`` (when configured), and ``aud`` contains ``audience``.

    ``aud`` is optional in RFC 7662 §2.2. Without it the resource cannot tell whether the token
    was issued for it or for another resource of the same AS (MCP: servers MUST only accept
    tokens issued for them; checklist R04), so such answers are refused unless
    ``require_audience=False`` is passed, for an AS known to bind tokens to this resource some
    other way (for example one that only ever issues tokens for it).

    Answers are cached until the token's ``exp`` or ``cache_ttl`` seconds, whichever comes first:
    a token revoked at the AS may keep working here for up to ``cache_ttl`` seconds.
    """

    def __init__(
        self,
        *,
        introspection_endpoint: str,
        client_id: str,
        client_secret: str,
        audience: str,
        issuer: str | None = None,
        require_audience: bool = True,
        http: httpx.AsyncClient | None = None,
        cache_size: int = 10_000,
        cache_ttl: int = 60,
        leeway: int = 30,
        clock: Clock = system_clock,
    ) -> None:
        parts = urlsplit(introspection_endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"introspection_endpoint must be an absolute http(s) URL; "
                f"got {introspection_endpoint!r}"
            )
        if cache_ttl < 0 or cache_size < 0 or leeway < 0:
            raise ValueError("cache_ttl, cache_size and leeway must not be negative")
        self.introspection_endpoint = introspection_endpoint
        self.client_id = client_id
        self._client_secret = client_secret
        self.audience = canonical(audience)
        self.issuer = issuer
        self.require_audience = require_audience
        self.cache_ttl = cache_ttl
        self.leeway = leeway
        self.clock = clock
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=5.0, follow_redirects=False)
        self._cache = _VerifiedCache(cache_size)
        self.introspections = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this verifier made it."""
        if self._own_http:
            await self._http.aclose()

    def __repr__(self) -> str:
        # The client secret is never shown (STYLE rule 11).
        return (
            f"IntrospectionVerifier(introspection_endpoint={self.introspection_endpoint!r}, "
            f"client_id={self.client_id!r}, client_secret='***', audience={self.audience!r})"
        )

    async def verify(self, token: str) -> Principal:
        """Introspect ``token`` (RFC 7662 §2.1) and return its principal."""
        if not isinstance(token, str) or not token:
            raise InvalidToken("no token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken(f"token is longer than {MAX_TOKEN_LENGTH} characters")
        key = _fingerprint(token)
        now = self.clock()
        cached = self._cache.get(key, now)
        if cached is not None:
            return cached
        answer = await self._introspect(token)
        now = self.clock()
        principal = self._check(answer, now)
        until = now + self.cache_ttl
        exp = _number(answer, "exp")
        if exp is not None:
            until = min(until, int(exp))
        self._cache.put(key, principal, until, now)
        return principal

    async def _introspect(self, token: str) -> dict[str, Any]:
        # RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined and encoded.
        credentials = f"{quote(self.client_id, safe='')}:{quote(self._client_secret, safe='')}"
        basic = base64.b64encode(credentials.encode("utf-8")).decode("ascii")
        self.introspections += 1
        try:
            response = await self._http.post(
                self.introspection_endpoint,
                data={"token": token, "token_type_hint": "access_token"},
                headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise self._unavailable(f"request failed: {exc}") from None
        if response.status_code != 200:
            hint = " (check client_id and client_secret)" if response.status_code == 401 else ""
            raise self._unavailable(f"HTTP {response.status_code}{hint}{_error_of(response)}")
        try:
            answer = response.json()
        except ValueError:
            raise self._unavailable("the answer is not JSON") from None
        if not isinstance(answer, dict):
            raise self._unavailable("the answer is not a JSON object")
        return answer

    def _unavailable(self, why: str) -> TemporarilyUnavailable:
        return TemporarilyUnavailable(
            "the authorization server could not be asked about the token; retry later",
            detail=f"introspection at {self.introspection_endpoint}: {why}",
        )

    def _check(self, answer: dict[str, Any], now: int) -> Principal:
        if answer.get("active") is not True:
            raise InvalidToken("token is not active (expired, revoked or unknown to the AS)")
        token_type = answer.get("token_type")
        if token_type is not None and (
            not isinstance(token_type, str) or token_type.lower() not in ("bearer", "access_token")
        ):
            raise InvalidToken(f"token_type {_short(token_type)} is not a bearer access token")
        if self.issuer is not None and answer.get("iss") != self.issuer:
            raise InvalidToken(
                f"wrong issuer: expected {self.issuer!r}, got {_short(answer.get('iss'))}"
            )
        if "aud" in answer:
            if not _audience_matches(answer["aud"], self.audience):
                raise InvalidToken(
                    f"wrong audience: expected {self.audience!r}, got {_short(answer['aud'])}"
                )
        elif self.require_audience:
            raise InvalidToken(
                "the introspection answer names no audience, so the token may be for another "
                "resource (RFC 8707)"
            )
        exp = _check_times(answer, now, self.leeway, need_exp=False)
        _refuse_sender_constrained(answer)
        sub = answer.get("sub")
        client_id = answer.get("client_id")
        subject = sub if isinstance(sub, str) and sub else client_id
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("the introspection answer names neither sub nor client_id")
        expires_at = int(exp) if exp is not None else now + self.cache_ttl
        return _principal(dict(answer), subject=subject, expires_at=expires_at)


__all__ = [
    "AT_JWT",
    "DEFAULT_ALGORITHMS",
    "SUPPORTED_ALGORITHMS",
    "IntrospectionVerifier",
    "JwtVerifier",
    "TokenVerifier",
]


def _error_of(response: httpx.Response) -> str:
    """The AS's own RFC 6749 error and description, for the operator's log, if it sent them."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return ""
    description = body.get("error_description")
    detail = f": {description}" if isinstance(description, str) else ""
    return f" ({body['error']}{detail})"[:300]
