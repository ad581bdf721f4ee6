"""The run of ``bastion doctor URL``: the steps in order (see :mod:`bastion.doctor`) and the
:class:`Diagnosis` they leave."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, get_args

import httpx

from bastion.client.authorizer import USER_AGENT
from bastion.client.settings import ClientSettings
from bastion.doctor.authorization_server import AuthorizationServerSteps
from bastion.doctor.checks import Check, CheckList, Status
from bastion.doctor.resource import Kind, ResourceSteps
from bastion.net.ssrf import guarded_transport


@dataclass
class Diagnosis:
    """The checks of one ``bastion doctor URL`` run, in the order they were made."""

    url: str
    kind: Literal["mcp", "registry"]
    checks: list[Check] = field(default_factory=list)
    resource: str | None = None

    @property
    def failed(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if c.status == "fail"]

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return not self.failed

    def counts(self) -> dict[str, int]:
        """How many checks ended in each status."""
        found = Counter(c.status for c in self.checks)
        return {status: found[status] for status in get_args(Status)}

    def to_json(self) -> dict[str, object]:
        """The diagnosis as a JSON object (``bastion doctor URL --json``)."""
        return {
            "url": self.url,
            "kind": self.kind,
            "resource": self.resource,
            "ok": self.ok,
            "counts": self.counts(),
            "checks": [c.to_json() for c in self.checks],
        }


class _Doctor:
    """Runs the steps, appending one :class:`Check` per verdict."""

    def __init__(
        self, http: httpx.AsyncClient, settings: ClientSettings, register_client: bool
    ) -> None:
        self.checks = CheckList()
        self.resource = ResourceSteps(http, settings, self.checks)
        self.servers = AuthorizationServerSteps(http, settings, self.checks, register_client)

    async def run(self, url: str, kind: Kind) -> Diagnosis:
        """Steps 1 to 5, each only when the one before left something to diagnose."""
        fix = (
            "Give the full URL of the MCP endpoint or registry: https, or http on "
            "127.0.0.1/localhost only (allow_insecure_http for a test network)."
        )
        if self.resource.refused(url, "the URL to diagnose", "url", fix):
            return Diagnosis(url, "registry" if kind == "registry" else "mcp", self.checks.items)
        chosen, answer = await self.resource.probe(url, kind)
        diagnosis = Diagnosis(url, chosen, self.checks.items)
        if (
            chosen == "mcp"
            and answer.status == 404
            and await self.resource.answers_like_registry(url)
        ):
            return diagnosis
        if not self.resource.request_checks(url, chosen, answer):
            return diagnosis
        if chosen == "registry" and await self.resource.answers_like_mcp(url, answer):
            return diagnosis
        found = await self.resource.protected_resource(url, answer)
        if found is None:
            return diagnosis
        servers, diagnosis.resource, scopes = found
        await self.servers.run(servers, diagnosis.resource, scopes)
        return diagnosis


async def diagnose(
    url: str,
    settings: ClientSettings,
    *,
    kind: Kind = "auto",
    http: httpx.AsyncClient | None = None,
    register_client: bool = True,
) -> Diagnosis:
    """Walk the authorization discovery chain of the MCP server or registry at ``url``.

    ``kind`` ``auto`` probes as an MCP server first and as a registry when the URL answers like
    one (or challenges with the registry realm). ``http`` defaults to a client of this module's
    own (no redirects followed; with ``settings.ssrf_guard``, public addresses only). Never
    raises for what the server does wrong: every problem is a failed :class:`Check`.
    """
    if http is not None:
        return await _Doctor(http, settings, register_client).run(url, kind)
    transport = (
        guarded_transport(allow_private=False, timeout=settings.http_timeout)
        if settings.ssrf_guard
        else None
    )
    async with httpx.AsyncClient(
        timeout=settings.http_timeout,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
        transport=transport,
    ) as own:
        return await _Doctor(own, settings, register_client).run(url, kind)


__all__ = ["Diagnosis", "Kind", "diagnose"]
