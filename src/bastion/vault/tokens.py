"""The gateway's side of the vault: a person's upstream access token for each request.

:meth:`VaultTokens.access_token` reads the person's connection, checks that it was made with
the client bastion is now at the upstream's current authorization server (a connection made
before the configuration changed is no use: the upstream would refuse its tokens), decrypts
the access token and, once it is within ``refresh_margin`` seconds of expiring, refreshes it.

One refresh at a time across processes (every gateway replica, every worker): the refresh
token is used by whoever takes the row's lease
(:func:`bastion.store.upstream_connections.take_refresh_lease`); the others wait for the
row to change, a bounded number of times, and use what it now holds. Servers that rotate
refresh tokens (OAuth 2.1 §4.3.1) would otherwise see the second use of a refresh token as a
replay and revoke the whole grant.

- ``invalid_grant`` on refresh: the grant is gone upstream; the connection is deleted and the
  person must connect again (:class:`~bastion.vault.errors.ConnectionNeeded`).
- The upstream's authorization server unreachable: the current access token is used while it
  has not expired, else :class:`~bastion.vault.errors.UpstreamUnavailable`.

Nothing is cached in the process: each request reads the row (one primary-key lookup), so a
connection revoked or removed by another process (``bastion connections revoke``, a person
removed) is not used again by any gateway process.
"""

from __future__ import annotations

import asyncio
import secrets

import httpx

from bastion.clock import Clock, system_clock
from bastion.config import UpstreamSettings
from bastion.logs import get_logger
from bastion.oauth.token_response import TokenResponse
from bastion.store import keys as key_rows
from bastion.store import upstream_connections as store
from bastion.store.database import Database
from bastion.store.sealed import connection_binding
from bastion.tokens.cipher import Cipher, SecretKeyError
from bastion.vault.errors import ConnectionNeeded, UpstreamMisconfigured, UpstreamUnavailable
from bastion.vault.upstream_server import UpstreamServer, connect_url

log = get_logger(__name__)

# How long one process may hold a connection's refresh (longer than any refresh request).
LEASE_SECONDS = 30
# How long a URL elicitation stays valid; one with at least REUSE_SECONDS left is sent again
# to the same person and client instead of recording a new one for every refused call.
REQUEST_SECONDS = 600
REUSE_SECONDS = 300
# Waits between reads of a row another process is refreshing: short first (a refresh usually
# takes a round trip), together at most LEASE_SECONDS.
_WAITS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 8.0, 9.25)


