#!/usr/bin/env node
// Interop test: the official MCP TypeScript SDK (v1.x) client, given only the MCP server URL,
// runs its own OAuth flow against Portcullis (PRM + AS discovery, dynamic registration,
// PKCE, browser login and consent), calls `whoami`, waits for the access token to expire and
// calls again, which must make the SDK refresh (with refresh-token rotation) rather than
// start a new authorization.
//
// Usage: node ts_client.mjs --mcp-url URL --user NAME --password PW [--screenshots DIR]
//          [--client-name NAME] [--expect-mode jwt|introspect] [--tokens-out FILE] [--label L]
//   (or env MCP_URL, INTEROP_USER, INTEROP_PASSWORD, INTEROP_SCREENSHOTS)
//   --client-name     client_name sent at dynamic registration (shown on consent and /account)
//   --expect-mode     require the MCP server's /stats `mode` (introspect: the server must have
//                     had >= 2 active introspection answers, one per access token)
//   --tokens-out FILE write the final state as JSON (client_id, issuer, token_endpoint,
//                     mcp_url, the last tokens) for a later test; mode 0600
//   --label L         log prefix (default ts_client)
// Exit status 0 on success; non-zero with "ts_client: FAIL: ..." otherwise.
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { authorize } from './browser.mjs';

