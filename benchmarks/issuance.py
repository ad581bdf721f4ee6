"""Token issuance: bastion against node-oidc-provider (client_credentials, ES256 JWTs, one
process each, interleaved rounds) and against a bare POST endpoint (the same form read and a
small JSON answer, nothing else, under the same uvicorn settings), bastion's refresh_token and
authorization_code grants, and the MCP SDK's simple-auth example for the grant it has
(authorization_code).

With ``--clients N`` (e.g. 10000) bastion also issues client_credentials tokens to N
registered clients taking turns, next to the single client: the cost of many clients (client
cache, access rules) shows in their ratio.

The refresh_token grant is also measured with many other grants in the database (its scale
curve; a flat p50 is the goal): 10,000 by default; ``--grants`` names the sizes, e.g.
``10000,1000000`` (a million rows take about a minute to write on PostgreSQL)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import replace
from urllib.parse import urlencode

import httpx
import sqlalchemy as sa

from bastion.store.schema import refresh_tokens, token_families
from benchmarks import plan as planning
from benchmarks import simple_auth
from benchmarks.loadgen import Load, form_request
from benchmarks.node_provider import NodeProvider, node_binary, node_provider
from benchmarks.plan import Plan, Target
from benchmarks.report import Ratio, Report, Row, cpu_ratio
from benchmarks.servers import Process, free_port, uvicorn_app
from benchmarks.stack import REDIRECT_URI, SCOPE, Credentials, Stack

GROUP = "token issuance (POST /token, one server process)"
BASTION_CC = "bastion client_credentials"
NODE_CC = "node-oidc-provider client_credentials"
BARE_FORM = "bare POST endpoint (form in, small JSON out)"
BASTION_RT = "bastion refresh_token (rotation)"
BASTION_AC = "bastion authorization_code (PKCE, public client)"
SIMPLE_AC = "simple-auth example authorization_code (PKCE, public client)"
JWT_EXPECTED = b'"access_token"'
BATCH = 4  # clients registered at once (database connections in use)


def _header(token: str) -> dict[str, object]:
    segment = token.split(".")[0]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(segment + "=="))
    return decoded


def check_token(url: str, body: str, authorization: str | None) -> str:
    """One request before measuring: the answer must be a 200 with an access token; return a
    description of the token (header alg and typ, size)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if authorization:
        headers["Authorization"] = authorization
    answer = httpx.post(url, content=body, headers=headers, timeout=10, trust_env=False)
    if answer.status_code != 200:
        raise RuntimeError(f"{url}: {answer.status_code} {answer.text}")
    token = answer.json()["access_token"]
    if token.count(".") == 2:
        header = _header(token)
        return f"JWT {header.get('alg')} typ {header.get('typ')}, {len(token)} bytes"
    return f"opaque, {len(token)} bytes"


def client_credentials_load(
    plan: Plan,
    stack: Stack,
    port: int,
    basic: str | list[str],
    expect: bytes = JWT_EXPECTED,
    *,
    pid: int | None = None,
) -> Load:
    """POST /token with the client_credentials form, as one client (``basic``) or as several
    taking turns (a list of Basic credentials, one request each, sent round-robin); the CPU
    time of the server process ``pid`` (and its children) is measured with it."""
    body = stack.client_credentials_body()
    requests = [
        form_request("127.0.0.1", port, "/token", body, {"Authorization": b})
        for b in ([basic] if isinstance(basic, str) else basic)
    ]
    watch = () if pid is None else (pid,)
    return planning.load(plan, port, requests, expect_body=expect, watch=watch)


async def register_clients(stack: Stack, count: int) -> list[Credentials]:
    """``count`` machine clients made as ``bastion clients add`` makes them (each with its
    access rule for every resource), a few at a time through one database pool."""
    from bastion.authserver.admin import add_client

    settings = stack.model()
    db = stack.db()
    made: list[Credentials] = []

    async def one(index: int) -> Credentials:
        new = await add_client(
            settings,
            client_id=f"bench-many-{index:05d}",
            name=f"benchmark client {index}",
            redirect_uris=[],
            confidential=True,
            grant_types=["client_credentials"],
            resources=["*"],
            scope=SCOPE,
            db=db,
        )
        return Credentials(new.client.client_id, new.secret)

    try:
        for start in range(0, count, BATCH):
            made += await asyncio.gather(*(one(i) for i in range(start, min(count, start + BATCH))))
    finally:
        await db.dispose()
    return made


