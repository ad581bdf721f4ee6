"""``[logging]``: how the serving commands write their log (docs/deployment.md, "Logs")."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
UserIds = Literal["hash", "omit", "plain"]


class LogSettings(BaseModel):
    """The log of ``bastion serve``, ``gateway``, ``registry serve`` and ``quickstart``."""

    model_config = ConfigDict(extra="forbid")

    format: LogFormat = Field(
        "text",
        description='"text": one line per record for people; "json": one JSON object per line '
        "(time, level, logger, message, request_id, route, status, latency_ms, client_id, "
        "subject…) for a log pipeline.",
    )
    level: LogLevel = Field(
        "info", description="debug, info, warning or error; above info there is no access log."
    )
    user_ids: UserIds = Field(
        "hash",
        description='How log records name the person behind a request (subject): "hash", a '
        "keyed digest (HMAC-SHA256 under a key derived from secret_key), the same for one "
        "person in every process and restart of a deployment, so lines can be correlated "
        'without the log saying who; "omit"; "plain", the subject as the token says it.',
    )
    hash_key: SecretStr | None = Field(
        None,
        min_length=32,
        description='The key of user_ids = "hash" (32+ characters, the same on every host whose '
        "digests must match). Default: derived from secret_key (or <data_dir>/secret.key); set "
        "it on gateway hosts, which need not hold secret_key.",
    )
    access_log: bool = Field(
        True,
        description="One record per request on the bastion.access logger (method, route, "
        "status, latency_ms, request_id, client_id, subject; never the query string). "
        "uvicorn's own access log is off in any case.",
    )


__all__ = ["LogFormat", "LogLevel", "LogSettings", "UserIds"]