class VaultTokens:
    """The upstream tokens of the people behind one gateway process: one
    :class:`~bastion.vault.upstream_server.UpstreamServer` per ``auth = "oauth"`` upstream of
    ``upstreams``, the database and the cipher their connections are stored with."""

    def __init__(
        self,
        upstreams: list[UpstreamSettings],
        *,
        issuer: str,
        db: Database,
        cipher: Cipher,
        http: httpx.AsyncClient | None = None,
        clock: Clock = system_clock,
        waits: tuple[float, ...] = _WAITS,
    ) -> None:
        self.issuer = issuer
        self.db = db
        self._cipher = cipher
        self._clock = clock
        self._waits = waits
        self._settings = {u.name: u for u in upstreams if u.auth == "oauth"}
        self.servers = {
            name: UpstreamServer(u, issuer=issuer, db=db, cipher=cipher, http=http)
            for name, u in self._settings.items()
        }

    def __repr__(self) -> str:
        return f"VaultTokens(upstreams={sorted(self.servers)!r})"

    async def aclose(self) -> None:
        """Close each upstream's HTTP client (the database is the caller's)."""
        await asyncio.gather(*(server.aclose() for server in self.servers.values()))

    async def check_secret(self) -> None:
        """Refuse to start with a secret key other than the authorization server's: the
        tokens the connect pages store would not decrypt here, and every person would be asked
        to connect again, endlessly. The signing keys are sealed under the same key; when the
        authorization server has made none yet there is nothing to compare."""
        async with self.db.connect() as conn:
            stored = await key_rows.live(conn, self._clock())
        if not stored:
            return
        try:
            self._cipher.decrypt(stored[0].private_jwk_encrypted, bound_to=stored[0].kid)
        except SecretKeyError:
            raise UpstreamMisconfigured(
                "the gateway's secret key is not the authorization server's: upstream tokens "
                "stored by the connect pages would not decrypt here. Give the gateway the same "
                "secret_key (and previous_secret_keys) as the authorization server, or the same "
                "data_dir when the key is the generated <data_dir>/secret.key"
            ) from None

    # -- the token ------------------------------------------------------------------------------

    async def access_token(self, user_id: str, upstream: str) -> str:
        """``user_id``'s access token at ``upstream``, refreshed when due; raises
        :class:`ConnectionNeeded` (no usable connection) or :class:`UpstreamUnavailable`."""
        now = self._clock()
        async with self.db.connect() as conn:
            connection = await store.find_connection(conn, user_id, upstream)
        if connection is None:
            raise ConnectionNeeded(f"no connection to {upstream}")
        info = await self.servers[upstream].client()
        if (connection.issuer, connection.client_id) != (info.issuer, info.client_id):
            raise ConnectionNeeded(
                f"the connection to {upstream} was made with another authorization server or "
                "client than bastion now uses there",
                detail=f"connection of {user_id} to {upstream} made at {connection.issuer} as "
                f"{connection.client_id}; now {info.issuer} as {info.client_id}",
            )
        token = self._open(connection, "access")
        if self._due(connection, now) and connection.refresh_token_encrypted is not None:
            token = await self._refresh(connection, token, now)
        elif self._expired(connection, now):
            raise ConnectionNeeded(f"the token for {upstream} has expired and cannot be refreshed")
        return token

    async def forget(self, user_id: str, upstream: str, *, refused: str | None = None) -> None:
        """The upstream refused ``user_id``'s token (401): delete the connection, so that the
        next call asks the person to connect again. With ``refused`` (the token the upstream
        refused), only while the row still holds that token: a reconnect or a refresh since
        then stays."""
        async with self.db.transaction() as conn:
            connection = await store.find_connection(conn, user_id, upstream)
            if connection is None:
                return
            if refused is not None:
                try:
                    if self._open(connection, "access") != refused:
                        return
                except ConnectionNeeded:
                    pass  # unreadable: as useless as the refused one
            await store.delete_connection(conn, user_id, upstream)
        log.info("vault: %s refused the token of %s; connection deleted", upstream, user_id)

    async def connect_request(
        self, user_id: str, upstream: str, client_id: str | None
    ) -> tuple[str, str]:
        """Record a URL elicitation for ``user_id`` (calling through ``client_id``) to connect
        to ``upstream``; its id and the connect page's URL on bastion's issuer. The id is random
        and names nothing: the page only serves the signed-in person it was made for."""
        now = self._clock()
        async with self.db.connect() as conn:
            live = await store.live_request(conn, user_id, upstream, client_id, now + REUSE_SECONDS)
        if live is not None:
            return live.id, connect_url(self.issuer, upstream, live.id)
        request = store.ConnectRequest(
            id=secrets.token_urlsafe(32),
            user_id=user_id,
            upstream=upstream,
            client_id=client_id,
            created_at=now,
            expires_at=now + REQUEST_SECONDS,
        )
        async with self.db.transaction() as conn:
            await store.save_request(conn, request)
        return request.id, connect_url(self.issuer, upstream, request.id)

    # -- refreshing -----------------------------------------------------------------------------

    async def _refresh(self, connection: store.Connection, current: str, now: int) -> str:
        user_id, upstream = connection.user_id, connection.upstream
        async with self.db.transaction() as conn:
            leased = await store.take_refresh_lease(
                conn, user_id, upstream, now, now + LEASE_SECONDS
            )
        if leased is None:
            return await self._await_refresh(connection, current)
        if not self._due(leased, now):  # refreshed by another process since our read
            async with self.db.transaction() as conn:
                await store.release_refresh_lease(conn, user_id, upstream)
            return self._open(leased, "access")
        if leased.refresh_token_encrypted is None:
            raise ConnectionNeeded(f"the connection to {upstream} has no refresh token")
        refresh_token = self._open(leased, "refresh")
        try:
            response = await self.servers[upstream].refresh(refresh_token)
        except ConnectionNeeded:
            async with self.db.transaction() as conn:
                await store.delete_connection(conn, user_id, upstream)
            log.info("vault: %s refused the refresh of %s; connection deleted", upstream, user_id)
            raise
        except UpstreamUnavailable as exc:
            async with self.db.transaction() as conn:
                await store.release_refresh_lease(conn, user_id, upstream)
            if self._expired(leased, self._clock()):
                raise
            log.warning("vault: refresh at %s failed (%s); using the current token", upstream, exc)
            return current
        await self._store(leased, response)
        return response.access_token

    async def _store(self, leased: store.Connection, response: TokenResponse) -> None:
        user_id, upstream = leased.user_id, leased.upstream
        now = self._clock()
        refresh = (
            self._seal(response.refresh_token, user_id, upstream, "refresh")
            if response.refresh_token is not None
            # RFC 6749 §6: without a new refresh token, the old one stays valid.
            else leased.refresh_token_encrypted
        )
        async with self.db.transaction() as conn:
            await store.store_refreshed(
                conn,
                user_id,
                upstream,
                access_token_encrypted=self._seal(
                    response.access_token, user_id, upstream, "access"
                ),
                refresh_token_encrypted=refresh,
                scope=response.scope if response.scope is not None else leased.scope,
                expires_at=now + response.expires_in if response.expires_in is not None else None,
                now=now,
            )

    async def _await_refresh(self, connection: store.Connection, current: str) -> str:
        """Another process holds the lease: read the row until it lets go (bounded), then use
        its outcome."""
        user_id, upstream = connection.user_id, connection.upstream
        for wait in self._waits:
            await asyncio.sleep(wait)
            async with self.db.connect() as conn:
                row = await store.find_connection(conn, user_id, upstream)
            now = self._clock()
            if row is None:
                raise ConnectionNeeded(f"the connection to {upstream} is gone")
            if row.refresh_lease_until is not None and row.refresh_lease_until > now:
                continue
            if not self._due(row, now):
                return self._open(row, "access")
            break  # the other refresh failed for a reason that may pass
        if self._expired(connection, self._clock()):
            raise UpstreamUnavailable(f"the token for {upstream} could not be refreshed yet")
        return current

    # -- helpers --------------------------------------------------------------------------------

    def _due(self, connection: store.Connection, now: int) -> bool:
        if connection.expires_at is None:
            return False
        margin = self._settings[connection.upstream].oauth.refresh_margin
        return connection.expires_at - margin <= now

    @staticmethod
    def _expired(connection: store.Connection, now: int) -> bool:
        return connection.expires_at is not None and connection.expires_at <= now

    def _open(self, connection: store.Connection, kind: str) -> str:
        sealed = (
            connection.access_token_encrypted
            if kind == "access"
            else connection.refresh_token_encrypted
        )
        if sealed is None:
            raise ConnectionNeeded(f"the connection to {connection.upstream} has no {kind} token")
        bound_to = connection_binding(connection.user_id, connection.upstream, kind)
        try:
            return self._cipher.decrypt(sealed, bound_to=bound_to).decode("utf-8")
        except (SecretKeyError, UnicodeDecodeError) as exc:
            log.warning(
                "vault: the %s token of %s at %s does not decrypt (%s): was secret_key changed "
                "without previous_secret_keys? The person must connect again",
                kind,
                connection.user_id,
                connection.upstream,
                exc,
            )
            raise ConnectionNeeded(
                f"the stored token for {connection.upstream} is unreadable"
            ) from None

    def _seal(self, token: str, user_id: str, upstream: str, kind: str) -> str:
        bound_to = connection_binding(user_id, upstream, kind)
        return self._cipher.encrypt(token.encode("utf-8"), bound_to=bound_to)


__all__ = ["LEASE_SECONDS", "REQUEST_SECONDS", "REUSE_SECONDS", "VaultTokens"]
