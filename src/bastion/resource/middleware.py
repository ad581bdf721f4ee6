"""ASGI middleware that makes an app an OAuth 2.1 resource server for MCP.

What it does, in order, for a request under the protected path(s) (MCP authorization, "Access
Token Usage" and "Error Handling"; checklist ids in brackets):

1. ``Origin`` not allowed -> 403 (streamable HTTP transport, DNS rebinding) [R11].
2. A token in the query string (``access_token``, RFC 6750 §2.3) or a form body (RFC 6750
   §2.2), a repeated or malformed ``Authorization`` header -> 400 ``invalid_request`` (MCP:
   tokens only in the Authorization header) [R06].
3. No token -> 401 with ``WWW-Authenticate: Bearer resource_metadata="…", scope="…", DPoP
   algs="…", resource_metadata="…", scope="…"`` (RFC 9728 §5.1, RFC 6750 §3, RFC 9449 §7.1,
   §7.2; the Bearer challenge is left out when the resource requires DPoP) [R02, R03, X05].
4. Token refused by the verifier (expired, wrong audience, bad signature…) -> 401
   ``error="invalid_token"`` with ``error_description`` [R04, R06], in the scheme the token was
   sent with. With ``Authorization: DPoP`` (RFC 9449 §7.1) the DPoP proof is checked first (a
   missing or bad one: ``DPoP error="invalid_dpop_proof"``; a missing or stale nonce when the
   resource demands them: ``DPoP error="use_dpop_nonce"`` and a ``DPoP-Nonce`` header, §9),
   then the token, then that the token is bound to the proof's key (``cnf.jkt``; otherwise
   ``DPoP error="invalid_token"``), then that the proof was not used before (§11.1). A
   DPoP-bound token sent as ``Bearer`` is 401 ``DPoP error="invalid_token"`` (§7.2) [X03, X04].
5. POST bodies (JSON) are read, bounded by ``max_body_bytes`` (413 beyond), parsed as a JSON-RPC
   message or batch; the scopes their methods and tools need come from the :class:`ScopePolicy`.
   Missing scopes -> 403 ``error="insufficient_scope"`` naming every scope the operation needs
   (RFC 6750 §3.1, MCP "Runtime Insufficient Scope Errors") [R07].
6. A POST, PUT or PATCH body whose ``Content-Type`` is not JSON (``application/json`` or
   ``application/*+json``; none at all counts as not JSON) -> 415 ``invalid_request``: the policy
   reads JSON only, so nothing else may reach the app.
7. Otherwise the app runs, with the body replayed unchanged and the :class:`Principal` in
   ``scope["state"]["principal"]`` (``request.state.principal`` in Starlette) and
   ``scope["bastion.principal"]``; the JSON-RPC calls seen are in ``scope["bastion.calls"]``,
   and the body as read, with its JSON-RPC messages, is :func:`bastion.edge.body.body_of`.

It also serves the Protected Resource Metadata document (RFC 9728 §3) at the path-inserted
well-known URL of the resource, and at the root well-known URL when the resource has no path
[R01, R02]. It is a plain ASGI class (not Starlette's ``BaseHTTPMiddleware``) so streaming
responses and ``http.disconnect`` pass through untouched. The token is never logged.

Put a CORS middleware, if any, outside this one: browsers send preflights without credentials.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from urllib.parse import parse_qsl, quote, urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion import safe_json
from bastion.edge.asgi import ClientGone, media_type, send_bytes, send_json
from bastion.edge.body import BodyTooLarge, RequestBody, read_body, replay
from bastion.edge.jsonrpc import RpcCall
from bastion.logs import get_logger
from bastion.oauth.dpop import DPoPError
from bastion.oauth.errors import InvalidToken, OAuthError, clean_description
from bastion.oauth.protected_resource import build_metadata, check_resource, metadata_url
from bastion.oauth.redirect_uri import is_loopback_host
from bastion.oauth.www_authenticate import build_bearer_challenge, build_dpop_challenge
from bastion.ops import metrics
from bastion.resource.dpop import ResourceDPoP
from bastion.resource.policy import ScopePolicy
from bastion.resource.principal import Principal, attach_principal
from bastion.resource.verifier import TokenVerifier

log = get_logger(__name__)

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN_CHARS = (string.ascii_letters + string.digits + "-._~+/").encode()
_HEADER_LIST = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~, ]*")
_DEFAULT_PORTS = {"http": 80, "https": 443}
WEBSOCKET_POLICY_VIOLATION = 1008
# The body's error code for a request that carried no token (its challenge has no error code).
UNAUTHORIZED = "unauthorized"
# Where an accepted DPoP proof is put in the ASGI scope (for the app, audit and the nonce).
_DPOP_KEY = "bastion.dpop"
# Methods whose body the app may act on: bodies of these must be JSON (the policy reads JSON).
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class _Refusal(Exception):
    """An answer the middleware gives instead of calling the app."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str,
        *,
        challenge: bool = True,
        scope: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        dpop: bool = False,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        # RFC 6749 §5.2 characters only: descriptions quote what the client sent.
        self.description = clean_description(description)
        self.challenge = challenge
        self.scope = scope
        self.headers = headers
        # The challenge is in the DPoP scheme (the request used it, or the error is about it).
        self.dpop = dpop


