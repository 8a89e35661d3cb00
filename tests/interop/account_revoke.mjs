#!/usr/bin/env node
// Interop test: a person revokes an app on Portcullis's /account page, and the app's tokens
// stop working at once.
//
// Input: the JSON that `ts_client.mjs --tokens-out FILE` wrote after a complete flow (client_id,
// issuer, token endpoint, MCP URL, the last tokens). Steps:
//   1. headless chromium opens {issuer}/account, is sent to the login page, signs in, comes
//      back to /account; the app (section "CLIENT_NAME on ...", with the MCP URL) is listed
//      exactly once; screenshots account-390.png and account-1280.png (full page);
//   2. plain HTTP: a refresh (POST /token grant_type=refresh_token) gets a fresh access token,
//      introspection says active:true and the MCP server accepts it: the "after" checks below
//      cannot pass merely because the token expired;
//   3. clicks "Revoke access" in the app's form; the page says "Access revoked" and no longer
//      lists the app;
//   4. plain HTTP, before that access token's exp: introspection reads {"active":false}
//      (when introspection credentials for the token's audience were given) and the MCP
//      server answers 401; then the refresh token is refused with 400 {"error":"invalid_grant"}.
//
// Usage: node account_revoke.mjs --tokens FILE --user NAME --password PW [--out DIR] [--flow DIR]
//   Introspection credentials (for the MCP server the grant is for) via env
//   INTEROP_INTROSPECTION_CLIENT_ID / INTEROP_INTROSPECTION_CLIENT_SECRET; without them,
//   check (b) is skipped with a note. DIR: where account-*.png go (default out/screenshots);
//   --flow: where step screenshots go (default out/flow/account).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchBrowser } from './browser.mjs';

