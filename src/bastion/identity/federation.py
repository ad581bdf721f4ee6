"""Signing in through an upstream identity provider: the authorization request bastion sends, and
what it does with the answer.

bastion is an OAuth client of each configured provider (one confidential client registered there
once), while MCP clients only ever talk to bastion. Towards the provider it uses the
authorization code flow with PKCE S256 (RFC 7636), a ``state`` bound to the browser and to the
pending authorization request (kept by :mod:`bastion.authserver.federation`), and for OpenID
Connect a ``nonce``; the answer's ``iss`` is checked when present or promised (RFC 9207 §2.4).
The code is exchanged with client authentication; then the id_token is validated
(:mod:`bastion.identity.id_token`), and the user-info endpoint, or GitHub's REST API, read.

The upstream tokens stay here: they are used for these requests and, when configured, the
refresh token is returned to be stored encrypted. Nothing of them reaches an MCP client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from bastion.clock import Clock, system_clock
from bastion.config import Settings
from bastion.identity import id_token
from bastion.identity.claims import UpstreamIdentity, map_claims
from bastion.identity.errors import (
    InvalidIdToken,
    SignInStateError,
    UpstreamInvalidResponse,
)
from bastion.identity.github import github_claims
from bastion.identity.providers import (
    ENTRA_TENANT_PLACEHOLDER,
    ProviderSpec,
    redirect_uri,
    resolve,
)
from bastion.identity.upstream_client import ProviderClient
from bastion.logs import get_logger
from bastion.oauth.token_response import TokenResponse
from bastion.tokens.cipher import Cipher

log = get_logger("bastion.federation")

# Seconds the provider's clock may be behind bastion's when auth_time is checked.
AUTH_TIME_SKEW = 60


@dataclass(frozen=True)
class Outcome:
    """A completed upstream sign-in: who it is and, if it is to be kept, the refresh token."""

    identity: UpstreamIdentity
    refresh_token: str | None = None


def add_query(url: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


class Federation:
    """The configured upstream providers of one authorization server (made in its lifespan)."""

    def __init__(
        self,
        settings: Settings,
        *,
        cipher: Cipher,
        clock: Clock = system_clock,
        transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        self.issuer = settings.issuer
        self.clock = clock
        self.cipher = cipher
        self.specs = {cfg.name: resolve(cfg) for cfg in settings.upstreams}
        self.clients = {
            name: ProviderClient(spec, transport=(transports or {}).get(name))
            for name, spec in self.specs.items()
        }

    @property
    def providers(self) -> list[ProviderSpec]:
        """Every provider, in configuration order."""
        return list(self.specs.values())

    def get(self, name: str) -> ProviderSpec | None:
        """The provider called ``name``, if configured."""
        return self.specs.get(name)

    def redirect_uri(self, name: str) -> str:
        """bastion's callback for ``name`` (what must be registered at the provider)."""
        return redirect_uri(self.issuer, name)

    def seal(self, value: str, *, bound_to: str) -> str:
        """Encrypt a secret kept in the database (PKCE verifier, upstream refresh token)."""
        return self.cipher.encrypt(value.encode("utf-8"), bound_to=f"federation:{bound_to}")

    def unseal(self, sealed: str, *, bound_to: str) -> str:
        """Decrypt what :meth:`seal` made with the same ``bound_to``."""
        return self.cipher.decrypt(sealed, bound_to=f"federation:{bound_to}").decode("utf-8")

    async def aclose(self) -> None:
        """Close every provider's HTTP client."""
        for client in self.clients.values():
            await client.aclose()

    async def authorization_url(
        self,
        name: str,
        *,
        state: str,
        nonce: str,
        code_challenge: str,
        reauthenticate: bool = False,
    ) -> str:
        """Where to send the browser: the provider's authorization endpoint with the request
        (RFC 6749 §4.1.1, RFC 7636 §4.3, OpenID Connect Core 1.0 §3.1.2.1). ``reauthenticate``
        (an OpenID provider): ask it to authenticate the person anew, whatever session it
        has (``prompt=login``, ``max_age=0``, OpenID Connect Core 1.0 §3.1.2.1); the ID
        token's ``auth_time`` then says when it did."""
        spec = self.specs[name]
        endpoints = await self.clients[name].endpoints()
        params = {
            "response_type": "code",
            "client_id": spec.client_id,
            "redirect_uri": self.redirect_uri(name),
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
        if spec.scopes:
            params["scope"] = " ".join(spec.scopes)
        if spec.protocol == "oidc":
            params["nonce"] = nonce
        params.update(spec.authorization_params)
        if reauthenticate and spec.protocol == "oidc":
            prompts = params.get("prompt", "").split()
            params["prompt"] = " ".join(["login", *(p for p in prompts if p != "login")])
            params["max_age"] = "0"
        return add_query(endpoints.authorization_endpoint, params)

    async def check_response_issuer(self, name: str, iss: str | None) -> None:
        """RFC 9207 §2.4: an ``iss`` in the authorization response must be the provider's; a
        provider that promises it must send it. A mismatch means the answer may come from
        another provider (mix-up): nothing in it is acted upon, error fields included."""
        spec = self.specs[name]
        endpoints = await self.clients[name].endpoints()
        expected = endpoints.issuer
        if ENTRA_TENANT_PLACEHOLDER in expected:
            return  # multi-tenant: the id_token's iss is checked against its tid instead
        if iss is None:
            if endpoints.iss_parameter_supported:
                raise SignInStateError(
                    f"The answer from {spec.label} could not be verified.",
                    detail=f"{spec.describe()}: the authorization response has no iss although "
                    "the provider advertises authorization_response_iss_parameter_supported",
                )
            return
        if iss != expected:
            raise SignInStateError(
                f"The answer did not come from {spec.label}.",
                detail=f"{spec.describe()}: the authorization response's iss {iss!r} is not "
                f"{expected!r} (RFC 9207)",
            )

    async def complete(
        self,
        name: str,
        *,
        code: str,
        nonce: str,
        verifier: str,
        authenticated_since: int | None = None,
    ) -> Outcome:
        """Exchange the code and establish who signed in. ``authenticated_since`` (a sign-in
        again, :meth:`authorization_url` with ``reauthenticate``): an ID token whose
        ``auth_time`` is older (beyond the clock skew allowed) is refused; a provider that
        sends no ``auth_time`` is taken at its word."""
        spec = self.specs[name]
        client = self.clients[name]
        tokens = await client.exchange_code(code, verifier, self.redirect_uri(name))
        access_token = tokens.access_token
        if spec.protocol == "oidc":
            claims, issuer = await self._oidc_claims(spec, client, tokens, nonce)
            if authenticated_since is not None:
                _check_auth_time(spec, claims, authenticated_since)
        elif spec.protocol == "github":
            claims, issuer = await github_claims(client, access_token), spec.issuer
        else:
            claims, issuer = await client.userinfo(access_token), spec.issuer
        try:
            identity = map_claims(spec, claims, issuer)
        except ValueError as exc:
            raise UpstreamInvalidResponse(
                f"{spec.label} did not say who signed in",
                detail=f"{spec.describe()}: {exc}",
                hint=f"Check upstreams[{spec.name}].claims.subject.",
            ) from None
        # The subject as a field, so that logging.user_ids hashes or omits it.
        log.info(
            "upstream sign-in: %s %s",
            spec.describe(),
            identity.issuer,
            extra={"subject": identity.subject},
        )
        return Outcome(identity, tokens.refresh_token if spec.store_refresh_token else None)

    async def _oidc_claims(
        self, spec: ProviderSpec, client: ProviderClient, tokens: TokenResponse, nonce: str
    ) -> tuple[dict[str, object], str]:
        raw = tokens.extra.get("id_token")
        if not isinstance(raw, str):
            raise InvalidIdToken(
                f"{spec.label} sent no ID token",
                detail=f"{spec.describe()}: the token response has no id_token",
                hint=f'upstreams[{spec.name}].scopes must include "openid".',
            )
        endpoints = await client.endpoints()
        expected = id_token.Expected(
            issuer=endpoints.issuer,
            client_id=spec.client_id,
            nonce=nonce,
            now=self.clock(),
            algorithms=endpoints.id_token_algorithms,
            access_token=tokens.access_token,
        )
        try:
            try:
                claims = id_token.validate(raw, await client.keys(), expected)
            except id_token.UnknownKeyError:
                claims = id_token.validate(raw, await client.keys(refresh=True), expected)
        except InvalidIdToken as exc:
            exc.detail = f"{spec.describe()}: {exc.detail}"
            raise
        if spec.use_userinfo and endpoints.userinfo_endpoint is not None:
            info = await client.userinfo(tokens.access_token)
            if info.get("sub") != claims["sub"]:
                # OpenID Connect Core 1.0 §5.3.4: otherwise the response must not be used.
                raise UpstreamInvalidResponse(
                    f"{spec.label}'s user-info is about someone else",
                    detail=f"{spec.describe()}: user-info sub {info.get('sub')!r} is not the "
                    f"id_token's {claims['sub']!r}",
                )
            # The signed id_token wins where both say something.
            claims = {**info, **claims}
        return claims, str(claims["iss"])


def _check_auth_time(spec: ProviderSpec, claims: Mapping[str, object], since: int) -> None:
    """A sign-in again must be a new authentication: ``auth_time`` not before ``since``."""
    auth_time = claims.get("auth_time")
    if auth_time is None:
        return
    if not isinstance(auth_time, int | float) or isinstance(auth_time, bool):
        raise InvalidIdToken(
            f"{spec.label} sent an ID token that could not be verified.",
            detail=f"{spec.describe()}: auth_time {auth_time!r} is not a number",
        )
    if auth_time < since - AUTH_TIME_SKEW:
        raise InvalidIdToken(
            f"{spec.label} did not ask you to sign in again. Sign in again to go on.",
            detail=f"{spec.describe()}: a sign-in again was asked for (prompt=login, "
            f"max_age=0) but the ID token's auth_time {int(auth_time)} is before the request "
            f"({since})",
        )


__all__ = ["AUTH_TIME_SKEW", "Federation", "Outcome", "add_query"]
