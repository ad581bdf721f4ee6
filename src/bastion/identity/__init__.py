"""How a person proves who they are: local users, or an upstream identity provider
(federation: OpenID Connect, OAuth 2.0 and the presets of ``providers``)."""