const NAME = 'account_revoke';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const t0 = Date.now();
const log = (m) => console.log(`${NAME} [+${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);
class Fail extends Error {}
const check = (c, m) => {
  if (!c) throw new Fail(m);
};
const nowS = () => Date.now() / 1000;

function parseArgs(argv) {
  const o = {
    tokens: undefined,
    user: process.env.INTEROP_USER,
    password: process.env.INTEROP_PASSWORD,
    out: path.join(HERE, 'out', 'screenshots'),
    flow: path.join(HERE, 'out', 'flow', 'account'),
    rsId: process.env.INTEROP_INTROSPECTION_CLIENT_ID,
    rsSecret: process.env.INTEROP_INTROSPECTION_CLIENT_SECRET,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--tokens') o.tokens = v();
    else if (a === '--user') o.user = v();
    else if (a === '--password') o.password = v();
    else if (a === '--out') o.out = v();
    else if (a === '--flow') o.flow = v();
    else throw new Fail(`unknown argument ${a}`);
  }
  if (!o.tokens || !o.user || o.password === undefined) {
    throw new Fail('usage: node account_revoke.mjs --tokens FILE --user NAME --password PW [--out DIR] [--flow DIR]');
  }
  return o;
}

// Plain HTTP with a transcript line for error reports (secrets redacted).
const transcript = [];
async function http(method, url, { headers = {}, form, json } = {}) {
  const init = { method, headers: { ...headers }, redirect: 'manual' };
  let shown = '';
  if (form) {
    init.body = new URLSearchParams(form);
    init.headers['content-type'] = 'application/x-www-form-urlencoded';
    shown = new URLSearchParams(
      Object.fromEntries(Object.entries(form).map(([k, val]) => [k, /token|secret/.test(k) ? `${String(val).slice(0, 8)}…` : val])),
    ).toString();
  } else if (json) {
    init.body = JSON.stringify(json);
    init.headers['content-type'] = 'application/json';
    shown = init.body.slice(0, 200);
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
  const line =
    `${method} ${url}${shown ? ` [${shown}]` : ''}${init.headers.authorization ? ' (with Authorization)' : ''} -> ` +
    `${res.status} ${text.replace(/"(access_token|refresh_token)":"[^"]*"/g, '"$1":"…"').slice(0, 400)}` +
    `${www ? ` www-authenticate=${www}` : ''}`;
  transcript.push(line);
  log(`http: ${line}`);
  return { status: res.status, text, body, headers: res.headers };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const st = JSON.parse(fs.readFileSync(o.tokens, 'utf8'));
  const issuer = st.issuer.replace(/\/$/, '');
  const tokenEndpoint = st.token_endpoint ?? `${issuer}/token`;
  const introspectionEndpoint = st.introspection_endpoint ?? `${issuer}/introspect`;
  check(st.client_id && st.tokens?.refresh_token && st.client_name && st.mcp_url, `incomplete tokens file ${o.tokens}`);
  fs.mkdirSync(o.out, { recursive: true });
  fs.mkdirSync(o.flow, { recursive: true });
  const warnings = [];
  let rt = st.tokens.refresh_token;

  const introspect = async (token) => {
    const basic = Buffer.from(`${encodeURIComponent(o.rsId)}:${encodeURIComponent(o.rsSecret)}`).toString('base64');
    return http('POST', introspectionEndpoint, { headers: { authorization: `Basic ${basic}` }, form: { token } });
  };
  const mcpCall = (token) =>
    http('POST', st.mcp_url, {
      headers: { authorization: `Bearer ${token}`, accept: 'application/json, text/event-stream' },
      json: {
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'account-revoke', version: '0' } },
      },
    });
  const decodeJwt = (t) => JSON.parse(Buffer.from(t.split('.')[1], 'base64url'));
  const aud1 = decodeJwt(st.tokens.access_token).aud;
  const canIntrospect = Boolean(o.rsId && o.rsSecret) && (aud1 === st.mcp_url || (Array.isArray(aud1) && aud1.includes(st.mcp_url)));
  if (!canIntrospect) log('NOTE: no introspection credentials for this grant\'s MCP server: check (b) is skipped');

  const browser = await launchBrowser();
  let page;
  let shot = 0;
  const flowShot = async (name) => {
    shot++;
    await page.screenshot({ path: path.join(o.flow, `${String(shot).padStart(2, '0')}-${name}.png`), fullPage: true }).catch(() => {});
  };
  try {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    page = await context.newPage();
    page.setDefaultTimeout(20_000);
    try {
      // 1. /account -> login -> /account.
      const accountUrl = `${issuer}/account`;
      log(`opening ${accountUrl}`);
      await page.goto(accountUrl, { waitUntil: 'load' });
      check(
        (await page.locator('input[name=username]').count()) > 0 && (await page.locator('input[name=password]').count()) > 0,
        `GET /account without a session did not lead to a login form (at ${page.url()})`,
      );
      log(`login page at ${page.url()}: signing in as ${o.user}`);
      await flowShot('login');
      await page.locator('input[name=username]').fill(o.user);
      await page.locator('input[name=password]').fill(o.password);
      const loginForm = page.locator('form', { has: page.locator('input[name=password]') });
      await Promise.all([
        page.waitForURL((u) => u.pathname.endsWith('/account'), { waitUntil: 'load' }),
        loginForm.locator('button[type=submit], input[type=submit], button:not([type])').first().click(),
      ]).catch(async (e) => {
        throw new Fail(`signing in did not lead back to /account (${e.message.split('\n')[0]}; at ${page.url()}: ${(await page.locator('body').innerText()).slice(0, 300)})`);
      });
      log(`back at ${page.url()}`);

      const apps = page.locator('section.connected-app');
      const all = await apps.evaluateAll((els) => els.map((e) => e.getAttribute('aria-label')));
      log(`connected apps listed: ${JSON.stringify(all)}`);
      const mine = apps.filter({ hasText: st.client_name }).filter({ hasText: st.mcp_url });
      check(
        (await mine.count()) === 1,
        `expected exactly one connected app named ${JSON.stringify(st.client_name)} for ${st.mcp_url}, found ${await mine.count()} (listed: ${JSON.stringify(all)})`,
      );
      const revokeButton = mine.locator('form button[type=submit]', { hasText: 'Revoke access' });
      check((await revokeButton.count()) === 1, 'the app has no "Revoke access" button');
      const grantId = await mine.locator('input[type=hidden][name=grant_id]').getAttribute('value');
      check(grantId, 'the app\'s revoke form has no hidden grant_id');
      log(`the app is listed: ${JSON.stringify(await mine.getAttribute('aria-label'))}, grant_id ${grantId}`);

      for (const [width, height] of [
        [390, 844],
        [1280, 900],
      ]) {
        await page.setViewportSize({ width, height });
        const file = path.join(o.out, `account-${width}.png`);
        await page.screenshot({ path: file, fullPage: true });
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        if (overflow > 0) warnings.push(`the account page at ${width}px overflows horizontally by ${overflow}px`);
        log(`wrote ${file}`);
      }

      // 2. a fresh access token, alive for the checks after the revocation.
      const r1 = await http('POST', tokenEndpoint, { form: { grant_type: 'refresh_token', refresh_token: rt, client_id: st.client_id } });
      check(r1.status === 200 && r1.body?.access_token, `the refresh before revoking failed: HTTP ${r1.status} ${r1.text.slice(0, 300)}`);
      const at = r1.body.access_token;
      if (r1.body.refresh_token) rt = r1.body.refresh_token;
      const exp = decodeJwt(at).exp;
      log(`fresh access token, exp in ${(exp - nowS()).toFixed(1)}s`);
      if (canIntrospect) {
        const i1 = await introspect(at);
        check(i1.status === 200 && i1.body?.active === true, `introspection of the fresh access token before revoking: HTTP ${i1.status} ${i1.text}, expected active:true`);
      }
      const m1 = await mcpCall(at);
      check(m1.status === 200, `the MCP server refused the fresh access token before revoking: HTTP ${m1.status}`);

      // 3. revoke.
      log('clicking "Revoke access"');
      await Promise.all([
        page.waitForURL((u) => u.pathname.endsWith('/account') && u.search.includes('revoked'), { waitUntil: 'load' }),
        revokeButton.click(),
      ]).catch(async (e) => {
        throw new Fail(`revoking did not lead to /account?revoked=… (${e.message.split('\n')[0]}; at ${page.url()}: ${(await page.locator('body').innerText()).slice(0, 300)})`);
      });
      const revokedAt = nowS();
      await flowShot('revoked');
      const text = await page.locator('body').innerText();
      check(/Access revoked/.test(text), `the page after revoking does not say "Access revoked": ${text.slice(0, 300)}`);
      const left = await page.locator('section.connected-app').filter({ hasText: st.client_name }).filter({ hasText: st.mcp_url }).count();
      check(left === 0, `the app is still listed after revoking (${left})`);
      check(
        (await page.locator(`input[name=grant_id][value="${grantId}"]`).count()) === 0,
        `grant ${grantId} is still on the page after revoking`,
      );
      log(`the page says "Access revoked" and no longer lists the app (${(exp - revokedAt).toFixed(1)}s before the access token's exp)`);

      // 4. the tokens are dead, and not merely because the access token expired.
      if (canIntrospect) {
        const i2 = await introspect(at);
        const when = nowS();
        check(i2.status === 200, `introspection after revoking: HTTP ${i2.status} ${i2.text}`);
        check(
          i2.body?.active === false,
          `(b) introspection of the access token after the grant was revoked reads ${i2.text}, expected {"active":false}`,
        );
        if (Object.keys(i2.body).length !== 1) warnings.push(`inactive introspection answer has more than "active": ${i2.text}`);
        check(when < exp, `inconclusive: the access token had expired (exp ${exp}, checked at ${when.toFixed(1)}) before introspection could tell revoked from expired`);
        log('(b) introspection after revoking: {"active":false} while the token was not yet expired');
      }
      const m2 = await mcpCall(at);
      const when2 = nowS();
      if (canIntrospect) {
        check(m2.status === 401, `the introspecting MCP server still accepts the revoked grant's access token: HTTP ${m2.status}`);
        if (when2 >= exp) warnings.push('the MCP server check after revoking ran after the token expired');
        else log('the introspecting MCP server refuses the access token at once (401)');
      } else {
        log(`the MCP server answered ${m2.status} (a JWT-verifying server may accept a revoked grant's token until it expires)`);
      }
      const r2 = await http('POST', tokenEndpoint, { form: { grant_type: 'refresh_token', refresh_token: rt, client_id: st.client_id } });
      check(
        r2.status === 400 && r2.body?.error === 'invalid_grant',
        `(a) refresh after revoking: HTTP ${r2.status} ${r2.text.slice(0, 300)}, expected 400 {"error":"invalid_grant"}`,
      );
      log('(a) refresh after revoking: 400 invalid_grant');
    } catch (e) {
      await flowShot('failure');
      throw e;
    }
  } finally {
    await browser.close().catch(() => {});
  }
  for (const w of warnings) console.log(`${NAME}: WARN: ${w}`);
  log(`PASS: revoked ${st.client_name} (${st.client_id}) on /account; refresh refused${canIntrospect ? ', introspection inactive, MCP server 401' : ''}`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`${NAME}: FAIL: ${e instanceof Fail ? e.message : e?.stack ?? e}`);
    if (transcript.length) console.error(`${NAME}: HTTP transcript:\n  ${transcript.join('\n  ')}`);
    process.exit(1);
  },
);
