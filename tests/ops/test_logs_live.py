"""JSON logs of real ``bastion serve --workers 2`` and ``bastion gateway`` processes, with a
real upstream on loopback that records what reaches it.

First what must not happen: a line that is not JSON, a token, code, password, client secret,
state or PKCE verifier in any line, a malformed X-Request-Id logged, echoed or sent upstream,
a subject in the clear when logging.user_ids says hash or omit. Then what must: the client's
well-formed X-Request-Id in the answer, in the access and audit lines and upstream.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.config import Settings
from bastion.ops.user_ids import UserIdPolicy
from bastion.store.database import Database
from tests.gateway.upstream import RecordingUpstream
from tests.revocation.scenarios import gateway_settings
from tests.scaleout.processes import Server, free_ports, running
from tests.support.clients import machine_client
from tests.support.flow import PASSWORD, add_user, authorize, exchange, register
from tests.support.live import serve

SECRET_KEY = "json-logs-test-secret-key-0123456789abcdef"
USERNAME = "logged-user-7"
STATE = "state-that-must-not-be-logged-42"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
ACCEPT = "application/json, text/event-stream"
MALFORMED = 'bad "id" <with> spaces'


def _settings(
    tmp: Path, issuer: str, gateway: str, upstream: str, gateway_port: int
) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "data_dir": str(tmp / "data"),
        "secret_key": SECRET_KEY,
        "logging": {"format": "json", "user_ids": "hash"},
        "gateway": {**gateway_settings(gateway, upstream), "port": gateway_port},
    }


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The AS (two workers) and two gateways, user ids hashed in one and omitted in the other;
    the upstream's port is chosen here and served by each test."""
    as_port, hashed_port, omitted_port, upstream_port = free_ports(4)
    issuer = f"http://127.0.0.1:{as_port}"
    upstream = f"http://127.0.0.1:{upstream_port}/mcp"
    tmp = tmp_path_factory.mktemp("json-logs")
    hashed = _settings(tmp, issuer, f"http://127.0.0.1:{hashed_port}", upstream, hashed_port)
    omitted = _settings(tmp, issuer, f"http://127.0.0.1:{omitted_port}", upstream, omitted_port)
    # The format from the command line (--log-format), the rest from the settings.
    omitted["logging"] = {"user_ids": "omit"}
    # One AS (and database) for both gateways: it issues tokens for either.
    both = [f"http://127.0.0.1:{port}/mcp/notes" for port in (hashed_port, omitted_port)]
    for settings in (hashed, omitted):
        settings["resources"] = [
            {"uri": uri, "name": f"notes-{n}", "scopes": ["mcp:tools"]}
            for n, uri in enumerate(both)
        ]
    ready = "/.well-known/oauth-protected-resource/mcp/notes"
    # Two workers that find no database would both create it; a deployment migrates first.
    (tmp / "data").mkdir(mode=0o700)
    asyncio.run(_migrate(Settings(**hashed)))
    with (
        running(
            hashed,
            ["serve", "--port", str(as_port), "--workers", "2"],
            url=issuer,
            ready_path="/.well-known/oauth-authorization-server",
        ) as auth,
        running(hashed, ["gateway"], url=hashed["gateway"]["public_url"], ready_path=ready) as gw,
        running(
            omitted,
            ["gateway", "--log-format", "json"],
            url=omitted["gateway"]["public_url"],
            ready_path=ready,
        ) as gw_omit,
    ):
        yield {
            "settings": Settings(**hashed),
            "upstream_port": upstream_port,
            "auth": auth,
            "hash": gw,
            "omit": gw_omit,
        }


async def _migrate(settings: Settings) -> None:
    db = Database(settings.effective_database_url)
    try:
        await db.upgrade()
    finally:
        await db.dispose()


def _json_lines(server: Server) -> list[dict[str, Any]]:
    """Every line the process wrote, each of which must be one JSON object."""
    documents = []
    for line in server.output().splitlines():
        document = json.loads(line)
        assert isinstance(document, dict), line
        assert {"time", "level", "logger", "message"} <= set(document), line
        documents.append(document)
    return documents


