"""The MCP Python SDK's ``simple-auth`` example authorization server, when a checkout is given.

It is not on PyPI: ``python -m benchmarks --simple-auth PATH`` names a checkout (the python-sdk
repository, or its ``examples/servers/simple-auth`` directory). Nothing of it is vendored here:
this module imports ``mcp_simple_auth.auth_server`` from that path and serves its app under
uvicorn at warning, like every other server of the run (its own ``main`` logs every request at
info). Its grants: authorization_code with PKCE (tokens are opaque and kept in memory); it has
neither client_credentials nor refresh tokens.

``python -m benchmarks.simple_auth PORT`` is the server process (PYTHONPATH names the checkout).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from bastion.oauth import pkce
from benchmarks.servers import Process, started

REDIRECT_URI = "http://127.0.0.1:53682/callback"


def package_dir(checkout: Path) -> Path | None:
    """The directory holding ``mcp_simple_auth`` in a checkout, or None."""
    for candidate in (checkout, checkout / "examples" / "servers" / "simple-auth"):
        if (candidate / "mcp_simple_auth" / "auth_server.py").is_file():
            return candidate
    return None


def serve(
    checkout: Path, *, port: int, cpus: frozenset[int] | None
) -> contextlib.AbstractContextManager[Process]:
    """The example AS on ``port`` until the block ends."""
    where = package_dir(checkout)
    if where is None:
        raise FileNotFoundError(f"no mcp_simple_auth/auth_server.py under {checkout}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(where), *sys.path[1:]])}
    argv = [sys.executable, "-m", "benchmarks.simple_auth", str(port)]
    return started(
        "simple-auth",
        argv,
        port=port,
        env=env,
        ready_path="/.well-known/oauth-authorization-server",
        cpus=cpus,
    )


async def code_pool(base: str, count: int, verifier: str) -> tuple[str, list[str]]:
    """Register a public client (RFC 7591) and log in ``count`` times through the example's
    login form; return the client_id and the codes (each redeemable once with ``verifier``)."""
    async with httpx.AsyncClient(base_url=base, timeout=30, trust_env=False) as http:
        answer = await http.post(
            "/register",
            json={
                "redirect_uris": [REDIRECT_URI],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "scope": "user",
            },
        )
        answer.raise_for_status()
        client_id = str(answer.json()["client_id"])
        gate = asyncio.Semaphore(16)

        async def one() -> str:
            async with gate:
                state = secrets.token_urlsafe(12)
                start = await http.get(
                    "/authorize",
                    params={
                        "response_type": "code",
                        "client_id": client_id,
                        "redirect_uri": REDIRECT_URI,
                        "code_challenge": pkce.s256(verifier),
                        "code_challenge_method": "S256",
                        "state": state,
                        "scope": "user",
                    },
                )
                if start.status_code != 302:
                    raise RuntimeError(f"simple-auth /authorize: {start.status_code} {start.text}")
                login = await http.post(
                    "/login/callback",
                    data={"username": "demo_user", "password": "demo_password", "state": state},
                )
                location = login.headers.get("location", "")
                code = str(parse_qs(urlsplit(location).query).get("code", [""])[0])
                if login.status_code != 302 or not code:
                    raise RuntimeError(f"simple-auth login: {login.status_code} {login.text}")
                return code

        codes = await asyncio.gather(*(one() for _ in range(count)))
    return client_id, list(codes)


def main() -> None:
    """Serve the example's AS on 127.0.0.1:PORT at log level warning."""
    import uvicorn
    from mcp_simple_auth.auth_server import (  # type: ignore[import-not-found]
        AuthServerSettings,
        create_authorization_server,
    )
    from mcp_simple_auth.simple_auth_provider import (  # type: ignore[import-not-found]
        SimpleAuthSettings,
    )
    from pydantic import AnyHttpUrl

    port = int(sys.argv[1])
    url = f"http://127.0.0.1:{port}"
    settings = AuthServerSettings(
        host="127.0.0.1", port=port, server_url=AnyHttpUrl(url), auth_callback_path=f"{url}/login"
    )
    app = create_authorization_server(settings, SimpleAuthSettings())
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()

__all__ = ["code_pool", "package_dir", "serve"]
