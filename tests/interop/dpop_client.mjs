#!/usr/bin/env node
// Interop test: DPoP (RFC 9449, SEP-1932) with the official TypeScript SDK v2
// (`@modelcontextprotocol/client`) and its `DpopSession`. Given only the MCP server URL, the SDK
// registers, runs the browser flow (login, consent), redeems the code with a DPoP proof, calls
// `whoami` on an MCP server that checks the proof and `cnf.jkt`, waits for the access token to
// expire and calls again, which must refresh with a proof by the same key. Then the same access
// token, copied and sent as a plain bearer token, must be refused by the MCP server.
//
// Usage: node dpop_client.mjs --mcp-url URL --user NAME --password PW [--screenshots DIR]
//   (or env MCP_URL, INTEROP_USER, INTEROP_PASSWORD, INTEROP_SCREENSHOTS)
// Exit status 0 on success; non-zero with "dpop_client: FAIL: ..." otherwise.
import crypto from 'node:crypto';
import { Client, DpopSession, StreamableHTTPClientTransport, UnauthorizedError } from '@modelcontextprotocol/client';
import { authorize } from './browser.mjs';
import { Fail, check, decodeJwt, getJson, loggingFetch, makeLog, run, tokenRequests, whoami } from './sdk2_common.mjs';

const NAME = 'dpop_client';
const log = makeLog(NAME);

function parseArgs(argv) {
  const o = {
    mcpUrl: process.env.MCP_URL,
    user: process.env.INTEROP_USER,
    password: process.env.INTEROP_PASSWORD,
    screenshots: process.env.INTEROP_SCREENSHOTS,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--mcp-url') o.mcpUrl = v();
    else if (a === '--user') o.user = v();
    else if (a === '--password') o.password = v();
    else if (a === '--screenshots') o.screenshots = v();
    else throw new Fail(`unknown argument ${a}`);
  }
  check(o.mcpUrl && o.user && o.password !== undefined, 'usage: node dpop_client.mjs --mcp-url URL --user NAME --password PW');
  return o;
}

