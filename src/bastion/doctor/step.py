"""What the steps of ``bastion doctor URL`` share: the HTTP client, the client's settings, the
checks recorded so far, the rule for URLs a client may call and the fetch of a metadata
document."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from bastion.client.discovery import Trace, check_endpoint, fetch_json
from bastion.client.errors import InsecureUrl
from bastion.client.settings import ClientSettings
from bastion.doctor.checks import CheckList


@dataclass(frozen=True)
class Fetched:
    """What a metadata URL answered: a JSON object, or why not."""

    url: str
    document: dict[str, object] | None
    outcome: str
    reachable: bool


class Step:
    """A group of steps; each appends one :class:`~bastion.doctor.checks.Check` per verdict to
    the shared ``checks``."""

    def __init__(
        self, http: httpx.AsyncClient, settings: ClientSettings, checks: CheckList
    ) -> None:
        self.http = http
        self.settings = settings
        self.checks = checks
        self.add = checks.add

    def endpoint(self, url: str, what: str) -> str:
        """``url`` checked as an endpoint this client may call (raises :class:`InsecureUrl`)."""
        return check_endpoint(
            url,
            what,
            allow_insecure_http=self.settings.allow_insecure_http,
            https_only=self.settings.ssrf_guard,
        )

    def refused(self, url: str, what: str, name: str, fix: str) -> bool:
        """Record a failed check when ``url`` is not one this client may use (https, loopback
        http excepted: OAuth 2.1 §1.5)."""
        try:
            self.endpoint(url, what)
        except InsecureUrl as exc:
            self.add(name, "fail", str(exc), url, fix)
            return True
        return False

    async def fetch(self, url: str) -> Fetched:
        """What ``url`` answered: a JSON object, or the outcome that says why not."""
        trace = Trace()
        document = await fetch_json(self.http, url, trace, "fetch")
        if document is not None:
            return Fetched(url, document, "HTTP 200, a JSON document", True)
        outcome = trace.steps[-1].detail
        return Fetched(url, None, outcome, not outcome.startswith("request failed"))


__all__ = ["Fetched", "Step"]