async def run(plan: Plan, stack: Stack, bastion: Process, report: Report) -> None:
    """Every issuance measurement; ``bastion`` is the AS (``bastion serve``, one process)."""
    await _client_credentials(plan, stack, bastion, report)
    report.notes.append(
        "issuance: node-oidc-provider runs with its in-memory adapter and the simple-auth example "
        "keeps codes and tokens in dicts; bastion commits codes and refresh tokens to the "
        f"database ({stack.database}) and stores nothing for client_credentials."
    )
    await _grants(plan, stack, bastion, report)


async def _client_credentials(plan: Plan, stack: Stack, bastion: Process, report: Report) -> None:
    """bastion's client_credentials (one client; N clients with --clients N), the bare POST
    endpoint and node-oidc-provider, interleaved."""
    service = stack.clients["service"]
    note = check_token(f"{bastion.url}/token", stack.client_credentials_body(), service.basic())

    async def bastion_cc() -> Load:
        return client_credentials_load(
            plan, stack, bastion.port, service.basic(), pid=bastion.process.pid
        )

    targets: list[Target] = [(BASTION_CC, bastion_cc)]
    rows = [Row(GROUP, BASTION_CC, "tokens/s", note=note)]
    count = plan.clients
    many_name = f"bastion client_credentials, {count:,} clients taking turns"
    if count:
        clients = [c.basic() for c in await register_clients(stack, count)]

        async def bastion_many() -> Load:
            return client_credentials_load(
                plan, stack, bastion.port, clients, pid=bastion.process.pid
            )

        targets.append((many_name, bastion_many))
        # A client's turn comes every count / rate seconds: beyond client_cache_ttl (5 s) below
        # count / 5 tokens/s, and then each request reads its client from the database.
        note = f"one request per client in turn; below {count // 5:,} tokens/s each is a cache miss"
        rows.append(Row(GROUP, many_name, "tokens/s", note=note))
    form_port = free_port()
    with uvicorn_app(
        "bare-form",
        "benchmarks.apps:bare_form",
        port=form_port,
        # bastion serve's uvicorn settings: no forwarded headers (nor Server header, access log).
        env={"UVICORN_PROXY_HEADERS": "false"},
        cpus=plan.server_cpus,
    ) as form:

        async def bare_form() -> Load:
            return client_credentials_load(
                plan, stack, form_port, service.basic(), b"grant_type", pid=form.process.pid
            )

        targets.append((BARE_FORM, bare_form))
        rows.append(Row(GROUP, BARE_FORM, "requests/s", note="benchmarks.apps:bare_form"))
        await _with_node(plan, stack, targets, rows, report)
    report.ratios += [
        Ratio("client_credentials: bastion / node-oidc-provider", BASTION_CC, NODE_CC, 1.5),
        Ratio("client_credentials: bastion / bare POST endpoint", BASTION_CC, BARE_FORM, 0.5),
    ]
    measured = {row.name: row for row in rows}
    for label, other, target in (
        ("node-oidc-provider", NODE_CC, 1.5),
        ("bare POST endpoint", BARE_FORM, 0.5),
    ):
        if measured.get(other) is not None and measured[other].rounds:
            report.ratios.append(
                cpu_ratio(
                    f"client_credentials: bastion / {label} (from server CPU per request)",
                    measured[BASTION_CC],
                    measured[other],
                    target,
                )
            )
    if count:
        report.ratios.append(
            Ratio(f"client_credentials: {count:,} clients / one client", many_name, BASTION_CC, 0.8)
        )


