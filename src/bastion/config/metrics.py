"""``[metrics]``: where the Prometheus metrics of a process are served."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator


def split_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as (host, port); ValueError saying what to write
    when it is not one."""
    host, colon, port_text = value.rpartition(":")
    if not colon or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(
            f'metrics.listen must be "host:port", e.g. "127.0.0.1:9464" or "[::1]:9464"; '
            f"got {value!r}"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(
            f'metrics.listen: write an IPv6 address in brackets, e.g. "[::1]:9464"; got {value!r}'
        )
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(
                f"metrics.listen: {host!r} is not an IP address; give the address of the "
                'interface Prometheus scrapes, e.g. "127.0.0.1:9464" or "10.0.0.5:9464"'
            ) from None
    return host, int(port_text)


class MetricsSettings(BaseModel):
    """The Prometheus metrics listener of every serving command (docs/metrics.md). It is a
    listener of its own, never a path of the public ones, so that it is reachable only where
    its address is."""

    model_config = ConfigDict(extra="forbid")

    listen: str | None = Field(
        None,
        description='Where to serve GET /metrics, "host:port" (e.g. "127.0.0.1:9464", or a '
        "private interface Prometheus reaches). Unset: no metrics listener. With "
        "--workers N the first process serves the metrics of all of them.",
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            split_listen(value)
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) of the metrics listener, None when metrics are off."""
        return None if self.listen is None else split_listen(self.listen)


__all__ = ["MetricsSettings", "split_listen"]