let NAME = 'ts_client';
const t0 = Date.now();
const log = (m) => console.log(`${NAME} [+${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);
class Fail extends Error {}
const check = (cond, msg) => {
  if (!cond) throw new Fail(msg);
};

function parseArgs(argv) {
  const o = {
    mcpUrl: process.env.MCP_URL,
    user: process.env.INTEROP_USER,
    password: process.env.INTEROP_PASSWORD,
    screenshots: process.env.INTEROP_SCREENSHOTS,
    timeout: Number(process.env.INTEROP_CLIENT_TIMEOUT ?? 150),
    // Other values `sub` may take for this user (Portcullis puts the user's id, not the name, in `sub`).
    expectSub: (process.env.INTEROP_EXPECT_SUB ?? '').split(/\s+/).filter(Boolean),
    clientName: 'Portcullis interop (MCP TypeScript SDK)',
    expectMode: undefined,
    tokensOut: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--mcp-url') o.mcpUrl = v();
    else if (a === '--user') o.user = v();
    else if (a === '--password') o.password = v();
    else if (a === '--screenshots') o.screenshots = v();
    else if (a === '--timeout') o.timeout = Number(v());
    else if (a === '--expect-sub') o.expectSub.push(v());
    else if (a === '--client-name') o.clientName = v();
    else if (a === '--expect-mode') o.expectMode = v();
    else if (a === '--tokens-out') o.tokensOut = v();
    else if (a === '--label') NAME = v();
    else throw new Fail(`unknown argument ${a}`);
  }
  if (!o.mcpUrl || !o.user || o.password === undefined) {
    throw new Fail('usage: node ts_client.mjs --mcp-url URL --user NAME --password PW [--screenshots DIR]');
  }
  return o;
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function decodeJwt(token) {
  const [h, p] = token.split('.');
  return { header: JSON.parse(Buffer.from(h, 'base64url')), payload: JSON.parse(Buffer.from(p, 'base64url')) };
}

// fetch wrapper: logs every HTTP exchange the SDK makes (and the body of error answers from
// the authorization server), so a failure report shows exactly which request went wrong.
function loggingFetch(exchanges) {
  return async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const method = init?.method ?? (typeof input === 'object' && 'method' in input ? input.method : 'GET');
    let body = '';
    if (init?.body && typeof init.body === 'string') body = init.body;
    else if (init?.body instanceof URLSearchParams) body = init.body.toString();
    const res = await fetch(input, init);
    let note = '';
    if (!res.ok) {
      try {
        note = ` body=${(await res.clone().text()).slice(0, 400)}`;
      } catch {
        /* ignore */
      }
      const www = res.headers.get('www-authenticate');
      if (www) note += ` www-authenticate=${www}`;
    }
    const redacted = body
      .replace(/(refresh_token|code|code_verifier|password)=[^&]+/g, '$1=…')
      .replace(/"(password)":"[^"]*"/g, '"$1":"…"');
    const line = `${method} ${url} -> ${res.status}${redacted && !url.endsWith('/mcp') ? ` [${redacted.slice(0, 300)}]` : ''}${note}`;
    exchanges.push(line);
    log(`http: ${line}`);
    return res;
  };
}

class InMemoryOAuthProvider {
  constructor({ redirectUrl, user, password, screenshots, clientName }) {
    this._redirectUrl = redirectUrl;
    this.clientName = clientName;
    this.user = user;
    this.password = password;
    this.screenshots = screenshots;
    this._clientInformation = undefined;
    this._tokens = undefined;
    this._codeVerifier = undefined;
    this.savedTokens = []; // history of saveTokens() calls
    this.invalidations = [];
    this.authorizations = 0;
    this.callbackUrl = undefined;
    this.expectedState = undefined;
  }
  get redirectUrl() {
    return this._redirectUrl;
  }
  get clientMetadata() {
    return {
      client_name: this.clientName,
      redirect_uris: [this._redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() {
    this.expectedState = crypto.randomBytes(16).toString('base64url');
    return this.expectedState;
  }
  clientInformation() {
    return this._clientInformation;
  }
  saveClientInformation(info) {
    log(`saveClientInformation: client_id=${info.client_id} issuer=${info.issuer ?? '(none)'}`);
    this._clientInformation = info;
  }
  tokens() {
    return this._tokens;
  }
  saveTokens(tokens) {
    log(
      `saveTokens #${this.savedTokens.length + 1}: token_type=${tokens.token_type} expires_in=${tokens.expires_in} ` +
        `scope=${JSON.stringify(tokens.scope)} refresh_token=${tokens.refresh_token ? 'yes' : 'NO'} issuer=${tokens.issuer ?? '(none)'}`,
    );
    this._tokens = tokens;
    this.savedTokens.push(tokens);
  }
  async redirectToAuthorization(url) {
    this.authorizations++;
    log(`redirectToAuthorization #${this.authorizations}: ${url.href}`);
    if (this.authorizations > 1) {
      throw new Fail(
        `the SDK started authorization #${this.authorizations} (expected exactly one: the second call should have been served by a refresh)`,
      );
    }
    this.authorizationUrl = url;
    this.callbackUrl = await authorize(url.href, {
      username: this.user,
      password: this.password,
      screenshotDir: this.screenshots,
      log: (m) => log(`browser: ${m}`),
    });
  }
  saveCodeVerifier(v) {
    this._codeVerifier = v;
  }
  codeVerifier() {
    if (!this._codeVerifier) throw new Error('no code verifier saved');
    return this._codeVerifier;
  }
  invalidateCredentials(scope) {
    log(`invalidateCredentials(${scope}) called by the SDK (the server rejected stored credentials)`);
    this.invalidations.push(scope);
    if (scope === 'all' || scope === 'client') this._clientInformation = undefined;
    if (scope === 'all' || scope === 'tokens') this._tokens = undefined;
    if (scope === 'all' || scope === 'verifier') this._codeVerifier = undefined;
  }
}

async function whoami(client) {
  const res = await client.callTool({ name: 'whoami', arguments: {} });
  check(!res.isError, `whoami returned an error: ${JSON.stringify(res.content)}`);
  const text = res.content?.find((c) => c.type === 'text')?.text;
  check(text, `whoami returned no text content: ${JSON.stringify(res)}`);
  return JSON.parse(text);
}

