// A standards-following third-party authorization server for the tests: node-oidc-provider
// (npm `oidc-provider`, pinned in scripts/setup-node.sh), run under Node 22 by
// tests/support/oidc_provider.py. Configured by one JSON document (argv[2], else the
// OIDC_PROVIDER_CONFIG environment variable):
//
//   { "port": 0,                        // 0: any free port (the issuer names the bound one)
//     "resources": [{ "uri": "http://127.0.0.1:9/mcp", "scope": "mcp:tools files:write",
//                     "format": "jwt" | "opaque", "alg": "ES256" | "RS256" }],
//     "defaultResource": "http://127.0.0.1:9/mcp" | null,   // when a request names none
//     "clients": [ <client metadata, RFC 7591 names, with client_id (+ client_secret)>, plus
//                  "resource_scope": "mcp:tools" (optional: the most it gets of any resource) ],
//     "accounts": { "<sub>": { "email": ..., "name": ..., "groups": [...] } },
//     "ttl": { "AccessToken": 3600, "ClientCredentials": 600, ... },
//     "mountPath": "/oidc",                // the issuer gets this path (default: none); only
//                                          // requests below it are answered (else 404)
//     "wellKnown": ["oauth-authorization-server", "openid-configuration"],  // the discovery
//                                          // documents served below the issuer (default both)
//     "registration": false,               // true: open Dynamic Client Registration (RFC 7591)
//     "refreshTokens": "offline_access",   // oidc-provider's rule: a refresh token only when
//                                          // offline_access is granted (which it drops unless
//                                          // prompt=consent); "always": whenever the client may
//                                          // use the refresh_token grant
//     "watchStdin": true }                 // exit when stdin closes (the parent went away)
//
// Prints exactly one line on stdout, "READY <issuer>", once it listens on 127.0.0.1. Everything
// else (oidc-provider's notices and warnings, errors) goes to stderr.
import { generateKeyPair, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pathToFileURL } from 'node:url';

// oidc-provider prints its development NOTICEs with console.info, i.e. on stdout: keep stdout
// for the READY line only.
console.info = console.error;

const config = JSON.parse(process.argv[2] ?? process.env.OIDC_PROVIDER_CONFIG ?? '{}');
const resources = new Map((config.resources ?? []).map((r) => [r.uri, r]));
const accounts = config.accounts ?? {};
// oidc-provider's own client `scope` may only hold its static (OpenID) scopes, not resource
// scopes: the per-client resource allow-list is kept here and stripped from the metadata.
const resourceScope = new Map();
const clients = (config.clients ?? []).map(({ resource_scope: allowed, ...metadata }) => {
  if (allowed !== undefined) resourceScope.set(metadata.client_id, allowed);
  return metadata;
});

// ESM imports ignore NODE_PATH: .cache/node/bin/node22 names the private node_modules.
const modules = process.env.BASTION_NODE_MODULES;
const { default: Provider, errors } = await import(
  modules ? pathToFileURL(join(modules, 'oidc-provider', 'lib', 'index.js')).href : 'oidc-provider'
);

// Signing keys made at start: ES256 (access tokens) and RS256 (ID tokens' default alg).
const keyPair = promisify(generateKeyPair);
const [ec, rsa] = await Promise.all([
  keyPair('ec', { namedCurve: 'P-256' }),
  keyPair('rsa', { modulusLength: 2048 }),
]);
const jwks = {
  keys: [
    { ...ec.privateKey.export({ format: 'jwk' }), kid: 'es256-1', alg: 'ES256', use: 'sig' },
    { ...rsa.privateKey.export({ format: 'jwk' }), kid: 'rs256-1', alg: 'RS256', use: 'sig' },
  ],
};

// Listen first, so the issuer names the port actually bound (no free-port race).
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(config.port ?? 0, '127.0.0.1', resolve);
});
const mountPath = (config.mountPath ?? '').replace(/\/+$/, '');
const issuer = `http://127.0.0.1:${server.address().port}${mountPath}`;
const wellKnown = new Set(config.wellKnown ?? ['oauth-authorization-server', 'openid-configuration']);

const provider = new Provider(issuer, {
  clients,
  jwks,
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  responseTypes: ['code'],
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  // Fixed lifetimes (the defaults are functions that print a NOTICE on first use).
  ttl: { AccessToken: 3600, ClientCredentials: 600, ...config.ttl },
  // "always": any client allowed the refresh_token grant gets one (else oidc-provider's own
  // rule: only with offline_access granted).
  ...(config.refreshTokens === 'always'
    ? { issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token') }
    : {}),
  // Any login name is an account (devInteractions accepts any login and password).
  async findAccount(ctx, sub) {
    const known = accounts[sub] ?? {};
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          email: known.email ?? `${sub}@example.com`,
          email_verified: true,
          name: known.name ?? sub,
          groups: known.groups ?? [],
        };
      },
    };
  },
  features: {
    devInteractions: { enabled: true }, // the built-in login and consent pages (dev only)
    // Default as an enterprise IdP: no Dynamic Client Registration; else open registration.
    registration: { enabled: config.registration === true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // RFC 8707: a request without resource gets this one (undefined: none, opaque token).
      async defaultResource(ctx, client, oneOf) {
        return oneOf ?? config.defaultResource ?? undefined;
      },
      // Only the configured resources exist (others: invalid_target). A client with a
      // resource_scope gets at most those scopes of the resource.
      async getResourceServerInfo(ctx, indicator, client) {
        const found = resources.get(indicator);
        if (!found) throw new errors.InvalidTarget();
        let scope = found.scope ?? '';
        if (client && resourceScope.has(client.clientId)) {
          const allowed = new Set(resourceScope.get(client.clientId).split(' '));
          scope = scope.split(' ').filter((s) => allowed.has(s)).join(' ');
        }
        const info = { scope, audience: found.uri };
        if ((found.format ?? 'jwt') === 'jwt') {
          // RFC 9068: signed JWT, typ at+jwt, aud = the resource.
          info.accessTokenFormat = 'jwt';
          info.jwt = { sign: { alg: found.alg ?? 'ES256' } };
        } else {
          info.accessTokenFormat = 'opaque'; // introspectable (JWTs are not, by oidc-provider)
        }
        return info;
      },
    },
  },
});

// Failures a test should be able to read in the captured stderr.
for (const event of ['server_error', 'grant.error', 'introspection.error', 'revocation.error']) {
  provider.on(event, (ctx, err) => console.error(`${event}: ${err.name}: ${err.message}`,
    err.error_detail ?? ''));
}

// The provider below mountPath (as Express's app.use(mountPath, ...) would mount it: the
// provider reads the mount from req.originalUrl), and only the chosen discovery documents.
const callback = provider.callback();
const notFound = (res) => {
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end('{"error":"not_found"}');
};
server.on('request', (req, res) => {
  const path = req.url.split('?')[0];
  if (mountPath && path !== mountPath && !path.startsWith(`${mountPath}/`)) return notFound(res);
  const below = path.slice(mountPath.length);
  const doc = below.match(/^\/\.well-known\/([^/]+)$/);
  if (doc && !wellKnown.has(doc[1])) return notFound(res);
  if (mountPath) {
    req.originalUrl = req.url;
    const rest = req.url.slice(mountPath.length);
    req.url = rest.startsWith('/') ? rest : `/${rest}`;
  }
  return callback(req, res);
});
process.on('SIGTERM', () => process.exit(0));
if (config.watchStdin) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
process.stdout.write(`READY ${issuer}\n`);