def _origin(value: str) -> str | None:
    """An origin (RFC 6454 §6.1) normalised: lowercase scheme and host, default port dropped."""
    if value == "null":
        return "null"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("http", "https") or not host or parts.path not in ("", "/"):
        return None
    host = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{host}"


def _normalize_path(path: str) -> str:
    """RFC 3986 §5.2.4 dot-segment removal plus empty-segment collapsing, for matching only."""
    out: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    return "/" + "/".join(out)


class ResourceServerMiddleware:
    """Protect ``app`` as the OAuth resource ``resource`` (see the module docstring).

    ``resource`` is the canonical URI of the server (what clients send as the RFC 8707
    ``resource``); ``authorization_servers`` the issuers listed in the metadata (at least one);
    ``scopes_supported`` the scopes advertised (never ``offline_access``); ``policy`` the scopes
    each operation needs (default: none beyond a valid token); ``allowed_origins`` the browser
    origins accepted (default: the resource's own origin, plus any loopback origin when the
    resource is on loopback; ``"*"`` accepts any); ``protect_paths`` the path prefixes that need
    a token (default: the resource's path and everything below it); ``realm`` the RFC 6750 §3
    ``realm`` of every challenge (e.g. "MCP Registry", as the registry authorization document
    shows; default: none); ``dpop`` how DPoP-bound tokens are checked (RFC 9449 §7; default:
    :class:`~bastion.resource.dpop.ResourceDPoP` with its defaults: accepted beside Bearer
    tokens, proofs remembered in this process, no nonces); ``public_url`` the URL under which
    clients address this app's paths, against which a DPoP proof's ``htu`` is checked (default:
    the origin of ``resource``; a gateway behind a proxy that strips a path prefix gives its
    public URL with that prefix). The Host header is never trusted for it.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        resource: str,
        verifier: TokenVerifier,
        authorization_servers: Sequence[str],
        scopes_supported: Sequence[str] = (),
        resource_name: str | None = None,
        policy: ScopePolicy | None = None,
        allowed_origins: Sequence[str] | None = None,
        max_body_bytes: int = 4 * 1024 * 1024,
        protect_paths: Sequence[str] | None = None,
        realm: str | None = None,
        dpop: ResourceDPoP | None = None,
        public_url: str | None = None,
    ) -> None:
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        self.app = app
        self.resource = check_resource(resource)
        self.verifier = verifier
        self.policy = policy or ScopePolicy()
        self.max_body_bytes = max_body_bytes
        self.realm = realm
        self.dpop = dpop if dpop is not None else ResourceDPoP()
        document = build_metadata(
            resource=self.resource,
            authorization_servers=authorization_servers,
            scopes_supported=scopes_supported,
            resource_name=resource_name,
            dpop_signing_alg_values_supported=self.dpop.algorithms,
            dpop_bound_access_tokens_required=self.dpop.required,
        )
        self.metadata = document.to_json()
        self._metadata_body = json.dumps(self.metadata).encode("utf-8")
        self.metadata_url = metadata_url(self.resource)
        self.metadata_path = urlsplit(self.metadata_url).path
        parts = urlsplit(self.resource)
        public = urlsplit(public_url) if public_url else parts._replace(path="")
        if public.scheme not in ("http", "https") or not public.netloc or public.query:
            raise ValueError(f"public_url must be an absolute http(s) URL; got {public_url!r}")
        self._public_base = f"{public.scheme}://{public.netloc}{public.path.rstrip('/')}"
        prefixes = [parts.path] if protect_paths is None else list(protect_paths)
        for prefix in prefixes:
            if prefix and not prefix.startswith("/"):
                raise ValueError(f"protect_paths entries must start with '/'; got {prefix!r}")
        self.protect_paths = tuple(p.rstrip("/") for p in prefixes)
        self._exact_paths = frozenset(self.protect_paths)
        # What a 401 suggests (RFC 6750 §3, MCP "Scope Selection Strategy"): what every request
        # needs, else the advertised scopes.
        base = self.policy.required(None, None) or frozenset(document.scopes_supported or ())
        self._plain_scopes = self.policy.required(None, None)
        self._challenge_scope = " ".join(sorted(base)) or None
        own = _origin(f"{parts.scheme}://{parts.netloc}")
        self._any_origin = False
        self._loopback_origins = False
        if allowed_origins is None:
            self._origins = {own} if own else set()
            self._loopback_origins = is_loopback_host(parts.hostname)
        else:
            self._any_origin = "*" in allowed_origins
            normal = {_origin(o) for o in allowed_origins if o != "*"}
            if None in normal:
                bad = [o for o in allowed_origins if o != "*" and _origin(o) is None]
                raise ValueError(f"allowed_origins has values that are not origins: {bad!r}")
            self._origins = {o for o in normal if o}

    def __repr__(self) -> str:
        return f"ResourceServerMiddleware(resource={self.resource!r}, verifier={self.verifier!r})"

    # -- dispatch -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if kind == "http" and path == self.metadata_path:
            await self._serve_metadata(scope, send)
            return
        if not self._protected(path):
            await self.app(scope, receive, send)
            return
        if kind == "websocket":
            await self._websocket(scope, receive, send)
            return
        try:
            receive = await self._admit(scope, receive)
        except _Refusal as refusal:
            await self._refuse(send, refusal)
            return
        except ClientGone:
            return
        if self.dpop.nonces is not None and _DPOP_KEY in scope:
            send = self._with_nonce(send)
        await self.app(scope, receive, send)

    def _with_nonce(self, send: Send) -> Send:
        """``send`` adding the current ``DPoP-Nonce`` to the response (RFC 9449 §8.2, §9), so
        the client's next proof carries a fresh nonce without a refused request first."""

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                nonce = self.dpop.nonce() or ""
                headers = [*message.get("headers", []), (b"dpop-nonce", nonce.encode())]
                message = {**message, "headers": headers}
            await send(message)

        return sending

    def _protected(self, path: str) -> bool:
        if path in self._exact_paths:
            return True
        # A path without empty or dot segments is its own normal form.
        plain = path.startswith("/") and "//" not in path and "/." not in path
        candidates = {path} if plain and not path.endswith("/") else {path, _normalize_path(path)}
        for prefix in self.protect_paths:
            if not prefix:
                return True
            for candidate in candidates:
                if candidate == prefix or candidate.startswith(prefix + "/"):
                    return True
        return False

    async def _admit(self, scope: Scope, receive: Receive) -> Receive:
        """Check the request; return the ``receive`` the app must use, or raise _Refusal."""
        origins, authorizations, content_type = _scan(scope["headers"])
        if origins:
            self._check_origin(origins)
        self._check_query(scope)
        credentials = self._credentials(authorizations)
        body: RequestBody | None = None
        has_body = scope["method"] in BODY_METHODS
        media = media_type(content_type) if has_body else ""  # read below only with a body
        if has_body and media == "application/x-www-form-urlencoded":
            body = await self._read_body(scope, receive)
            if any(k == "access_token" for k, _ in parse_qsl(body.raw.decode("latin-1"), True)):
                raise _Refusal(
                    400,
                    "invalid_request",
                    "access tokens go in the Authorization header, never in a form body (MCP)",
                )
        principal = await self._authenticate(scope, credentials)
        dpop = credentials is not None and credentials[0] == "dpop"
        # Recorded before the scope check, so that an audit of a 403 names who was refused.
        attach_principal(scope, principal)
        calls: tuple[RpcCall, ...] = ()
        if scope["method"] == "POST" and body is None and _json_like(content_type):
            body = await self._read_body(scope, receive)
            if body.calls is None:
                raise _Refusal(
                    400,
                    "invalid_request",
                    "the request body is not valid JSON: send UTF-8 JSON without repeated "
                    f"members, nested at most {safe_json.MAX_DEPTH} levels",
                )
            calls = body.calls
        scope["bastion.calls"] = calls
        if self.policy.uses_groups:
            self._check_groups(principal, calls)
        required = self._required(calls)
        missing = self.policy.missing(principal.scopes, required) if required else required
        if missing:
            raise _Refusal(
                403,
                "insufficient_scope",
                f"this operation needs scope {' '.join(sorted(required))}; the token lacks "
                f"{' '.join(sorted(missing))}",
                scope=" ".join(sorted(required)),
                dpop=dpop,
            )
        if has_body and not _is_json(media):
            # After the scope check, so that a client lacking scope learns that first.
            if body is None:
                body = await self._read_body(scope, receive)
            if body.raw:
                raise _not_json(content_type)
        return receive if body is None else replay(body, receive)

    def _check_groups(self, principal: Principal, calls: Sequence[RpcCall]) -> None:
        """403 without a challenge when the caller lacks a group an operation needs: no scope
        the client could ask for would change that."""
        asked: list[tuple[str | None, str | None]] = [(c.method, c.tool) for c in calls]
        for method, tool in asked or [(None, None)]:
            missing = self.policy.missing_group(principal.groups, method, tool)
            if missing is not None:
                about, needed = missing
                who, remedy = (
                    (f"the machine client {principal.subject}", "a machine client has no groups")
                    if principal.subject == principal.client_id
                    else (
                        f"the caller (subject {principal.subject})",
                        "an administrator can add it (bastion users groups)",
                    )
                )
                raise _Refusal(
                    403,
                    "access_denied",
                    f"{about} is only for members of group {' or '.join(sorted(needed))}, and "
                    f"{who} is not a member; {remedy}",
                    challenge=False,
                )

    def _required(self, calls: Sequence[RpcCall]) -> frozenset[str]:
        if not calls:
            return self.policy.required(None, None)
        needed: set[str] = set()
        for call in calls:
            needed |= self.policy.required(call.method, call.tool)
        return frozenset(needed)

    async def _authenticate(self, scope: Scope, credentials: tuple[str, str] | None) -> Principal:
        """The principal of the request's token, its DPoP proof checked when it is sent with the
        DPoP scheme (RFC 9449 §7.1); raise _Refusal otherwise."""
        if credentials is None or (credentials[0] == "bearer" and self.dpop.required):
            raise _Refusal(
                401,
                UNAUTHORIZED,
                "this resource needs a DPoP-bound access token sent with the DPoP scheme and a "
                "DPoP proof (RFC 9449); see resource_metadata"
                if self.dpop.required
                else "this resource needs an access token; see resource_metadata",
                scope=self._challenge_scope,
            )
        scheme, token = credentials
        if scheme == "bearer":
            principal = await self._verify(token, dpop=False)
            if principal.jkt is not None:
                # RFC 9449 §7.2: a DPoP-bound token is refused as a bearer token.
                raise _Refusal(
                    401,
                    "invalid_token",
                    "the access token is DPoP-bound: send it as 'Authorization: DPoP <token>' "
                    "with a DPoP proof (RFC 9449 section 7.2)",
                    scope=self._challenge_scope,
                    dpop=True,
                )
            return principal
        try:
            proof = self.dpop.proof(
                Headers(scope=scope).getlist("dpop"),
                method="GET" if scope["type"] == "websocket" else scope["method"],
                uri=self._request_uri(scope),
                token=token,
            )
        except DPoPError as exc:
            raise self._dpop_refusal(exc) from None
        principal = await self._verify(token, dpop=True)
        try:
            await self.dpop.accept(proof, principal)
        except DPoPError as exc:
            raise self._dpop_refusal(exc) from None
        except InvalidToken as exc:
            log.info("refused a DPoP token: %s", exc.description)
            raise _Refusal(
                401, "invalid_token", exc.description, scope=self._challenge_scope, dpop=True
            ) from None
        scope[_DPOP_KEY] = proof
        return principal

    def _dpop_refusal(self, exc: DPoPError) -> _Refusal:
        log.info("refused a DPoP proof: %s", exc)
        return _Refusal(401, exc.code, str(exc), scope=self._challenge_scope, dpop=True)

    def _request_uri(self, scope: Scope) -> str:
        """The request's URI as clients address it (RFC 9449 §4.3 point 9): ``public_url`` and
        the path as sent (``raw_path``, percent-encodings kept), never the Host header."""
        raw: bytes | None = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else quote(scope["path"])
        return self._public_base + path.partition("?")[0]

    async def _verify(self, token: str, *, dpop: bool) -> Principal:
        try:
            return await self.verifier.verify(token)
        except InvalidToken as exc:
            log.info("refused a bearer token: %s", exc.description)
            raise _Refusal(
                401,
                "invalid_token",
                exc.description or "invalid token",
                scope=self._challenge_scope,
                dpop=dpop,
            ) from None
        except OAuthError as exc:
            # TemporarilyUnavailable (AS unreachable) and the like: not the token's fault.
            log.warning("could not verify a bearer token: %s (%s)", exc.description, exc.detail)
            extra = [("Retry-After", "5")] if exc.status_code == 503 else []
            raise _Refusal(
                exc.status_code,
                exc.error,
                exc.description,
                challenge=exc.status_code in (400, 401, 403),
                headers=extra,
            ) from None

    async def plain_read(self, scope: Scope) -> Principal | None:
        """The principal of a request the full check would let through unchanged, attached to
        ``scope`` as :meth:`__call__` attaches it: a GET under a protected path with exactly
        one well-formed ``Authorization: Bearer`` header, no ``Origin``, ``DPoP`` or
        ``access_token`` in the query, a token the verifier accepts that is not DPoP-bound,
        every scope a request without a body needs, and no group rules. None for anything
        else: such a request goes through :meth:`__call__`, which answers it (and refuses it
        with its exact challenge), so nothing is refused here."""
        if (
            scope["method"] != "GET"
            or self.dpop.required
            or self.policy.uses_groups
            or not self._protected(scope["path"])
            or b"access_token" in scope.get("query_string", b"")
        ):
            return None
        authorization: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is not None:
                    return None
                authorization = value
            elif name == b"origin" or name == b"dpop":
                return None
        if authorization is None or authorization[:7].lower() != b"bearer ":
            return None
        token = authorization[7:].decode("latin-1").strip(" ")
        if not _is_b64token(token):
            return None
        try:
            principal = await self.verifier.verify(token)
        except OAuthError:
            return None
        if principal.jkt is not None or self.policy.missing(principal.scopes, self._plain_scopes):
            return None
        attach_principal(scope, principal)
        scope["bastion.calls"] = ()
        return principal

    # -- request checks -------------------------------------------------------------------------

    def _check_origin(self, origins: list[str]) -> None:
        if not origins:
            return
        if len(origins) > 1:
            raise _Refusal(403, "invalid_origin", "more than one Origin header", challenge=False)
        if self._any_origin:
            return
        value = origins[0]
        normal = _origin(value)
        if normal is not None and normal in self._origins:
            return
        if normal is not None and self._loopback_origins:
            host = urlsplit(normal).hostname
            if is_loopback_host(host):
                return
        raise _Refusal(
            403,
            "invalid_origin",
            f"Origin {value[:100]!r} is not allowed for this resource (MCP streamable HTTP "
            "transport: servers must validate Origin)",
            challenge=False,
        )

    def _check_query(self, scope: Scope) -> None:
        query: bytes = scope.get("query_string", b"")
        if b"access_token" not in query:
            return
        for key, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if key == "access_token":
                raise _Refusal(
                    400,
                    "invalid_request",
                    "access tokens must not be sent in the query string (MCP, RFC 6750 "
                    "section 2.3); use the Authorization header",
                )

    def _credentials(self, values: list[str]) -> tuple[str, str] | None:
        """The scheme (``bearer`` or ``dpop``) and token of the Authorization header (all its
        ``values``), or None when there is none or its scheme is another."""
        if not values:
            return None
        if len(values) > 1:
            raise _Refusal(400, "invalid_request", "more than one Authorization header")
        scheme, _, rest = values[0].strip(" \t").partition(" ")
        scheme = scheme.lower()
        if scheme not in ("bearer", "dpop"):
            # RFC 6750 §3.1: an unsupported method gets a challenge without an error code.
            return None
        token = rest.strip(" ")
        if not _is_b64token(token):
            shown = "Bearer" if scheme == "bearer" else "DPoP"
            raise _Refusal(
                400,
                "invalid_request",
                f"malformed Authorization header: expected '{shown} <token>' (RFC 6750 section "
                "2.1, RFC 9449 section 7.1)",
                dpop=scheme == "dpop",
            )
        return scheme, token

    async def _read_body(self, scope: Scope, receive: Receive) -> RequestBody:
        try:
            return await read_body(scope, receive, self.max_body_bytes)
        except BodyTooLarge as exc:
            raise _Refusal(413, "invalid_request", str(exc), challenge=False) from None

    # -- answers --------------------------------------------------------------------------------

    def _challenge(self, refusal: _Refusal) -> str:
        # RFC 6750 §3.1: a request without authentication gets a challenge without error code:
        # one per scheme the resource takes (RFC 9449 §7.2), Bearer not when DPoP is required.
        bare = refusal.error == UNAUTHORIZED
        dpop = build_dpop_challenge(
            algs=self.dpop.algorithms,
            resource_metadata=self.metadata_url,
            scope=refusal.scope,
            error=None if bare else refusal.error,
            error_description=None if bare else refusal.description,
            realm=self.realm,
        )
        if refusal.dpop or (bare and self.dpop.required):
            return dpop
        bearer = build_bearer_challenge(
            resource_metadata=self.metadata_url,
            scope=refusal.scope,
            error=None if bare else refusal.error,
            error_description=None if bare else refusal.description,
            realm=self.realm,
        )
        return f"{bearer}, {dpop}" if bare else bearer

    async def _refuse(self, send: Send, refusal: _Refusal) -> None:
        metrics.oauth_error(self.resource, refusal.error)
        body = {"error": refusal.error, "error_description": refusal.description}
        headers = [("Cache-Control", "no-store"), *refusal.headers]
        if refusal.challenge:
            headers.append(("WWW-Authenticate", self._challenge(refusal)))
            nonce = self.dpop.nonce()
            if nonce is not None and (refusal.dpop or refusal.error == UNAUTHORIZED):
                # RFC 9449 §9: with use_dpop_nonce (and with any DPoP challenge, to save the
                # client a refused request), the nonce its next proof must carry.
                headers.append(("DPoP-Nonce", nonce))
        await send_json(send, refusal.status, body, headers)

    async def _serve_metadata(self, scope: Scope, send: Send) -> None:
        """GET the metadata document (RFC 9728 §3.2), readable from any origin."""
        method = scope["method"]
        cors = [("Access-Control-Allow-Origin", "*")]
        if method == "OPTIONS":
            requested = Headers(scope=scope).get("access-control-request-headers") or ""
            allow = requested if _HEADER_LIST.fullmatch(requested) and requested else "*"
            await send_bytes(
                send,
                204,
                b"",
                [
                    *cors,
                    ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
                    ("Access-Control-Allow-Headers", allow),
                    ("Access-Control-Max-Age", "86400"),
                ],
            )
            return
        if method not in ("GET", "HEAD"):
            await send_json(
                send,
                405,
                {"error": "invalid_request", "error_description": "use GET"},
                [*cors, ("Allow", "GET, HEAD, OPTIONS")],
            )
            return
        headers = [
            *cors,
            ("Content-Type", "application/json"),
            ("Cache-Control", "public, max-age=300"),
        ]
        body = self._metadata_body
        await send_bytes(send, 200, b"" if method == "HEAD" else body, headers, length=len(body))

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """WebSocket handshakes under a protected path need a valid token too (and an allowed
        Origin); without one the handshake is refused (close code 1008 before accept)."""
        origins, authorizations, _ = _scan(scope["headers"])
        try:
            self._check_origin(origins)
            self._check_query(scope)
            principal = await self._authenticate(scope, self._credentials(authorizations))
            required = self.policy.required(None, None)
            if self.policy.missing(principal.scopes, required):
                raise _Refusal(403, "insufficient_scope", "missing scope")
            if self.policy.missing_group(principal.groups, None, None):
                raise _Refusal(403, "access_denied", "missing group")
        except _Refusal as refusal:
            log.info("refused a websocket handshake: %s", refusal.description)
            await send({"type": "websocket.close", "code": WEBSOCKET_POLICY_VIOLATION})
            return
        attach_principal(scope, principal)
        await self.app(scope, receive, send)


