"""How log records name the person behind a request (``logging.user_ids``): a keyed digest,
nothing, or the subject itself.

The digest is HMAC-SHA256 of the subject under a key derived from the deployment's secret key,
cut to 16 hex digits behind ``h:``. Every process of a deployment (workers, the gateway, a
registry apart) derives the same key, and a restart keeps it, so one person's lines can be
followed across them; someone who reads the log but not the secret key cannot test a guessed
subject against it, as they could an unkeyed digest (subjects are user ids, which an
administrator's export or an earlier log may show). An operator who must find one person's
lines computes the same digest with :meth:`UserIdPolicy.render`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from bastion.config.logs import UserIds

_LABEL = b"bastion log user ids v1"


class UserIdPolicy:
    """Render a subject for the log as ``mode`` says (see the module docstring)."""

    def __init__(self, mode: UserIds, secret: str | None = None) -> None:
        if mode == "hash" and not secret:
            raise ValueError('logging.user_ids = "hash" needs the secret key')
        self.mode = mode
        self._key = hmac.new((secret or "").encode(), _LABEL, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"UserIdPolicy({self.mode!r})"

    def render(self, subject: str) -> str | None:
        """The subject as the log shows it: ``h:<16 hex digits>``, None or itself."""
        if self.mode == "plain":
            return subject
        if self.mode == "omit":
            return None
        digest = hmac.new(self._key, subject.encode(), hashlib.sha256).hexdigest()
        return f"h:{digest[:16]}"


class UserIdFilter(logging.Filter):
    """A handler filter that renders a record's ``subject`` through a :class:`UserIdPolicy`
    (once per record, whatever the number of handlers)."""

    def __init__(self, policy: UserIdPolicy) -> None:
        super().__init__()
        self.policy = policy

    def filter(self, record: logging.LogRecord) -> bool:
        subject = getattr(record, "subject", None)
        if isinstance(subject, str) and not getattr(record, "subject_rendered", False):
            record.subject = self.policy.render(subject)
            record.subject_rendered = True
        return True


__all__ = ["UserIdFilter", "UserIdPolicy"]