async function connect(mcpUrl, provider, exchanges) {
  const client = new Client({ name: 'portcullis-interop-ts', version: '0.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: loggingFetch(exchanges) });
  await client.connect(transport);
  return { client, transport };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const timer = setTimeout(() => {
    console.error(`${NAME}: FAIL: overall timeout of ${o.timeout}s exceeded`);
    process.exit(1);
  }, o.timeout * 1000);
  timer.unref();

  const mcpUrl = o.mcpUrl;
  const origin = new URL(mcpUrl).origin;
  const callbackPort = await freePort();
  const redirectUrl = `http://127.0.0.1:${callbackPort}/callback`;
  const exchanges = [];
  const provider = new InMemoryOAuthProvider({
    redirectUrl,
    user: o.user,
    password: o.password,
    screenshots: o.screenshots,
    clientName: o.clientName,
  });

  // The issuer the MCP server names, to check the RFC 9207 `iss` in the authorization response.
  const prm = await (await fetch(`${origin}/.well-known/oauth-protected-resource/mcp`)).json();
  const issuer = prm.authorization_servers?.[0];
  check(issuer, `the MCP server's PRM has no authorization_servers: ${JSON.stringify(prm)}`);
  const statsBefore = await (await fetch(`${origin}/stats`)).json();

  // 1. connect without a token: 401 -> discovery -> registration -> browser.
  log(`step 1: connecting to ${mcpUrl} (callback ${redirectUrl})`);
  const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: loggingFetch(exchanges) });
  const firstClient = new Client({ name: 'portcullis-interop-ts', version: '0.0.0' });
  try {
    await firstClient.connect(first);
    throw new Fail('connected without authorization: the MCP server accepted a request with no token');
  } catch (e) {
    if (e instanceof Fail) throw e;
    if (!(e instanceof UnauthorizedError)) throw new Fail(`expected UnauthorizedError from the first connect, got: ${e.stack ?? e}`);
  }
  check(provider._clientInformation?.client_id, 'the SDK did not register a client (no saveClientInformation)');
  check(provider.callbackUrl, 'the browser did not reach the callback');

  // 2. check the authorization response, then exchange the code.
  const cb = new URL(provider.callbackUrl);
  check(!cb.searchParams.get('error'), `the authorization failed: ${provider.callbackUrl}`);
  const code = cb.searchParams.get('code');
  check(code, `no code in the callback URL: ${provider.callbackUrl}`);
  check(
    cb.searchParams.get('state') === provider.expectedState,
    `state mismatch: sent ${provider.expectedState}, got ${cb.searchParams.get('state')}`,
  );
  check(cb.searchParams.get('iss') === issuer, `RFC 9207 iss mismatch: expected ${issuer}, got ${cb.searchParams.get('iss')}`);
  const authzUrl = provider.authorizationUrl;
  log(
    `step 2: authorization response OK (state, iss); the SDK asked for scope=${JSON.stringify(authzUrl.searchParams.get('scope'))} ` +
      `resource=${JSON.stringify(authzUrl.searchParams.get('resource'))}; exchanging the code`,
  );
  await first.finishAuth(code);
  await firstClient.close().catch(() => {});
  check(provider.savedTokens.length === 1, `expected one token response after the code exchange, got ${provider.savedTokens.length}`);
  const t1 = provider.savedTokens[0];
  check(t1.refresh_token, 'the token response has no refresh_token (the client registered grant_types with refresh_token)');
  const at1 = decodeJwt(t1.access_token);
  log(`access token 1: header=${JSON.stringify(at1.header)} claims=${JSON.stringify(at1.payload)}`);
  check(at1.header.typ === 'at+jwt', `access token typ is ${at1.header.typ}, expected at+jwt`);
  check(at1.payload.aud === mcpUrl || (Array.isArray(at1.payload.aud) && at1.payload.aud.includes(mcpUrl)), `aud ${JSON.stringify(at1.payload.aud)} != ${mcpUrl}`);

  // 3. reconnect with the token and call the tool.
  log('step 3: reconnecting with the access token and calling whoami');
  const { client } = await connect(mcpUrl, provider, exchanges);
  const w1 = await whoami(client);
  log(`whoami #1: ${JSON.stringify(w1)}`);
  const subs = [o.user, ...o.expectSub];
  check(subs.includes(w1.sub), `whoami sub is ${JSON.stringify(w1.sub)}, expected one of ${JSON.stringify(subs)} (user ${o.user})`);
  check((w1.scope ?? '').split(' ').includes('mcp:tools'), `whoami scope ${JSON.stringify(w1.scope)} lacks mcp:tools`);

  // 4. wait for the access token to expire, then call again: the SDK must refresh.
  const waitMs = Math.max(0, at1.payload.exp * 1000 - Date.now()) + 1500;
  log(`step 4: waiting ${(waitMs / 1000).toFixed(1)}s for the access token to expire (exp=${at1.payload.exp})`);
  check(waitMs < 60_000, `the access token lives too long for this test (exp in ${waitMs / 1000}s; the resource was registered with --token-lifetime 4)`);
  await new Promise((r) => setTimeout(r, waitMs));
  const w2 = await whoami(client);
  log(`whoami #2: ${JSON.stringify(w2)}`);
  check(provider.authorizations === 1, `the SDK re-ran authorization (${provider.authorizations} times) instead of refreshing`);
  check(provider.savedTokens.length >= 2, 'the SDK saved no new tokens: no refresh happened');
  const t2 = provider.savedTokens[provider.savedTokens.length - 1];
  check(t2.access_token !== t1.access_token, 'the access token did not change after the refresh');
  check(t2.refresh_token, 'the refresh response carried no refresh_token (rotation expected)');
  check(t2.refresh_token !== t1.refresh_token, 'the refresh token was not rotated (same refresh_token returned)');
  check(w2.sub === w1.sub, `whoami #2 sub is ${JSON.stringify(w2.sub)}, expected ${JSON.stringify(w1.sub)} as before the refresh`);
  check(w2.jti !== w1.jti, 'whoami #2 ran with the same token jti as #1');

  const clientId = provider._clientInformation.client_id;
  const stats = await (await fetch(`${origin}/stats`)).json();
  const mine = stats.by_client?.[clientId]?.distinct_jti ?? 0;
  log(`MCP server stats: this client ${mine} distinct jti; total ${stats.distinct_jti} (was ${statsBefore.distinct_jti})`);
  check(mine >= 2, `the MCP server saw ${mine} distinct token(s) for client ${clientId}, expected >= 2`);
  check(provider.invalidations.length === 0, `the SDK invalidated credentials: ${provider.invalidations.join(', ')}`);
  if (o.expectMode) {
    check(stats.mode === o.expectMode, `the MCP server checks tokens by ${JSON.stringify(stats.mode)}, expected ${JSON.stringify(o.expectMode)}`);
    if (o.expectMode === 'introspect') {
      log(`MCP server introspection counters: ${JSON.stringify(stats.introspection)}`);
      check(
        (stats.introspection?.active ?? 0) >= 2,
        `the MCP server got ${stats.introspection?.active ?? 0} active introspection answer(s), expected >= 2 (one per access token)`,
      );
    }
  }

  if (o.tokensOut) {
    const meta = await (await fetch(`${issuer.replace(/\/$/, '')}/.well-known/oauth-authorization-server`)).json();
    const state = {
      issuer,
      token_endpoint: meta.token_endpoint,
      introspection_endpoint: meta.introspection_endpoint,
      mcp_url: mcpUrl,
      client_id: clientId,
      client_name: o.clientName,
      sub: w1.sub,
      tokens: t2,
      written_at: Math.floor(Date.now() / 1000),
    };
    fs.writeFileSync(o.tokensOut, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
    log(`wrote the final tokens to ${o.tokensOut}`);
  }

  await client.close().catch(() => {});
  log(`PASS: registered ${clientId}, authorized in the browser, called whoami as ${o.user} (sub ${w1.sub}), refreshed with rotation`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`${NAME}: FAIL: ${e instanceof Fail ? e.message : e?.stack ?? e}`);
    process.exit(1);
  },
);
