"""Opaque pagination cursors: the key of the last entry of a page.

Lists are ordered by (name, version) and a page starts strictly after its cursor's key (keyset
pagination), so entries published while a client pages through the list never shift later pages:
nothing that existed when the listing began is returned twice or skipped. The cursor is the
key as base64url JSON behind a format tag; clients treat it as opaque (registry OpenAPI,
``cursor``: "Always use the exact cursor value returned by the API").
"""

from __future__ import annotations

import base64
import binascii
import json

from bastion import safe_json

_TAG = "k1."
MAX_CURSOR = 1024


def encode(name: str, version: str) -> str:
    """The cursor of a page ending at (name, version)."""
    raw = json.dumps([name, version], separators=(",", ":")).encode("utf-8")
    return _TAG + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(cursor: str) -> tuple[str, str]:
    """The (name, version) key of a cursor; ValueError when it is not one of ours."""
    if len(cursor) > MAX_CURSOR or not cursor.startswith(_TAG):
        raise ValueError("not a cursor this registry issued")
    body = cursor[len(_TAG) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        key = safe_json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not a cursor this registry issued") from None
    if not isinstance(key, list) or len(key) != 2 or not all(isinstance(part, str) for part in key):
        raise ValueError("not a cursor this registry issued")
    return key[0], key[1]


__all__ = ["decode", "encode"]