def _wait_for(server: Server, found: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first line for which ``found`` holds, polling up to 5 s (a line is written just
    after the answer is sent)."""
    for _ in range(250):
        for document in _json_lines(server):
            if found(document):
                return document
        time.sleep(0.02)
    raise AssertionError(f"no such line in:\n{server.output()}")


def _access(request_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda d: d["logger"] == "bastion.access" and d.get("request_id") == request_id


def _subject_of(access_token: str) -> str:
    payload = access_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    subject: str = claims["sub"]
    return subject


async def _person_tokens(
    deployment: dict[str, Any], resource: str, username: str = USERNAME
) -> dict[str, Any]:
    """Sign in as ``username`` (a new user) through a public client (code flow with PKCE),
    refresh once, and ask /authorize again with the code and state in the query."""
    issuer = deployment["auth"].url
    await add_user(deployment["settings"], username)
    async with httpx.AsyncClient(base_url=issuer, trust_env=False) as http:
        client_id = (await register(http))["client_id"]
        done = await authorize(
            http, client_id, username=username, resource=resource, scope="mcp:tools", state=STATE
        )
        first = await exchange(http, client_id, done)
        assert first.status_code == 200, first.text
        refreshed = await http.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": first.json()["refresh_token"],
                "client_id": client_id,
            },
        )
        assert refreshed.status_code == 200, refreshed.text
        await http.get(
            "/authorize",
            params={"client_id": client_id, "code": done.params["code"], "state": STATE},
            headers={"X-Request-Id": "as-trace-1"},
        )
    return {
        "client_id": client_id,
        "code": done.params["code"],
        "verifier": done.verifier,
        "tokens": [first.json(), refreshed.json()],
    }


async def test_json_logs_of_the_as_and_the_gateway(deployment: dict[str, Any]) -> None:
    settings: Settings = deployment["settings"]
    auth: Server = deployment["auth"]
    gateway: Server = deployment["hash"]
    resource = f"{gateway.url}/mcp/notes"
    recorder = RecordingUpstream()
    async with serve(recorder.app, port=deployment["upstream_port"]):
        person = await _person_tokens(deployment, resource)
        robot = await machine_client(
            settings, name="robot", resources=[resource], scope="mcp:tools"
        )
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            machine = await http.post(
                f"{auth.url}/token",
                data={"grant_type": "client_credentials", "resource": resource},
                auth=robot.auth,
            )
            assert machine.status_code == 200, machine.text
            access = person["tokens"][1]["access_token"]
            bearer = {"Authorization": f"Bearer {access}", "Accept": ACCEPT}
            good = await http.post(
                resource, json=INIT, headers={**bearer, "X-Request-Id": "gw-trace-1"}
            )
            good_upstream = [v for k, v in recorder.requests[-1]["headers"] if k == "x-request-id"]
            bad = await http.post(
                resource, json=INIT, headers={**bearer, "X-Request-Id": MALFORMED}
            )
            bad_upstream = [v for k, v in recorder.requests[-1]["headers"] if k == "x-request-id"]
    assert (good.status_code, bad.status_code) == (200, 200), (good.text, bad.text)

    # Who must not see it: nothing secret in any line of either process, every line JSON.
    fresh = bad.headers["x-request-id"]
    _wait_for(gateway, _access(fresh))
    _wait_for(auth, _access("as-trace-1"))
    output = auth.output() + gateway.output()
    secrets = [
        PASSWORD,
        STATE,
        person["code"],
        person["verifier"],
        robot.secret,
        machine.json()["access_token"],
        MALFORMED,
        USERNAME,
    ]
    for tokens in person["tokens"]:
        secrets += [tokens["access_token"], tokens["refresh_token"]]
    for secret in secrets:
        assert secret not in output, f"{secret!r} is in the log"
    subject = _subject_of(access)
    assert subject not in output
    assert _json_lines(auth) and _json_lines(gateway)

    # The malformed id was replaced everywhere.
    assert fresh != MALFORMED and len(fresh) == 22
    assert bad_upstream == [fresh]

    # The AS's access line: the route, never the query.
    as_line = _wait_for(auth, _access("as-trace-1"))
    assert (as_line["method"], as_line["route"], as_line["status"]) == ("GET", "/authorize", 302)

    # The gateway: the client's id answered, sent upstream, in the access and audit lines.
    assert good.headers["x-request-id"] == "gw-trace-1"
    assert good_upstream == ["gw-trace-1"]
    hashed = UserIdPolicy("hash", SECRET_KEY).render(subject)
    line = _wait_for(gateway, _access("gw-trace-1"))
    assert (line["route"], line["status"]) == ("/mcp/notes", 200)
    assert (line["client_id"], line["subject"]) == (person["client_id"], hashed)
    assert isinstance(line["latency_ms"], float)
    audit = _wait_for(
        gateway, lambda d: d["logger"] == "bastion.audit" and d.get("request_id") == "gw-trace-1"
    )
    assert json.loads(audit["message"])["request_id"] == "gw-trace-1"
    assert audit["subject"] == hashed


async def test_a_gateway_with_user_ids_omitted_logs_no_subject(deployment: dict[str, Any]) -> None:
    gateway: Server = deployment["omit"]
    resource = f"{gateway.url}/mcp/notes"
    recorder = RecordingUpstream()
    person = await _person_tokens(deployment, resource, "omitted-user-3")
    access = person["tokens"][0]["access_token"]
    async with (
        serve(recorder.app, port=deployment["upstream_port"]),
        httpx.AsyncClient(trust_env=False, timeout=10) as http,
    ):
        answer = await http.post(
            resource,
            json=INIT,
            headers={
                "Authorization": f"Bearer {access}",
                "Accept": ACCEPT,
                "X-Request-Id": "omit-trace-1",
            },
        )
    assert answer.status_code == 200, answer.text
    line = _wait_for(gateway, _access("omit-trace-1"))
    assert line["client_id"] == person["client_id"]
    assert "subject" not in line
    audit = _wait_for(
        gateway, lambda d: d["logger"] == "bastion.audit" and d.get("request_id") == "omit-trace-1"
    )
    assert "subject" not in audit
    assert _subject_of(access) not in gateway.output()
    assert "omitted-user-3" not in gateway.output()