async def _with_node(
    plan: Plan, stack: Stack, targets: list[Target], rows: list[Row], report: Report
) -> None:
    """Measure ``targets`` interleaved, with node-oidc-provider's client_credentials when
    Node 22 is installed."""
    node = node_binary()
    if node is None:
        rows.append(
            Row(GROUP, NODE_CC, note="not measured: no Node 22 (run scripts/setup-node.sh)")
        )
        await _measure(plan, targets, rows, report)
        return
    with node_provider(node, resource=stack.resource, scope=SCOPE, cpus=plan.server_cpus) as op:
        basic = _basic(op)
        note = check_token(f"{op.issuer}/token", stack.client_credentials_body(), basic)

        async def node_cc() -> Load:
            return client_credentials_load(plan, stack, op.port, basic, pid=op.pid)

        # V8 optimises the provider's code as it runs: its rate climbs for some seconds. A
        # warm-up load first, not measured, so that every round meets it at full speed.
        warm = replace(await node_cc(), warmup=0.0, duration=node_warmup(plan))
        await planning.measure(warm)
        targets.append((NODE_CC, node_cc))
        note += f"; after a warm-up of {warm.duration:.0f} s"
        rows.append(Row(GROUP, NODE_CC, "tokens/s", note=note))
        await _measure(plan, targets, rows, report)


def node_warmup(plan: Plan) -> float:
    """Seconds of load node-oidc-provider gets before its first measured round."""
    return 5.0 if plan.quick else 15.0


async def _measure(plan: Plan, targets: list[Target], rows: list[Row], report: Report) -> None:
    results = await planning.interleaved(plan, targets)
    for row in rows:
        row.rounds = results.get(row.name, [])
        report.rows.append(row)


def _basic(op: NodeProvider) -> str:
    raw = f"{op.client_id}:{op.secret}".encode()
    return "Basic " + base64.b64encode(raw).decode()


async def _grants(plan: Plan, stack: Stack, bastion: Process, report: Report) -> None:
    """refresh_token and authorization_code from pools of single-use items, interleaved with
    the simple-auth example's authorization_code when a checkout is given."""
    refresh = stack.clients["refresh"]
    native = stack.clients["native"]
    pool = plan.pool

    async def bastion_refresh() -> Load:
        requests = _refresh_requests(bastion.port, await stack.refresh_pool(pool), refresh.basic())
        return planning.load(plan, bastion.port, requests, pooled=True, expect_body=JWT_EXPECTED)

    async def bastion_code() -> Load:
        codes = await stack.code_pool(pool)
        requests = [
            form_request(
                "127.0.0.1",
                bastion.port,
                "/token",
                _code_form(native.client_id, c, stack.verifier, stack.resource),
            )
            for c in codes
        ]
        return planning.load(plan, bastion.port, requests, pooled=True, expect_body=JWT_EXPECTED)

    targets: list[Target] = [(BASTION_RT, bastion_refresh), (BASTION_AC, bastion_code)]
    rows = [
        Row(GROUP, BASTION_RT, "tokens/s", note=f"pool of {pool} per round, each used once"),
        Row(GROUP, BASTION_AC, "tokens/s", note=f"pool of {pool} codes per round"),
    ]
    checkout = plan.simple_auth
    if checkout is None or simple_auth.package_dir(checkout) is None:
        why = "no checkout given" if checkout is None else f"no mcp_simple_auth in {checkout}"
        rows.append(Row(GROUP, SIMPLE_AC, note=f"not measured ({why})"))
        await _measure(plan, targets, rows, report)
    else:
        port = free_port()
        with simple_auth.serve(checkout, port=port, cpus=plan.server_cpus) as server:
            # Its login form is slow to drive: a smaller pool, the rate is still per request.
            small = min(pool, 2_000 if plan.quick else 4_000)

            async def simple_code() -> Load:
                client_id, codes = await simple_auth.code_pool(server.url, small, stack.verifier)
                requests = [
                    form_request(
                        "127.0.0.1",
                        port,
                        "/token",
                        _code_form(client_id, c, stack.verifier, None, simple_auth.REDIRECT_URI),
                    )
                    for c in codes
                ]
                return planning.load(plan, port, requests, pooled=True, expect_body=b"access_token")

            targets.append((SIMPLE_AC, simple_code))
            rows.append(
                Row(GROUP, SIMPLE_AC, "tokens/s", note=f"opaque tokens; pool of {small} codes")
            )
            await _measure(plan, targets, rows, report)
    report.ratios.append(
        Ratio("authorization_code: bastion / simple-auth example", BASTION_AC, SIMPLE_AC)
    )
    report.ratios.append(Ratio("refresh_token / client_credentials", BASTION_RT, BASTION_CC, 0.4))
    report.ratios.append(
        Ratio("authorization_code / client_credentials", BASTION_AC, BASTION_CC, 0.4)
    )
    await _scale(plan, stack, bastion, report)