def _is_json(media: str) -> bool:
    """Whether a media type (lowercase, without parameters) is JSON: ``application/json`` or a
    ``+json`` structured syntax suffix (RFC 6839 §3.1)."""
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def _not_json(content_type: str | None) -> _Refusal:
    sent = f"Content-Type {content_type[:100]!r}" if content_type else "no Content-Type"
    return _Refusal(
        415,
        "invalid_request",
        f"the request body must be JSON; it was sent with {sent}. Send it with "
        "'Content-Type: application/json'",
        challenge=False,
    )


def _json_like(value: str | None) -> bool:
    """Whether the body may be JSON to the app: no content type (``value``), or one that
    mentions json anywhere (servers differ in how they read ``Content-Type``; err on reading
    the body)."""
    return value is None or value.strip() == "" or "json" in value.lower()


def _scan(raw: list[tuple[bytes, bytes]]) -> tuple[list[str], list[str], str | None]:
    """In one pass over the request's headers (names are lowercase in ASGI): every ``Origin``
    and every ``Authorization`` value, and the first ``Content-Type`` (as Starlette's
    ``Headers.getlist`` and ``Headers.get`` read them)."""
    origins: list[str] = []
    authorizations: list[str] = []
    content_type: str | None = None
    for name, value in raw:
        if name == b"authorization":
            authorizations.append(value.decode("latin-1"))
        elif name == b"origin":
            origins.append(value.decode("latin-1"))
        elif name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
    return origins, authorizations, content_type


def _is_b64token(token: str) -> bool:
    """RFC 6750 §2.1 ``b64token``: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" )
    *"=", checked with a byte table rather than the regular expression engine."""
    body = token.rstrip("=")
    return bool(body) and body.isascii() and not body.encode().translate(None, _B64TOKEN_CHARS)


__all__ = ["WEBSOCKET_POLICY_VIOLATION", "ResourceServerMiddleware"]
