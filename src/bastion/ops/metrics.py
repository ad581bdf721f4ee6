"""bastion's Prometheus metrics: every metric object, and one small function per event the
code records. docs/metrics.md explains each one and the alerts worth having.

========================================================  =========  ===============================
name                                                      type       labels
========================================================  =========  ===============================
bastion_http_requests_total                               counter    app, route, method, status
bastion_http_request_duration_seconds                     histogram  app, route, method
bastion_tokens_issued_total                               counter    grant_type, client_type,
                                                                     client_origin
bastion_oauth_errors_total                                counter    endpoint, error
bastion_sign_ins_total                                    counter    method, provider, result
bastion_consents_total                                    counter    decision
bastion_signing_key_activated_timestamp_seconds           gauge      (none)
bastion_gateway_upstream_request_duration_seconds         histogram  upstream, transport
bastion_gateway_upstream_errors_total                     counter    upstream, transport, reason
bastion_gateway_sessions                                  gauge      upstream
bastion_gateway_stdio_processes                           gauge      upstream
bastion_registry_operations_total                         counter    action, result
bastion_db_connections_open                               gauge      (none)
bastion_db_connections_in_use                             gauge      (none)
bastion_revocation_propagation_seconds                    histogram  (none)
========================================================  =========  ===============================

Every label value comes from a fixed set or from the configuration (route templates, upstream
and provider names): never a token, a user name, a client id or a raw path.

Metrics describe the process, as Prometheus scrapes processes: these objects live in
prometheus_client's default registry, the one state the apps of a process share. The apps only
add to them and never read them, so no app's behaviour depends on another's. This module
imports prometheus_client alone, so that every layer may record into it (tests/test_layers.py).
With
``PROMETHEUS_MULTIPROC_DIR`` set before this module is imported (``bastion serve --workers N``
sets it for its workers), the values live in that directory and the first process serves the
sum (:mod:`bastion.ops.metrics_listener`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Final, TypeVar

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# No *_created series: they double the series count and no dashboard or alert here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Latencies of a token endpoint, a registry read, a proxied MCP call: 5 ms to 10 s.
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# From a revocation's commit to a process applying it (whole seconds on the revocation side).
PROPAGATION_BUCKETS: Final = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)

HTTP_REQUESTS: Final = Counter(
    "bastion_http_requests",
    "HTTP requests answered, by app, route template, method and status.",
    ["app", "route", "method", "status"],
)
HTTP_DURATION: Final = Histogram(
    "bastion_http_request_duration_seconds",
    "Seconds from a request's arrival to the end of its answer, by app, route and method.",
    ["app", "route", "method"],
    buckets=LATENCY_BUCKETS,
)
TOKENS_ISSUED: Final = Counter(
    "bastion_tokens_issued",
    "Access tokens issued by the token endpoint, by grant type, client type (public or "
    "confidential, RFC 6749 section 2.1) and how the client came to be known.",
    ["grant_type", "client_type", "client_origin"],
)
OAUTH_ERRORS: Final = Counter(
    "bastion_oauth_errors",
    "Requests refused with an OAuth error code, by endpoint and code.",
    ["endpoint", "error"],
)
SIGN_INS: Final = Counter(
    "bastion_sign_ins",
    "Sign-in attempts by method (password, federation), provider (local or the configured "
    "identity provider's name) and result (ok, failed, throttled).",
    ["method", "provider", "result"],
)
CONSENTS: Final = Counter(
    "bastion_consents",
    "Answers people gave on the consent page (allowed, denied).",
    ["decision"],
)
SIGNING_KEY_ACTIVATED: Final = Gauge(
    "bastion_signing_key_activated_timestamp_seconds",
    "Unix time at which the key that signs access tokens now became active.",
    multiprocess_mode="max",
)
UPSTREAM_DURATION: Final = Histogram(
    "bastion_gateway_upstream_request_duration_seconds",
    "Seconds an upstream MCP server took to answer a call the gateway forwarded (until its "
    "answer began), by upstream name and transport (http, stdio).",
    ["upstream", "transport"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_ERRORS: Final = Counter(
    "bastion_gateway_upstream_errors",
    "Calls the gateway could not complete with an upstream, by upstream, transport and reason.",
    ["upstream", "transport", "reason"],
)
GATEWAY_SESSIONS: Final = Gauge(
    "bastion_gateway_sessions",
    "MCP sessions open on this gateway replica, by stdio upstream.",
    ["upstream"],
    multiprocess_mode="livesum",
)
STDIO_PROCESSES: Final = Gauge(
    "bastion_gateway_stdio_processes",
    "Upstream processes the gateway runs for stdio upstreams, by upstream.",
    ["upstream"],
    multiprocess_mode="livesum",
)
REGISTRY_OPERATIONS: Final = Counter(
    "bastion_registry_operations",
    "Registry API requests by action (list, get, publish, ...) and audit result.",
    ["action", "result"],
)
DB_OPEN: Final = Gauge(
    "bastion_db_connections_open",
    "Database connections the process's pools hold open.",
    multiprocess_mode="livesum",
)
DB_IN_USE: Final = Gauge(
    "bastion_db_connections_in_use",
    "Database connections checked out of the process's pools.",
    multiprocess_mode="livesum",
)
REVOCATION_PROPAGATION: Final = Histogram(
    "bastion_revocation_propagation_seconds",
    "Seconds from a revocation's commit to this process applying it from the database feed.",
    buckets=PROPAGATION_BUCKETS,
)


_Metric = TypeVar("_Metric", Counter, Histogram)


@cache
def _child(metric: _Metric, *labels: str) -> _Metric:
    """``metric``'s child for ``labels``, resolved once: ``labels()`` checks and locks on every
    call, a few microseconds on the token endpoint's path. Label values are bounded, and so is
    this cache."""
    return metric.labels(*labels)


def token_issued(grant_type: str, *, public: bool, origin: str) -> None:
    """An access token was issued for ``grant_type`` to a client that is ``public`` or not,
    known from ``origin`` (preregistered, dynamic, metadata_document, unknown_loopback)."""
    _child(TOKENS_ISSUED, grant_type, "public" if public else "confidential", origin).inc()


def oauth_error(endpoint: str, error: str) -> None:
    """``endpoint`` (a route template, or ``authorize``) refused a request with ``error``."""
    _child(OAUTH_ERRORS, endpoint, error).inc()


def sign_in(method: str, provider: str, result: str) -> None:
    """A sign-in attempt by ``method`` with ``provider`` ended with ``result``."""
    _child(SIGN_INS, method, provider, result).inc()


def consent(allowed: bool) -> None:
    """A person answered the consent page."""
    _child(CONSENTS, "allowed" if allowed else "denied").inc()


def signing_key_activated(at: int) -> None:
    """The key that signs now became active at Unix time ``at``."""
    SIGNING_KEY_ACTIVATED.set(at)


def upstream_answered(upstream: str, transport: str, seconds: float) -> None:
    """``upstream`` (over ``transport``: http, stdio) began to answer after ``seconds``."""
    _child(UPSTREAM_DURATION, upstream, transport).observe(seconds)


def upstream_failed(upstream: str, transport: str, reason: str) -> None:
    """A call to ``upstream`` failed for ``reason`` (timeout, unreachable, ended, ...)."""
    _child(UPSTREAM_ERRORS, upstream, transport, reason).inc()


def gateway_upstream(
    upstream: str, *, sessions: Callable[[], int], processes: Callable[[], int] | None = None
) -> None:
    """Read ``upstream``'s open sessions (and its processes, for a stdio upstream) from these
    functions at each scrape. The gateway runs in one process, never in multiprocess mode."""
    GATEWAY_SESSIONS.labels(upstream).set_function(sessions)
    if processes is not None:
        STDIO_PROCESSES.labels(upstream).set_function(processes)


def registry_operation(action: str, result: str) -> None:
    """The registry answered a request for ``action`` with the audit ``result``."""
    _child(REGISTRY_OPERATIONS, action, result).inc()


def revocation_applied(delay: float) -> None:
    """A revocation committed ``delay`` seconds ago was applied from the feed."""
    REVOCATION_PROPAGATION.observe(max(delay, 0.0))


__all__ = [
    "CONSENTS",
    "DB_IN_USE",
    "DB_OPEN",
    "GATEWAY_SESSIONS",
    "HTTP_DURATION",
    "HTTP_REQUESTS",
    "LATENCY_BUCKETS",
    "OAUTH_ERRORS",
    "PROPAGATION_BUCKETS",
    "REGISTRY_OPERATIONS",
    "REVOCATION_PROPAGATION",
    "SIGNING_KEY_ACTIVATED",
    "SIGN_INS",
    "STDIO_PROCESSES",
    "TOKENS_ISSUED",
    "UPSTREAM_DURATION",
    "UPSTREAM_ERRORS",
    "consent",
    "gateway_upstream",
    "oauth_error",
    "registry_operation",
    "revocation_applied",
    "sign_in",
    "signing_key_activated",
    "token_issued",
    "upstream_answered",
    "upstream_failed",
]