/** An interactive public client whose tokens are DPoP-bound to one session key. */
class DpopOAuthProvider {
  constructor({ redirectUrl, user, password, screenshots, session }) {
    Object.assign(this, { _redirectUrl: redirectUrl, user, password, screenshots, session });
    this.savedTokens = [];
    this.authorizations = 0;
    this.invalidations = [];
  }
  get redirectUrl() {
    return this._redirectUrl;
  }
  get clientMetadata() {
    return {
      client_name: 'Portcullis interop (SDK v2, DPoP)',
      redirect_uris: [this._redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      dpop_bound_access_tokens: true,
    };
  }
  dpop() {
    return this.session;
  }
  state() {
    this.expectedState = crypto.randomBytes(16).toString('base64url');
    return this.expectedState;
  }
  clientInformation() {
    return this._clientInformation;
  }
  saveClientInformation(info) {
    log(`saveClientInformation: client_id=${info.client_id}`);
    this._clientInformation = info;
  }
  tokens() {
    return this._tokens;
  }
  saveTokens(tokens) {
    log(`saveTokens #${this.savedTokens.length + 1}: token_type=${tokens.token_type} refresh_token=${tokens.refresh_token ? 'yes' : 'NO'}`);
    this._tokens = tokens;
    this.savedTokens.push(tokens);
  }
  async redirectToAuthorization(url) {
    this.authorizations++;
    log(`redirectToAuthorization #${this.authorizations}: ${url.href}`);
    check(this.authorizations === 1, `the SDK started authorization #${this.authorizations}: the second call should have been a refresh`);
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
    log(`invalidateCredentials(${scope}) called by the SDK`);
    this.invalidations.push(scope);
    if (scope === 'all' || scope === 'tokens') this._tokens = undefined;
  }
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const origin = new URL(o.mcpUrl).origin;
  const prm = await getJson(`${origin}/.well-known/oauth-protected-resource/mcp`);
  const issuer = prm.authorization_servers?.[0];
  const meta = await getJson(`${issuer.replace(/\/$/, '')}/.well-known/oauth-authorization-server`);
  check(
    Array.isArray(meta.dpop_signing_alg_values_supported) && meta.dpop_signing_alg_values_supported.includes('ES256'),
    `the AS metadata lacks dpop_signing_alg_values_supported: ${JSON.stringify(meta.dpop_signing_alg_values_supported)}`,
  );
  const session = await DpopSession.create({ alg: 'ES256' });
  const exchanges = [];
  const fetchFn = loggingFetch(exchanges, log);
  const provider = new DpopOAuthProvider({
    redirectUrl: 'http://127.0.0.1:33419/callback',
    user: o.user,
    password: o.password,
    screenshots: o.screenshots,
    session,
  });

  // 1. No token: 401, discovery, registration, the browser.
  const first = new StreamableHTTPClientTransport(new URL(o.mcpUrl), { authProvider: provider, fetch: fetchFn });
  try {
    await new Client({ name: NAME, version: '0.0.0' }).connect(first);
    throw new Fail('connected without a token');
  } catch (e) {
    if (e instanceof Fail) throw e;
    check(e instanceof UnauthorizedError, `expected UnauthorizedError from the first connect, got: ${e?.stack ?? e}`);
  }
  check(provider.callbackUrl, 'the browser did not reach the callback');

  // 2. The code, redeemed with a proof: a DPoP token bound to the session's key.
  await first.finishAuth(new URL(provider.callbackUrl).searchParams);
  const t1 = provider.savedTokens[0];
  check(t1, 'no tokens after the code exchange');
  check(String(t1.token_type).toLowerCase() === 'dpop', `token_type ${t1.token_type}, expected DPoP`);
  const at1 = decodeJwt(t1.access_token).payload;
  check(at1.cnf?.jkt === session.thumbprint, `cnf.jkt ${at1.cnf?.jkt} is not the session key's ${session.thumbprint}`);
  const codeRequest = tokenRequests(exchanges, meta.token_endpoint).find((x) => x.form.grant_type === 'authorization_code');
  check(codeRequest?.status === 200, 'no successful code redemption recorded');

  // 3. The MCP server checks the proof and cnf.jkt.
  const client = new Client({ name: NAME, version: '0.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(o.mcpUrl), { authProvider: provider, fetch: fetchFn }));
  const w1 = await whoami(client);
  log(`whoami #1: ${JSON.stringify(w1)}`);
  check(w1.cnf_jkt === session.thumbprint, `the MCP server saw cnf_jkt ${w1.cnf_jkt}`);
  check(exchanges.some((x) => x.url === o.mcpUrl && x.auth === 'DPoP' && x.status === 200), 'no MCP request went out with the DPoP scheme');

  // 4. After expiry: a refresh with a proof by the same key (the refresh token is bound).
  const waitMs = Math.max(0, at1.exp * 1000 - Date.now()) + 1500;
  check(waitMs < 60_000, `the access token lives too long for this test (${waitMs / 1000}s)`);
  log(`waiting ${(waitMs / 1000).toFixed(1)}s for the access token to expire`);
  await new Promise((r) => setTimeout(r, waitMs));
  const w2 = await whoami(client);
  log(`whoami #2: ${JSON.stringify(w2)}`);
  check(provider.authorizations === 1, 'the SDK re-ran authorization instead of refreshing');
  const t2 = provider.savedTokens.at(-1);
  check(provider.savedTokens.length >= 2 && t2.refresh_token !== t1.refresh_token, 'no rotated refresh happened');
  check(String(t2.token_type).toLowerCase() === 'dpop', `refreshed token_type ${t2.token_type}`);
  check(decodeJwt(t2.access_token).payload.cnf?.jkt === session.thumbprint, 'the refreshed token is bound to another key');
  check(w2.jti !== w1.jti && w2.cnf_jkt === session.thumbprint, 'whoami #2 did not run with the refreshed, bound token');

  // 5. The token copied and sent as a bearer token is worth nothing.
  const stolen = await fetch(o.mcpUrl, {
    method: 'POST',
    headers: { authorization: `Bearer ${t2.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
  check(stolen.status === 401, `the MCP server accepted a DPoP-bound token as Bearer (status ${stolen.status})`);
  const stats = await getJson(`${origin}/stats`);
  check(stats.dpop_accepted_requests >= 2, `the MCP server accepted ${stats.dpop_accepted_requests} DPoP requests, expected >= 2`);
  check(provider.invalidations.length === 0, `the SDK invalidated credentials: ${provider.invalidations.join(', ')}`);
  await client.close().catch(() => {});
  log(`PASS: DPoP-bound tokens (jkt ${session.thumbprint}) through login, consent, whoami, refresh; a copied token refused`);
}

run(NAME, 150, main);
