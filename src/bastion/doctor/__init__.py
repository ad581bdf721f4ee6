"""``bastion doctor URL``: the MCP authorization discovery chain of a server or registry, step by
step, each step a :class:`Check` with a verdict and, when it fails, what to change.

The steps follow MCP 2026-07-28 "Authorization" as a client walks them:

1. the request without a token (MCP: ``POST tools/list``; registry: ``GET /v0.1/servers``) must
   get 401 with a ``WWW-Authenticate`` Bearer challenge naming ``resource_metadata`` and ``scope``
   (RFC 6750 §3, RFC 9728 §5.1) [C02, R02, G01];
2. Protected Resource Metadata at the challenge's URL, else the path-inserted and root well-known
   URLs; its ``resource`` is the URL it describes and it lists ``authorization_servers``
   (RFC 9728 §3.3) [C01];
3. for each authorization server: its metadata in MCP's order of URLs (RFC 8414 §3.1, OpenID
   Connect Discovery §4) [C04], the issuer identical to the listed one (RFC 8414 §3.3) [C05],
   PKCE S256 advertised [C10];
4. the registration routes open to this client: pre-registered credentials for exactly that
   issuer, a Client ID Metadata Document, Dynamic Client Registration (RFC 7591) [C06];
5. an authorization request with the RFC 8707 ``resource`` (redirects are not followed: only the
   authorization server's first answer is read) and a token request with a made-up code (or, for
   a pre-registered ``client_credentials`` client, a real token request): the token endpoint must
   answer with an OAuth error (RFC 6749 §5.2), and neither may refuse the resource with
   ``invalid_target`` [C12].

Nothing changes at the authorization server except in one case: when Dynamic Client
Registration is the only way to a client_id, a temporary client is registered for step 5 and
deleted again (RFC 7592 §2.3) when the server gives a registration access token
(``register_client=False`` skips this). The fixes name the known causes of VS Code's
"mcp oauth: disabled" and of failed sign-ins.

Steps 1 and 2 are in :mod:`bastion.doctor.resource`, 3 in
:mod:`bastion.doctor.authorization_server`, 4 and 5 in :mod:`bastion.doctor.endpoints`; the check
records in :mod:`bastion.doctor.checks`, the run in :mod:`bastion.doctor.diagnosis`. The doctor
is a client of any server: it stands on :mod:`bastion.client` and :mod:`bastion.oauth`, and no
server package imports it.
"""

from bastion.doctor.checks import Check, Status
from bastion.doctor.diagnosis import Diagnosis, Kind, diagnose

__all__ = ["Check", "Diagnosis", "Kind", "Status", "diagnose"]
