#!/usr/bin/env node
// Plain-HTTP checks of Portcullis's /introspect (RFC 7662) from a resource server's side, run
// after the TS SDK flow against the introspecting MCP server:
//   - the AS metadata advertises introspection_endpoint;
//   - no credentials, or a wrong secret: 401 with a Basic challenge;
//   - a garbage token: 200 {"active":false};
//   - with --other-tokens FILE (ts_client.mjs --tokens-out of a grant for ANOTHER MCP server):
//     a fresh access token for that other server (got by refreshing) is live, yet this
//     resource server's introspection reads {"active":false} (RFC 7662 §4: it may introspect
//     only tokens meant for it) and the introspecting MCP server answers 401.
//
// Usage: node introspect_checks.mjs --issuer URL --mcp-url URL [--other-tokens FILE]
//   credentials via env INTEROP_INTROSPECTION_CLIENT_ID / INTEROP_INTROSPECTION_CLIENT_SECRET.
import fs from 'node:fs';

const NAME = 'introspect_checks';
const log = (m) => console.log(`${NAME}: ${m}`);
class Fail extends Error {}
const check = (c, m) => {
  if (!c) throw new Fail(m);
};

const o = { issuer: process.env.PORTCULLIS_ISSUER, mcpUrl: undefined, otherTokens: undefined };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--issuer') o.issuer = argv[++i];
  else if (a === '--mcp-url') o.mcpUrl = argv[++i];
  else if (a === '--other-tokens') o.otherTokens = argv[++i];
  else {
    console.error(`${NAME}: unknown argument ${a}`);
    process.exit(2);
  }
}
const id = process.env.INTEROP_INTROSPECTION_CLIENT_ID;
const secret = process.env.INTEROP_INTROSPECTION_CLIENT_SECRET;

const transcript = [];
async function post(url, { headers = {}, form, json }) {
  const init = { method: 'POST', headers: { ...headers } };
  if (form) {
    init.body = new URLSearchParams(form);
    init.headers['content-type'] = 'application/x-www-form-urlencoded';
  } else {
    init.body = JSON.stringify(json);
    init.headers['content-type'] = 'application/json';
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const www = res.headers.get('www-authenticate');
  const shown = form ? Object.keys(form).join(',') : 'json';
  const line = `POST ${url} [${shown}]${headers.authorization ? ` (Authorization: ${headers.authorization.split(' ')[0]} …)` : ''} -> ${res.status} ${text
    .replace(/"(access_token|refresh_token)":"[^"]*"/g, '"$1":"…"')
    .slice(0, 300)}${www ? ` www-authenticate=${www}` : ''}`;
  transcript.push(line);
  log(`http: ${line}`);
  return { status: res.status, body, text, www };
}
const basic = (i, s) => `Basic ${Buffer.from(`${encodeURIComponent(i)}:${encodeURIComponent(s)}`).toString('base64')}`;

async function main() {
  check(o.issuer && o.mcpUrl && id && secret, 'usage: node introspect_checks.mjs --issuer URL --mcp-url URL [--other-tokens FILE] (+ credentials in env)');
  const issuer = o.issuer.replace(/\/$/, '');
  const meta = await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json();
  check(meta.introspection_endpoint, `the AS metadata has no introspection_endpoint: ${JSON.stringify(meta)}`);
  const ep = meta.introspection_endpoint;
  log(`introspection_endpoint ${ep}, auth methods ${JSON.stringify(meta.introspection_endpoint_auth_methods_supported)}`);

  const none = await post(ep, { form: { token: 'x' } });
  check(none.status === 401, `no credentials: HTTP ${none.status}, expected 401`);
  const wrong = await post(ep, { headers: { authorization: basic(id, `${secret}x`) }, form: { token: 'x' } });
  check(wrong.status === 401, `a wrong secret: HTTP ${wrong.status}, expected 401`);
  check(/^Basic/i.test(wrong.www ?? ''), `a wrong secret: no Basic challenge (www-authenticate ${JSON.stringify(wrong.www)})`);
  const garbage = await post(ep, { headers: { authorization: basic(id, secret) }, form: { token: 'not-a-token' } });
  check(
    garbage.status === 200 && garbage.body?.active === false,
    `a garbage token: HTTP ${garbage.status} ${garbage.text}, expected 200 {"active":false}`,
  );

  if (!o.otherTokens || !fs.existsSync(o.otherTokens)) {
    log(`NOTE: no tokens for another MCP server (${o.otherTokens ?? 'none given'}): the audience check is skipped`);
  } else {
    const st = JSON.parse(fs.readFileSync(o.otherTokens, 'utf8'));
    check(st.mcp_url !== o.mcpUrl, `--other-tokens is a grant for ${st.mcp_url}, the same server`);
    const r = await post(st.token_endpoint, {
      form: { grant_type: 'refresh_token', refresh_token: st.tokens.refresh_token, client_id: st.client_id },
    });
    check(r.status === 200 && r.body?.access_token, `refreshing the other grant failed: HTTP ${r.status} ${r.text}`);
    const at = r.body.access_token;
    const claims = JSON.parse(Buffer.from(at.split('.')[1], 'base64url'));
    check(claims.aud === st.mcp_url, `the refreshed token's aud is ${JSON.stringify(claims.aud)}, expected ${st.mcp_url}`);
    const i = await post(ep, { headers: { authorization: basic(id, secret) }, form: { token: at } });
    check(
      i.status === 200 && i.body?.active === false,
      `introspecting a live token for ${st.mcp_url} as the resource server of ${o.mcpUrl}: HTTP ${i.status} ${i.text}, expected {"active":false}`,
    );
    const m = await post(o.mcpUrl, {
      headers: { authorization: `Bearer ${at}`, accept: 'application/json, text/event-stream' },
      json: {
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'introspect-checks', version: '0' } },
      },
    });
    check(m.status === 401, `the introspecting MCP server accepted a token for ${st.mcp_url}: HTTP ${m.status}`);
    check(Date.now() / 1000 < claims.exp, 'inconclusive: the other token expired before the checks ran');
    log(`a live token for ${st.mcp_url} reads inactive to ${o.mcpUrl}'s credentials, and that server answers 401`);
  }
  log('PASS');
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`${NAME}: FAIL: ${e instanceof Fail ? e.message : e?.stack ?? e}`);
    if (transcript.length) console.error(`${NAME}: HTTP transcript:\n  ${transcript.join('\n  ')}`);
    process.exit(1);
  },
);
