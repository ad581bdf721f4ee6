// The TypeScript MCP SDK's client (npm @modelcontextprotocol/sdk, installed by
// scripts/setup-node.sh) through bastion's gateway, for tests/vault/test_gateway_ts_client.py.
// Usage: node ts_client.mjs <url> <bastion access token>. Connects (initialize), calls the
// whoami tool and prints one JSON line: {"ok": true, "text": ...} or the error it got,
// {"ok": false, "name", "code", "message", "elicitations"}.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const modules = process.env.BASTION_NODE_MODULES;
const sdk = (path) =>
  import(pathToFileURL(join(modules, '@modelcontextprotocol', 'sdk', 'dist', 'esm', path)).href);
const { Client } = await sdk('client/index.js');
const { StreamableHTTPClientTransport } = await sdk('client/streamableHttp.js');

const [url, token] = process.argv.slice(2);
const client = new Client(
  { name: 'bastion-vault-test', version: '1.0.0' },
  { capabilities: { elicitation: { url: {} } } },
);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
let out;
try {
  await client.connect(transport);
  const result = await client.callTool({ name: 'whoami', arguments: {} });
  out = { ok: !result.isError, text: result.content?.[0]?.text };
} catch (err) {
  out = {
    ok: false,
    name: err.name,
    code: err.code,
    message: err.message,
    elicitations: err.elicitations ?? err.data?.elicitations ?? null,
  };
} finally {
  await client.close().catch(() => {});
}
process.stdout.write(`${JSON.stringify(out)}\n`);
