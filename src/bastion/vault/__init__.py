"""The token vault: each person's tokens at upstreams with their own OAuth (``auth = "oauth"``).

- :mod:`bastion.vault.upstream_server`: one upstream's OAuth, as bastion sees it as a client:
  discovery (RFC 9728, RFC 8414), bastion's registration there (pre-registered, a Client ID
  Metadata Document, or RFC 7591), the authorization URL, code exchange, refresh and RFC 7009
  revocation.
- :mod:`bastion.vault.connect`: the authorization server's connect pages, where a signed-in
  person authorizes bastion upstream (the URL a URL elicitation names).
- :mod:`bastion.vault.tokens`: the gateway's side: a person's upstream access token, refreshed
  before it expires, one refresh at a time across processes.

Tokens are stored encrypted per (person, upstream) (:mod:`bastion.store.upstream_connections`);
bastion's own tokens never go upstream (MCP security best practices, "Token Passthrough").
"""
