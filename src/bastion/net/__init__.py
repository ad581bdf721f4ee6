"""Outbound networking for requests whose destination comes from untrusted input."""
