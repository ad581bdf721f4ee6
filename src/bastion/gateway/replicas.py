"""What lets the gateway run as several replicas behind a load balancer, with nothing shared in
memory: session ids of HTTP upstreams that any replica can check, and the replica id at the
front of stdio session ids.

**HTTP upstreams.** The gateway never hands a client the upstream's ``Mcp-Session-Id``. It
hands out a sealed id, ``b1.<upstream id>.<mac>`` (base64url), where the MAC is HMAC-SHA256 over
the upstream's name, the caller who started the session (``sub`` and ``client_id``) and the
upstream's id, under a key every replica has (:func:`session_key`). On each request the replica
that receives it recomputes the MAC for the caller making the request: another caller's id, one
sealed for another upstream, or a forged, altered or cut one, is 404 -32001 like an unknown
session, and never reaches the upstream, which sees only its own id (MCP security best
practices, "Session Hijacking"; checklist R10). A database table would do the same at the cost of
a write per session and a read per request, and a gateway that follows revocations over HTTP
has no database.

**stdio upstreams.** A session is a process of one replica, so its id starts with that replica's
id (``<replica_id>.<random>``, :func:`replica_id`) and the load balancer routes on that prefix
(``deploy/haproxy/bastion.cfg``). When that replica is gone, the session is too: another replica
answers 404 -32001 and the client initializes a new session.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import socket

from bastion.config import Settings
from bastion.gateway.mcp_session import Owner
from bastion.logs import get_logger

log = get_logger(__name__)

VERSION = "b1"
_KEY_LABEL = b"bastion gateway session binding v1"
_REPLICA_CHARACTERS = re.compile(r"[^A-Za-z0-9_-]+")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _field(value: str) -> bytes:
    """One field of the MAC's input, length-prefixed so no two field lists collide."""
    data = value.encode("utf-8", "surrogatepass")
    return str(len(data)).encode() + b":" + data


class SessionSeal:
    """Seals an upstream's session ids to the upstream and the caller, and opens them again."""

    def __init__(self, key: bytes, upstream: str) -> None:
        if len(key) < 32:
            raise ValueError("the session key must have at least 32 bytes")
        self._key = key
        self._upstream = upstream
        # A session's every request seals or opens the same id for the same caller: the answers
        # are kept (only opens that succeeded, keyed by the exact sealed id and its owner).
        self._sealed: dict[tuple[str, Owner], str] = {}
        self._opened: dict[tuple[str, Owner], str] = {}

    def __repr__(self) -> str:
        return f"SessionSeal(upstream={self._upstream!r})"

    def _mac(self, session_id: str, owner: Owner) -> bytes:
        sub, client_id = owner if owner is not None else ("", None)
        parts = [VERSION, self._upstream, "caller" if owner else "none", sub, client_id or ""]
        message = b"".join(_field(p) for p in [*parts, session_id])
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def seal(self, session_id: str, owner: Owner) -> str:
        """The id the client gets for the upstream's ``session_id``, started by ``owner``."""
        key = (session_id, owner)
        sealed = self._sealed.get(key)
        if sealed is None:
            raw = session_id.encode("utf-8", "surrogatepass")
            sealed = f"{VERSION}.{_b64(raw)}.{_b64(self._mac(session_id, owner))}"
            _keep(self._sealed, key, sealed)
        return sealed

    def open(self, sealed: str, owner: Owner) -> str | None:
        """The upstream's session id if ``sealed`` was sealed by this upstream for ``owner``;
        None for anything else (another caller's, another upstream's, forged or damaged)."""
        opened = self._opened.get((sealed, owner))
        if opened is not None:
            return opened
        version, _, rest = sealed.partition(".")
        encoded, _, mac = rest.partition(".")
        if version != VERSION:
            return None
        try:
            session_id = _unb64(encoded).decode("utf-8", "surrogatepass")
            given = _unb64(mac)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(given, self._mac(session_id, owner)):
            return None
        _keep(self._opened, (sealed, owner), session_id)
        return session_id


# Sessions whose sealed and opened ids are kept per upstream; beyond, both start again empty.
_KEPT = 4096


def _keep(kept: dict[tuple[str, Owner], str], key: tuple[str, Owner], value: str) -> None:
    if len(kept) >= _KEPT:
        kept.clear()
    kept[key] = value


def session_key(settings: Settings) -> bytes:
    """The key sealing HTTP session ids: from ``gateway.session_secret``, else derived from
    ``secret_key`` or an existing ``<data_dir>/secret.key``; else one of this process only (a
    warning says that other replicas then answer 404 to its sessions)."""
    configured = settings.gateway.session_secret or settings.secret_key
    path = settings.data_dir / "secret.key"
    if configured is not None:
        secret = configured.get_secret_value()
    else:
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            log.warning(
                "gateway: no gateway.session_secret or secret_key, and %s cannot be read (%s); "
                "HTTP upstream sessions are sealed with a key of this process only, so another "
                "gateway process answers 404 to them. With several gateway processes set "
                "gateway.session_secret to the same value on each",
                path,
                exc.strerror or exc,
            )
            return secrets.token_bytes(32)
    return hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest()


def replica_id(settings: Settings) -> str:
    """``gateway.replica_id``, else the host name and ``gateway.port`` (``gw-host-8001``), in
    the characters a replica id may have."""
    if settings.gateway.replica_id:
        return settings.gateway.replica_id
    host = _REPLICA_CHARACTERS.sub("-", socket.gethostname().split(".")[0]).strip("-_")
    return f"{host[:50] or 'gateway'}-{settings.gateway.port}"


__all__ = ["VERSION", "SessionSeal", "replica_id", "session_key"]
