"""Signing keys, JWT access tokens (RFC 9068) and opaque secrets (codes, refresh tokens)."""
