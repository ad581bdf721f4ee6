"""The bridge as ``bastion proxy registry`` runs it (https, the local CA), for tests."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bastion.client import RegistryClient
from bastion.client.local_ca import LocalCA
from bastion.client.registry_bridge import DEFAULT_ORIGINS, RENEW_CHECK_SECONDS, run_bridge


@dataclass(frozen=True)
class RunningBridge:
    """A bridge serving https on 127.0.0.1; ``url`` is the one it printed."""

    url: str
    ca: LocalCA

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def only_local_ca(self) -> ssl.SSLContext:
        """A TLS client context that trusts the local CA and nothing else."""
        return ssl.create_default_context(cafile=str(self.ca.ca_path))

    def client(self, base_url: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base_url or self.url, verify=self.only_local_ca())


@contextlib.asynccontextmanager
async def https_bridge(
    registry: RegistryClient,
    ca_directory: Path,
    *,
    allowed_origins: Sequence[str] = DEFAULT_ORIGINS,
    renew_every: float = RENEW_CHECK_SECONDS,
) -> AsyncIterator[RunningBridge]:
    urls: list[str] = []
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_bridge(
            registry,
            port=0,
            allowed_origins=allowed_origins,
            ca_directory=ca_directory,
            renew_every=renew_every,
            ready=urls.append,
            stop=stop,
        )
    )
    try:
        for _ in range(500):
            if urls or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
        assert urls, "the bridge did not start within 5 s"
        yield RunningBridge(urls[0], LocalCA(ca_directory))
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
