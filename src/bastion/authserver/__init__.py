"""The OAuth 2.1 authorization server: an ASGI app, one module per endpoint or grant."""