def _refresh_requests(port: int, tokens: list[str], basic: str) -> list[bytes]:
    """One refresh_token request per token, by the confidential ``refresh`` client."""
    return [
        form_request(
            "127.0.0.1",
            port,
            "/token",
            urlencode({"grant_type": "refresh_token", "refresh_token": token}),
            {"Authorization": basic},
        )
        for token in tokens
    ]


async def _scale(plan: Plan, stack: Stack, bastion: Process, report: Report) -> None:
    """refresh_token with ``plan.grant_counts`` grants (families, each with a refresh token) in
    the database besides the pool, written before each measurement and not measured."""
    refresh = stack.clients["refresh"]
    for count in plan.grant_counts:
        took = await _fill_grants(stack, count)
        tokens = await stack.refresh_pool(plan.pool)
        requests = _refresh_requests(bastion.port, tokens, refresh.basic())
        load = planning.load(plan, bastion.port, requests, pooled=True, expect_body=JWT_EXPECTED)
        name = f"{BASTION_RT}, {count:,} grants in the database"
        row = Row(GROUP, name, "tokens/s", note=f"rows written in {took:.0f} s, not measured")
        row.rounds = [await planning.measure(load)]
        report.rows.append(row)


async def _fill_grants(stack: Stack, count: int) -> float:
    """Bring the benchmark's extra grants to ``count`` (one INSERT ... SELECT per table, over
    generate_series on PostgreSQL, a recursive WITH on SQLite), then ANALYZE; the seconds."""
    started = time.monotonic()
    now = int(time.time())
    db = stack.db()
    try:
        async with db.transaction() as conn:
            have = sa.select(sa.func.count()).where(token_families.c.id.startswith("scale-"))
            first = 1 + (await conn.execute(have)).scalar_one()
            if first <= count:
                n, key = _numbers(stack.database == "postgresql", first, count)
                families = sa.select(
                    key,
                    sa.literal(stack.clients["refresh"].client_id),
                    sa.literal(stack.user_id),
                    sa.literal(SCOPE),
                    sa.literal(stack.resource),
                    sa.literal(now),
                    sa.literal(now + 86400),
                ).select_from(n)
                columns = ["id", "client_id", "subject", "scope", "resource", "created_at"]
                await conn.execute(
                    sa.insert(token_families).from_select([*columns, "expires_at"], families)
                )
                tokens = sa.select(key, key, sa.literal(now)).select_from(n)
                await conn.execute(
                    sa.insert(refresh_tokens).from_select(
                        ["token_hash", "family_id", "issued_at"], tokens
                    )
                )
        async with db.transaction() as conn:
            await conn.execute(sa.text("ANALYZE token_families"))
            await conn.execute(sa.text("ANALYZE refresh_tokens"))
    finally:
        await db.dispose()
    return time.monotonic() - started


def _numbers(postgres: bool, first: int, last: int) -> tuple[sa.FromClause, sa.ColumnElement[str]]:
    """The integers ``first``..``last`` as a FROM, and a 64-character key made of each (like
    a SHA-256 digest in length, never one of a real token)."""
    if postgres:
        series = sa.func.generate_series(first, last).table_valued("n").render_derived()
        return series, sa.literal("scale-") + sa.func.lpad(sa.cast(series.c.n, sa.String), 58, "0")
    numbers = sa.select(sa.literal(first).label("n")).cte("numbers", recursive=True)
    numbers = numbers.union_all(sa.select(numbers.c.n + 1).where(numbers.c.n < last))
    return numbers, sa.literal("scale-") + sa.func.printf("%058d", numbers.c.n)


def _code_form(
    client_id: str, code: str, verifier: str, resource: str | None, redirect: str = REDIRECT_URI
) -> str:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect,
        "code_verifier": verifier,
        "client_id": client_id,
    }
    if resource:
        form["resource"] = resource
    return urlencode(form)


__all__ = [
    "BARE_FORM",
    "BASTION_CC",
    "GROUP",
    "NODE_CC",
    "check_token",
    "client_credentials_load",
    "node_warmup",
    "register_clients",
    "run",
]
