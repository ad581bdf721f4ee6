"""The client's engine: which Authorization header a request gets, and what to do with a 401 or
403 (MCP authorization, end to end).

:class:`Authorizer` is independent of the HTTP client that carries MCP traffic: it makes its own
discovery, registration and token requests with an ``httpx.AsyncClient`` of its own, and the thin
``httpx.Auth`` adapters (:mod:`bastion.client.auth`, :mod:`bastion.client.mcp_sdk`) ask it

- :meth:`Authorizer.authorization` before a request: the static header configured for the URL,
  or the stored access token (refreshed silently when it is about to expire, also after a
  restart), or nothing;
- :meth:`Authorizer.reconsider` after a 401 or 403: discovery + registration + authorization
  (or client credentials), refresh, or step-up, and the header to retry with.

Logins are single-flight per server: concurrent requests that meet a 401 wait for one login
instead of opening several browsers, and no lock is held while a request is in flight or while
the browser is open (only the token store's lock, around a refresh, for a bounded time).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import httpx

from bastion.client import dpop, enterprise, flow, registration, workload
from bastion.client.browser import OpenUrl, check_authorization_url, open_in_browser
from bastion.client.client_auth import authenticate
from bastion.client.discovery import (
    BearerChallenge,
    Discovery,
    Trace,
    bearer_challenge,
    check_endpoint,
    discover,
    fetch_authorization_server,
    probe,
    probe_registry,
    server_key,
)
from bastion.client.dpop import DPoPKey, Nonces, Prover
from bastion.client.errors import (
    AuthorizationError,
    ClientError,
    StorageError,
    TokenEndpointError,
)
from bastion.client.loopback import LoopbackListener
from bastion.client.models import AuthorizationServerMetadata, RegisteredClient, TokenSet
from bastion.client.scope_selection import (
    covers,
    initial_scopes,
    step_up_scopes,
    with_offline_access,
)
from bastion.client.settings import ClientSettings
from bastion.client.storage import TokenStorage, default_storage
from bastion.net.ssrf import guarded_transport

USER_AGENT = "mcp-bastion-client"
# Token endpoint errors after which a refresh token is dropped (RFC 6749 §5.2).
_DEAD_REFRESH = {"invalid_grant", "invalid_client", "unauthorized_client"}


@dataclass
class Attempt:
    """What one request has already triggered (bounds retries: C15 and "retry once" on 401)."""

    authorizations: int = 0
    refreshed: bool = False
    authorized_after_401: bool = False
    dpop_nonce_retried: bool = False


@dataclass(frozen=True)
class Logout:
    """What :meth:`Authorizer.logout` did: the tokens it forgot (None when none were stored) and,
    when asked to revoke them, which one the authorization server revoked (RFC 7009 §2.1:
    ``"refresh_token"`` or ``"access_token"``, None when none was) and why or why not."""

    forgotten: TokenSet | None
    revoked: str | None = None
    detail: str = "revocation not requested"


@dataclass
class _Server:
    key: str
    tokens: TokenSet | None = None
    loaded: bool = False
    task: asyncio.Task[TokenSet] | None = None
    discovery: Discovery | None = None


class Authorizer:
    """OAuth for MCP servers: discovery, registration, authorization, storage, refresh.

    ``open_url`` sends the user to the authorization URL (default: print it and open the system
    browser); ``storage`` keeps tokens (default: keyring or the 0600 token file); ``http`` is the
    client for discovery and token requests (default: one made here, closed by :meth:`aclose`);
    ``clock`` decides when tokens count as expired. DPoP proofs always carry the wall clock's
    ``iat``: the server compares it with its own.
    """

    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        storage: TokenStorage | None = None,
        open_url: OpenUrl | None = None,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings or ClientSettings()
        self.storage = storage if storage is not None else default_storage(self.settings)
        self.open_url = open_url or open_in_browser()
        self._http = http
        self._own_http = http is None
        self._clock = clock
        self._servers: dict[str, _Server] = {}
        self.nonces = Nonces()  # DPoP-Nonce of each AS and resource (RFC 9449 §8, §9)
        self._dpop_keys: dict[tuple[str, str], DPoPKey] = {}

    # ----------------------------------------------------------------------- plumbing
    @property
    def http(self) -> httpx.AsyncClient:
        """The client for discovery, registration and token requests (made on first use)."""
        if self._http is None:
            transport = (
                guarded_transport(allow_private=False, timeout=self.settings.http_timeout)
                if self.settings.ssrf_guard
                else None
            )
            self._http = httpx.AsyncClient(
                timeout=self.settings.http_timeout,
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT},
                transport=transport,
            )
        return self._http

    async def aclose(self) -> None:
        """Cancel logins still waiting and close the HTTP client made here."""
        for server in self._servers.values():
            if server.task is not None and not server.task.done():
                server.task.cancel()
                with contextlib.suppress(BaseException):
                    await server.task
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> Authorizer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _server(self, url: str) -> _Server:
        key = server_key(url)
        server = self._servers.get(key)
        if server is None:
            server = self._servers[key] = _Server(key)
        return server

    def static_header(self, url: str) -> str | None:
        """The Authorization value configured for this server URL, which disables OAuth."""
        key = server_key(url)
        for configured, value in self.settings.static_headers.items():
            if server_key(configured) == key:
                return value.get_secret_value()
        return None

    @property
    def _allow_http(self) -> bool:
        return self.settings.allow_insecure_http and not self.settings.ssrf_guard

    async def _tokens(self, server: _Server) -> TokenSet | None:
        if not server.loaded:
            server.tokens = await self.storage.get_tokens(server.key)
            server.loaded = True
        return server.tokens

    # ----------------------------------------------------------------- public: per request
    async def authorization(self, url: str) -> str | None:
        """The Authorization header value for a request to ``url`` (RFC 6750 §2.1), or None.

        An access token about to expire is refreshed first (silently, across restarts).
        """
        static = self.static_header(url)
        if static is not None:
            return static
        server = self._server(url)
        tokens = await self._tokens(server)
        if tokens is None:
            return None
        if tokens.expired(self._clock(), self.settings.expiry_skew):
            if tokens.refresh_token is None:
                return None  # the server's 401 starts a new grant
            try:
                tokens = await self._single_flight(server, lambda: self._refresh_or_fail(server))
            except ClientError:
                return None  # the server's 401 then leads to a new authorization
        return tokens.authorization

    async def reconsider(
        self,
        url: str,
        status: int,
        www_authenticate: Sequence[str],
        sent: str | None,
        attempt: Attempt,
    ) -> str | None:
        """After a 401 or 403: the Authorization value to retry with, or None to give up.

        401 (MCP "Authorization Flow Steps"): unless a newer token exists already, rediscover
        the authorization server (it may have changed), refresh if the failed token can be
        refreshed there, else authorize anew; a 401 right after this request's own
        authorization is final. 403 ``insufficient_scope`` (MCP "Step-Up Authorization Flow"):
        authorize again for the union of the scopes requested so far and the challenged ones,
        unless the token was already granted all of them. At most
        ``settings.max_authorizations`` authorizations per request (C15).
        """
        if status not in (401, 403) or self.static_header(url) is not None:
            return None
        server = self._server(url)
        challenge = bearer_challenge(www_authenticate)
        current = await self._tokens(server)
        if status == 401:
            newer = await self._newer(server, sent)
            if newer is not None:
                return newer.authorization  # refreshed or logged in meanwhile (maybe elsewhere)
            if attempt.authorized_after_401:
                return None
            if attempt.authorizations >= self.settings.max_authorizations:
                return None
            allow_refresh = not attempt.refreshed
            tokens = await self._single_flight(
                server, lambda: self._after_401(server, challenge, sent, attempt, allow_refresh)
            )
            attempt.authorized_after_401 = True
            return tokens.authorization
        # 403
        if challenge is None or challenge.error != "insufficient_scope" or not challenge.scope:
            return None
        if current is not None and covers(current.effective_scopes, challenge.scope):
            if sent != current.authorization:
                return current.authorization  # a newer token has the scopes already
            return None  # already granted: another authorization cannot help
        if attempt.authorizations >= self.settings.max_authorizations:
            return None
        attempt.authorizations += 1
        wanted = challenge.scope or ()
        tokens = await self._single_flight(server, lambda: self._step_up(server, challenge, wanted))
        return tokens.authorization

    async def dpop_proof(self, header: str, method: str, url: str) -> str | None:
        """The DPoP proof to send with ``header`` on a request (RFC 9449 §7.1): a fresh one,
        with ``ath`` and the resource's last nonce, when ``header`` presents a DPoP-bound
        token of this authorizer; None otherwise (Bearer, a static header)."""
        tokens = next(
            (
                s.tokens
                for s in self._servers.values()
                if s.tokens is not None and s.tokens.authorization == header
            ),
            None,
        )
        if tokens is None or not tokens.dpop_bound or tokens.dpop_jkt is None:
            return None
        key = await self._dpop_key(tokens.issuer, tokens.client_id, create=False)
        if key is None or key.jkt != tokens.dpop_jkt:
            return None  # the key is gone: the resource refuses, and the 401 starts a new grant
        nonce = self.nonces.get("resource", url)
        return key.proof(method, url, access_token=tokens.access_token, nonce=nonce)

    # ----------------------------------------------------------- public: explicit actions
    async def discover(self, url: str, challenge: BearerChallenge | None = None) -> Discovery:
        """Run discovery for ``url`` with this client's settings (see
        :func:`bastion.client.discovery.discover`)."""
        # PKCE matters for the authorization code grant only (checked again before any
        # authorization request); machine clients may use an AS that does not advertise it.
        pre_cc = {
            c.issuer for c in self.settings.pre_registered if c.grant_type != "authorization_code"
        }
        discovery = await discover(
            self.http,
            url,
            challenge=challenge,
            preferred_issuers=self.settings.preferred_issuers,
            require_pkce=not pre_cc,
            allow_insecure_http=self._allow_http,
            https_only=self.settings.ssrf_guard,
            legacy_2025_03_26=self.settings.legacy_2025_03_26,
        )
        self._server(url).discovery = discovery
        return discovery

    async def login(
        self, url: str, *, challenge: BearerChallenge | None = None, registry: bool = False
    ) -> TokenSet:
        """Authorize for ``url`` now (e.g. ``bastion login``), whatever is stored. Without a
        ``challenge`` the server is probed for its 401 first (its ``scope`` guides the request):
        with an unauthenticated MCP request, or for a ``registry`` with ``GET /v0.1/servers``."""
        server = self._server(url)
        if challenge is None:
            challenge = await self._probe(server, registry)
        return await self._single_flight(server, lambda: self._fresh(server, challenge, ()))

    async def _probe(self, server: _Server, registry: bool) -> BearerChallenge | None:
        """The challenge of the server's 401 to an unauthenticated request (if any)."""
        found = await (probe_registry if registry else probe)(self.http, server.key)
        if found.status is None:
            raise ClientError(
                f"cannot reach {server.key}: {found.detail}; check the URL and that the "
                "server is running"
            )
        return found.challenge

    def _oauth_only(self, url: str) -> None:
        if self.static_header(url) is not None:
            raise ClientError(
                f"a static Authorization header is configured for {url}: OAuth is disabled there"
            )

    async def access_token(self, url: str, *, registry: bool = False) -> str:
        """A valid access token for ``url`` (stored, refreshed, or from a new login)."""
        self._oauth_only(url)
        header = await self.authorization(url)
        tokens = self._server(url).tokens
        if header is not None and tokens is not None and header == tokens.authorization:
            return tokens.access_token
        return (await self.login(url, registry=registry)).access_token

    async def token_with_scopes(
        self, url: str, scopes: Sequence[str], *, registry: bool = False
    ) -> TokenSet:
        """Tokens for ``url`` that carry at least ``scopes`` (e.g. ``bastion token --scope``).

        The stored token (refreshed if needed) when it already has them; else a new
        authorization for the union of the scopes requested before and ``scopes``, as for a
        step-up (MCP "Step-Up Authorization Flow", RFC 6750 §3.1). An authorization server that
        grants fewer scopes (RFC 6749 §3.3) is an :class:`AuthorizationError` naming the missing
        ones, never a narrower token handed on silently; its refusal (``invalid_scope``) is an
        :class:`~bastion.client.errors.AuthorizationDenied` with its own words."""
        self._oauth_only(url)
        wanted = tuple(dict.fromkeys(scopes))
        server = self._server(url)
        header = await self.authorization(url)
        current = server.tokens
        if header is not None and current is not None and covers(current.effective_scopes, wanted):
            return current
        challenge = await self._probe(server, registry)
        tokens = await self._single_flight(server, lambda: self._step_up(server, challenge, wanted))
        missing = [s for s in wanted if s not in tokens.effective_scopes]
        if missing:
            granted = " ".join(tokens.effective_scopes) or "no scope"
            raise AuthorizationError(
                f"the authorization server {tokens.issuer} granted {granted} for {server.key}, "
                f"not {' '.join(missing)}: you may not have it there; ask its administrator "
                "(access rules) or ask for fewer scopes"
            )
        return tokens

    async def stored_tokens(self, url: str) -> TokenSet | None:
        """The tokens stored for ``url`` (possibly expired), without any network request."""
        return await self._tokens(self._server(url))

    async def logout(self, url: str, *, revoke: bool = False) -> Logout:
        """Forget the tokens for ``url`` (every issuer). With ``revoke``, first revoke the newest
        grant at its authorization server (RFC 7009) when its metadata lists a
        ``revocation_endpoint``: the refresh token (which ends the whole grant, §2.1), else the
        access token. The tokens are forgotten whether or not the revocation succeeds."""
        server = self._server(url)
        tokens = await self._tokens(server)
        try:
            if tokens is None:
                return Logout(None, None, "nothing stored")
            return await self._revoke(tokens) if revoke else Logout(tokens)
        finally:
            await self.storage.delete_tokens(server.key)
            server.tokens = None
            server.loaded = True

    # ----------------------------------------------------------------------- internals
    async def _revoke(self, tokens: TokenSet) -> Logout:
        """RFC 7009 §2.1: POST the refresh token (else the access token) to the revocation
        endpoint, authenticated as at the token endpoint; §2.2: 200 means revoked."""
        hint = "refresh_token" if tokens.refresh_token else "access_token"
        try:
            metadata = await fetch_authorization_server(
                self.http,
                tokens.issuer,
                Trace(),
                require_pkce=False,
                allow_insecure_http=self._allow_http,
                https_only=self.settings.ssrf_guard,
            )
            endpoint = metadata.raw.get("revocation_endpoint")
            if not isinstance(endpoint, str):
                return Logout(tokens, None, f"{tokens.issuer} lists no revocation_endpoint")
            check_endpoint(
                endpoint,
                "revocation_endpoint",
                allow_insecure_http=self._allow_http,
                https_only=self.settings.ssrf_guard,
            )
            client = await self._client_of(tokens)
            if client is None:
                return Logout(
                    tokens, None, f"client {tokens.client_id} is no longer configured or stored"
                )
            form = {"token": tokens.refresh_token or tokens.access_token, "token_type_hint": hint}
            headers = {"Accept": "application/json"}
            authenticate(client, form, headers, issuer=metadata.issuer, now=self._clock)
            response = await self.http.post(endpoint, data=form, headers=headers)
            if response.status_code != 200:  # an RFC 6749 §5.2 error (RFC 7009 §2.2.1)
                flow.parse_token_response(response, endpoint)
        except (ClientError, httpx.HTTPError) as exc:
            return Logout(tokens, None, f"not revoked: {exc}")
        return Logout(tokens, hint, f"{hint} revoked at {endpoint}")

    async def _client_of(self, tokens: TokenSet) -> RegisteredClient | None:
        """The client identity that obtained ``tokens`` (to refresh or revoke them), if it is
        still configured or stored."""
        return registration.client_for_refresh(
            self.settings,
            await self.storage.get_client(tokens.issuer),
            tokens.issuer,
            tokens.client_id,
            tokens.client_auth_method,
        )

    async def _newer(self, server: _Server, sent: str | None) -> TokenSet | None:
        """A usable token other than the one just refused: in memory (another request of this
        process) or in the store (another process)."""
        now, skew = self._clock(), self.settings.expiry_skew
        for candidate in (server.tokens, await self.storage.get_tokens(server.key)):
            if (
                candidate is not None
                and candidate.authorization != sent
                and not candidate.expired(now, skew)
            ):
                server.tokens = candidate
                return candidate
        return None

    async def _single_flight(
        self, server: _Server, make: Callable[[], Awaitable[TokenSet]]
    ) -> TokenSet:
        """Run ``make`` as the server's one login task, or wait for the one running."""
        running = server.task
        if running is not None and not running.done():
            return await asyncio.shield(running)
        task: asyncio.Task[TokenSet] = asyncio.ensure_future(make())
        task.add_done_callback(_retrieve)
        server.task = task
        return await asyncio.shield(task)

    async def _after_401(
        self,
        server: _Server,
        challenge: BearerChallenge | None,
        sent: str | None,
        attempt: Attempt,
        allow_refresh: bool,
    ) -> TokenSet:
        discovery = await self.discover(server.key, challenge)
        current = server.tokens
        if (
            allow_refresh
            and current is not None
            and current.issuer == discovery.issuer
            and current.refresh_token is not None
            and sent == current.authorization
        ):
            attempt.refreshed = True
            refreshed = await self._refresh(server, current)
            if refreshed is not None:
                return refreshed
        previous: tuple[str, ...] = ()
        if current is not None and current.issuer == discovery.issuer:
            previous = current.requested_scopes
        attempt.authorizations += 1
        return await self._authorize(server, discovery, previous)

    async def _fresh(
        self, server: _Server, challenge: BearerChallenge | None, previous: Sequence[str]
    ) -> TokenSet:
        discovery = await self.discover(server.key, challenge)
        return await self._authorize(server, discovery, previous)

    async def _step_up(
        self, server: _Server, challenge: BearerChallenge | None, wanted: Sequence[str]
    ) -> TokenSet:
        """Authorize for the union of the scopes requested before and ``wanted`` (C15)."""
        discovery = await self.discover(server.key, challenge)
        current = server.tokens
        previous = (
            current.requested_scopes if current and current.issuer == discovery.issuer else ()
        )
        scopes = step_up_scopes(previous, wanted)
        return await self._authorize(server, discovery, (), scopes=scopes)

    async def _authorize(
        self,
        server: _Server,
        discovery: Discovery,
        previous: Sequence[str],
        *,
        scopes: Sequence[str] | None = None,
    ) -> TokenSet:
        """Obtain new tokens from the discovered authorization server."""
        metadata = discovery.authorization_server
        if scopes is None:
            prm_scopes = (
                discovery.protected_resource.scopes_supported
                if discovery.protected_resource
                else None
            )
            challenged = discovery.challenge.scope if discovery.challenge else None
            chosen = initial_scopes(challenged, prm_scopes)
            scopes = step_up_scopes(previous, chosen) if chosen else tuple(previous)
        client = await registration.existing_client(
            self.settings, self.storage, metadata, now=self._clock
        )
        if client is not None and client.grant_type == "client_credentials":
            return await self._client_credentials(server, discovery, client, scopes)
        if client is not None and client.grant_type == "jwt-bearer":
            return await self._jwt_bearer(server, discovery, client, scopes)
        requested = with_offline_access(
            scopes, metadata.scopes_supported, wanted=self.settings.request_offline_access
        )
        return await self._authorization_code(server, discovery, client, requested)

    async def _authorization_code(
        self,
        server: _Server,
        discovery: Discovery,
        client: RegisteredClient | None,
        scopes: Sequence[str],
    ) -> TokenSet:
        metadata = discovery.authorization_server
        port = self.settings.redirect_port
        if client is not None and client.redirect_uris:
            with contextlib.suppress(ValueError):
                port = _port_of(client.redirect_uris[0]) or port
        listener = await LoopbackListener.start(
            self.settings.redirect_host,
            port,
            self.settings.redirect_path,
            server=discovery.resource,
        )
        try:
            if client is None:
                client = await registration.register(
                    self.http, self.settings, self.storage, metadata, listener.redirect_uri
                )
            request = flow.build_authorization_request(
                metadata,
                client_id=client.client_id,
                redirect_uri=listener.redirect_uri,
                resource=discovery.resource,
                scopes=scopes,
            )
            check_authorization_url(request.url, allow_insecure_http=self._allow_http)
            query = await self._await_callback(listener, request.url)
            code = flow.validate_callback(query, request)
            prover = await self._prover(discovery, client)
            response = await flow.exchange_code(
                self.http, metadata, client, request, code, now=self._clock, dpop=prover
            )
        finally:
            await listener.close()
        return await self._store(
            server, discovery, metadata, client, response, tuple(scopes), prover
        )

    async def _await_callback(self, listener: LoopbackListener, url: str) -> str:
        """Open the URL and wait for the callback; an opener failure ends the wait early."""
        opener = asyncio.ensure_future(self.open_url(url))
        waiter = asyncio.ensure_future(listener.wait(self.settings.callback_timeout))
        try:
            done, _ = await asyncio.wait({opener, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if opener in done and opener.exception() is not None and waiter not in done:
                raise AuthorizationError(
                    f"could not open the authorization URL: {opener.exception()}"
                ) from opener.exception()
            return await waiter
        finally:
            for task in (opener, waiter):
                if not task.done():
                    task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _client_credentials(
        self,
        server: _Server,
        discovery: Discovery,
        client: RegisteredClient,
        scopes: Sequence[str],
    ) -> TokenSet:
        metadata = discovery.authorization_server
        prover = await self._prover(discovery, client)
        response = await flow.client_credentials(
            self.http, metadata, client, discovery.resource, scopes, now=self._clock, dpop=prover
        )
        return await self._store(
            server, discovery, metadata, client, response, tuple(scopes), prover
        )

    async def _jwt_bearer(
        self,
        server: _Server,
        discovery: Discovery,
        client: RegisteredClient,
        scopes: Sequence[str],
    ) -> TokenSet:
        """RFC 7523 §2.1 with a workload token (read now) or an ID-JAG obtained now from the
        enterprise IdP for this AS and resource. A refusal is raised, never retried."""
        metadata = discovery.authorization_server
        pre = self.settings.pre_registered_for(metadata.issuer)
        if pre is None:  # pragma: no cover - only pre-registered clients have this grant
            raise ClientError(f"no pre-registered jwt-bearer client for {metadata.issuer}")
        if pre.enterprise is not None:
            assertion = await enterprise.request_id_jag(
                self.http,
                pre.enterprise,
                audience=metadata.issuer,
                resource=discovery.resource,
                scopes=scopes,
                now=self._clock,
                allow_insecure_http=self._allow_http,
                https_only=self.settings.ssrf_guard,
            )
        else:
            assertion = workload.read_assertion(pre)
        prover = await self._prover(discovery, client)
        response = await flow.jwt_bearer(
            self.http,
            metadata,
            client,
            assertion,
            discovery.resource,
            scopes,
            now=self._clock,
            dpop=prover,
        )
        return await self._store(
            server, discovery, metadata, client, response, tuple(scopes), prover
        )

    # ------------------------------------------------------------------------------ DPoP
    def _dpop_mode(self, issuer: str) -> dpop.DPoPMode:
        pre = self.settings.pre_registered_for(issuer)
        return pre.dpop if pre is not None and pre.dpop is not None else self.settings.dpop

    async def _prover(self, discovery: Discovery, client: RegisteredClient) -> Prover | None:
        """The DPoP prover for a new grant at this AS, or None (the ``dpop`` setting,
        :func:`bastion.client.dpop.wanted`)."""
        metadata = discovery.authorization_server
        challenge = discovery.challenge
        takes_it = dpop.resource_takes_dpop(
            challenge.dpop_algs if challenge is not None else None,
            discovery.protected_resource.raw if discovery.protected_resource else None,
        )
        if not dpop.wanted(self._dpop_mode(metadata.issuer), metadata.raw, takes_it):
            return None
        key = await self._dpop_key(metadata.issuer, client.client_id, create=True)
        assert key is not None
        return Prover(key, self.nonces)

    async def _dpop_key(self, issuer: str, client_id: str, *, create: bool) -> DPoPKey | None:
        """This client's DPoP key at ``issuer``: cached, stored, or (``create``) made now and
        stored, under the store's lock so two processes make one key."""
        cached = self._dpop_keys.get((issuer, client_id))
        if cached is not None:
            return cached
        async with self.storage.lock():
            stored = await self.storage.get_dpop_key(issuer, client_id)
            if stored is not None:
                try:
                    key = DPoPKey.from_jwk(stored)
                except ValueError as exc:
                    raise StorageError(
                        f"the stored DPoP key of client {client_id} at {issuer} is unusable "
                        f"({exc}); log out of the servers of that issuer to start afresh"
                    ) from None
            elif create:
                key = DPoPKey.generate()
                await self.storage.set_dpop_key(issuer, client_id, key.to_jwk())
            else:
                return None
        self._dpop_keys[(issuer, client_id)] = key
        return key

    async def _refresh_prover(self, tokens: TokenSet) -> Prover | Literal[False] | None:
        """A grant obtained with a DPoP proof is refreshed with the same key (RFC 9449 §5):
        its prover, None for a grant without DPoP, False when that key is no longer stored
        (the refresh token is then useless: a new authorization follows)."""
        if tokens.dpop_jkt is None:
            return None
        key = await self._dpop_key(tokens.issuer, tokens.client_id, create=False)
        if key is None or key.jkt != tokens.dpop_jkt:
            return False
        return Prover(key, self.nonces)

    async def _store(
        self,
        server: _Server,
        discovery: Discovery,
        metadata: AuthorizationServerMetadata,
        client: RegisteredClient,
        response: flow.TokenResponse,
        requested: tuple[str, ...],
        prover: Prover | None = None,
    ) -> TokenSet:
        now = self._clock()
        tokens = TokenSet(
            server_url=server.key,
            resource=discovery.resource,
            issuer=metadata.issuer,
            token_endpoint=metadata.token_endpoint,
            client_id=client.client_id,
            grant_type=client.grant_type,
            client_auth_method=client.token_endpoint_auth_method,
            access_token=response.access_token,
            expires_at=response.expires_at(now),
            refresh_token=response.refresh_token,
            requested_scopes=requested,
            granted_scopes=response.scopes,
            obtained_at=now,
            token_type=response.token_type,
            dpop_jkt=prover.key.jkt if prover is not None else None,
        )
        await self.storage.set_tokens(tokens)
        server.tokens = tokens
        server.loaded = True
        return tokens

    async def _refresh_or_fail(self, server: _Server) -> TokenSet:
        tokens = server.tokens
        refreshed = await self._refresh(server, tokens) if tokens is not None else None
        if refreshed is None:
            raise AuthorizationError(
                f"the stored refresh token for {server.key} no longer works; log in again"
            )
        return refreshed

    async def _refresh(self, server: _Server, tokens: TokenSet) -> TokenSet | None:
        """Refresh under the store's lock: another process may have refreshed already, and a
        rotated refresh token must not be replayed (RFC 9700 §4.14.2). None if it is dead."""
        async with self.storage.lock():
            stored = await self.storage.get_tokens(server.key, tokens.issuer)
            if (
                stored is not None
                and stored.access_token != tokens.access_token
                and not stored.expired(self._clock(), self.settings.expiry_skew)
            ):
                server.tokens = stored
                return stored
            if stored is not None and stored.refresh_token:
                tokens = stored
            if tokens.refresh_token is None:
                return None
            client = await self._client_of(tokens)
            if client is None:
                return None
            prover = await self._refresh_prover(tokens)
            if prover is False:
                return None
            try:
                response = await flow.refresh(
                    self.http,
                    tokens.issuer,
                    tokens.token_endpoint,
                    client,
                    tokens.refresh_token,
                    tokens.resource,
                    now=self._clock,
                    dpop=prover or None,
                )
            except TokenEndpointError as exc:
                if exc.error in _DEAD_REFRESH:
                    await self.storage.delete_tokens(server.key, tokens.issuer)
                    server.tokens = None
                    return None
                raise
            now = self._clock()
            renewed = tokens.with_changes(
                access_token=response.access_token,
                token_type=response.token_type,
                expires_at=response.expires_at(now),
                refresh_token=response.refresh_token or tokens.refresh_token,
                granted_scopes=response.scopes
                if response.scopes is not None
                else tokens.granted_scopes,
                obtained_at=now,
            )
            await self.storage.set_tokens(renewed)
            server.tokens = renewed
            return renewed


def _retrieve(task: asyncio.Task[TokenSet]) -> None:
    """Mark a login task's exception as retrieved (its waiters may all have gone)."""
    if not task.cancelled():
        task.exception()


def _port_of(uri: str) -> int | None:
    return urlsplit(uri).port


__all__ = ["Attempt", "Authorizer", "Logout"]
