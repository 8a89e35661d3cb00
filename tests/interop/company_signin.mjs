#!/usr/bin/env node
// Interop test: company sign-in. Portcullis is configured with the company's IdP
// (company_idp.mjs, node-oidc-provider) as `[[identity_providers]] id = "company"`, and its MCP
// server allows only the group `mcp-users`. Headless chromium and the MCP TypeScript SDK:
//
//   1. screenshots: Portcullis's login page shows the password form and a "Sign in with Company"
//      link to {issuer}/login/company?request_id=...: login-company-390.png, login-company-1280.png;
//   2. carol (groups mcp-users, staff): the SDK, given only the MCP URL, discovers, registers and
//      opens the authorization URL; the browser clicks "Sign in with Company", signs in at the
//      provider and allows, comes back to Portcullis, approves consent; the upstream request is
//      checked (code, PKCE S256, state, nonce, the registered redirect URI, openid + groups);
//      the SDK exchanges the code (state and RFC 9207 iss checked) and calls `whoami`;
//   3. dave (groups staff) in a fresh browser: after the provider, Portcullis answers 403 with a
//      page saying the MCP server is limited to certain groups, no consent page and no code
//      reaches the client: company-refused-390.png, company-refused-1280.png;
//   4. carol's refresh token works (a refresh with rotation), and her browser has a Portcullis
//      session (/account shows her connected app);
//   5. carol signs out at the provider ("Yes, sign me out" at its end_session_endpoint); the
//      provider POSTs a logout_token to {issuer}/login/company/backchannel-logout and Portcullis
//      must answer 200; then her refresh token gets 400 invalid_grant and /account asks her to
//      sign in again;
//   6. carol signs in again in a new browser: the same Portcullis person (`sub`), linked by the
//      provider's `sub`.
//
// Usage: node company_signin.mjs --issuer PORTCULLIS --mcp-url URL --idp-issuer URL
//          [--provider-id company] [--provider-name Company] [--resource-name NAME]
//          [--out DIR] [--flow DIR]
//   Passwords from env COMPANY_IDP_CAROL_PASSWORD, COMPANY_IDP_DAVE_PASSWORD.
// Exit 0 on success; "company_signin: FAIL: ..." with the browser's navigation trail or the HTTP
// exchange otherwise.
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { launchBrowser } from './browser.mjs';
import { Fail, check, recordNavigation, drive, idpHandlers, idpSignOut, describe, pageText } from './company_browser.mjs';

const NAME = 'company_signin';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const t0 = Date.now();
const log = (m) => console.log(`${NAME} [+${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);
const WIDTHS = [
  [390, 844],
  [1280, 900],
];
const PLAIN_REDIRECT = 'http://127.0.0.1:9/company-callback'; // never listened on: intercepted

function parseArgs(argv) {
  const o = {
    issuer: process.env.COMPANY_PORTCULLIS_ISSUER,
    mcpUrl: process.env.COMPANY_MCP_URL,
    idpIssuer: process.env.COMPANY_IDP_ISSUER,
    providerId: 'company',
    providerName: 'Company',
    resourceName: 'Company MCP server',
    passwords: { carol: process.env.COMPANY_IDP_CAROL_PASSWORD, dave: process.env.COMPANY_IDP_DAVE_PASSWORD },
    out: path.join(HERE, 'out', 'screenshots'),
    flow: path.join(HERE, 'out', 'flow', 'company'),
    timeout: 240,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--issuer') o.issuer = v();
    else if (a === '--mcp-url') o.mcpUrl = v();
    else if (a === '--idp-issuer') o.idpIssuer = v();
    else if (a === '--provider-id') o.providerId = v();
    else if (a === '--provider-name') o.providerName = v();
    else if (a === '--resource-name') o.resourceName = v();
    else if (a === '--out') o.out = v();
    else if (a === '--flow') o.flow = v();
    else if (a === '--timeout') o.timeout = Number(v());
    else throw new Fail(`unknown argument ${a}`);
  }
  if (!o.issuer || !o.mcpUrl || !o.idpIssuer || !o.passwords.carol || !o.passwords.dave) {
    throw new Fail(
      'usage: node company_signin.mjs --issuer PORTCULLIS --mcp-url URL --idp-issuer URL [--out DIR] [--flow DIR] ' +
        '(env COMPANY_IDP_CAROL_PASSWORD, COMPANY_IDP_DAVE_PASSWORD)',
    );
  }
  o.issuer = o.issuer.replace(/\/$/, '');
  o.idpIssuer = o.idpIssuer.replace(/\/$/, '');
  return o;
}

const originOf = (u) => {
  try {
    return new URL(u).origin;
  } catch {
    return '';
  }
};

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

// Plain HTTP with a transcript for error reports (tokens shortened).
const transcript = [];
async function http(method, url, { headers = {}, form, json } = {}) {
  const init = { method, headers: { ...headers }, redirect: 'manual' };
  let shown = '';
  if (form) {
    init.body = new URLSearchParams(form);
    init.headers['content-type'] = 'application/x-www-form-urlencoded';
    shown = new URLSearchParams(
      Object.fromEntries(Object.entries(form).map(([k, val]) => [k, /token|secret|code/.test(k) ? `${String(val).slice(0, 8)}…` : val])),
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
  const line = `${method} ${url}${shown ? ` [${shown}]` : ''} -> ${res.status} ${text.replace(/"(access_token|refresh_token|id_token|registration_access_token)":"[^"]*"/g, '"$1":"…"').slice(0, 400)}`;
  transcript.push(line);
  log(`http: ${line}`);
  return { status: res.status, text, body, headers: res.headers };
}

/** The pieces of Portcullis's login page this contract names. */
function providerEntry(page, providerName) {
  const label = `Sign in with ${providerName}`;
  return {
    link: page.getByRole('link', { name: label, exact: true }),
    button: page.getByRole('button', { name: label, exact: true }),
    label,
  };
}

/** Finds the provider entry on the current page: the link (contract) or else a button. */
async function findProviderEntry(page, o) {
  const e = providerEntry(page, o.providerName);
  if ((await e.link.count()) === 1) return { kind: 'link', locator: e.link, href: await e.link.getAttribute('href') };
  if ((await e.button.count()) === 1) return { kind: 'button', locator: e.button };
  return undefined;
}

/** Checks the provider link leads to {issuer}/login/{id}?request_id=... */
function checkProviderHref(href, page, o) {
  const u = new URL(href, page.url());
  const want = new URL(`${o.issuer}/login/${o.providerId}`);
  check(
    u.origin === want.origin && u.pathname === want.pathname && u.searchParams.get('request_id'),
    `the "Sign in with ${o.providerName}" link goes to ${u.href}, expected ${want.href}?request_id=... (contract: GET /login/{id}?request_id=R)`,
  );
  return u;
}

// Handlers for Portcullis's own pages.
function portcullisHandlers(o) {
  const at = (page) => originOf(page.url()) === originOf(o.issuer);
  return [
    {
      name: 'portcullis-login',
      match: async (page) => at(page) && (await findProviderEntry(page, o)) !== undefined,
      act: async (page) => {
        const entry = await findProviderEntry(page, o);
        if (entry.kind === 'link') checkProviderHref(entry.href, page, o);
        await entry.locator.click({ noWaitAfter: true });
      },
    },
    {
      name: 'portcullis-consent',
      match: async (page) => at(page) && (await page.locator('button[name=decision][value=approve]').count()) > 0,
      act: async (page) => page.locator('button[name=decision][value=approve]').first().click({ noWaitAfter: true }),
    },
  ];
}

/** A browser context whose requests to `redirectUri` are answered here and recorded. */
async function contextCapturing(browser, redirectUri, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const t = new URL(redirectUri);
  const prefix = `${t.origin}${t.pathname}`;
  const captured = { url: undefined };
  const matches = (u) => `${u.origin}${u.pathname}` === prefix;
  // The request event sees the callback even when it is the target of a redirect, which
  // Playwright's route handlers are not called for; the route answers the direct cases.
  context.on('request', (req) => {
    if (!captured.url && matches(new URL(req.url()))) captured.url = req.url();
  });
  await context.route(matches, async (route) => {
    if (!captured.url) captured.url = route.request().url();
    await route.fulfill({ status: 200, contentType: 'text/plain', body: 'interop rig: callback captured' });
  });
  return { context, captured };
}

/** Records the upstream authorization requests Portcullis sends the browser to. */
function watchUpstream(page, idpAuthorize) {
  const seen = [];
  page.on('request', (req) => {
    if (req.isNavigationRequest() && req.url().startsWith(idpAuthorize) && new URL(req.url()).pathname === new URL(idpAuthorize).pathname) {
      seen.push(new URL(req.url()));
    }
  });
  return seen;
}

function checkUpstreamRequest(u, o) {
  const p = u.searchParams;
  const problems = [];
  const want = {
    response_type: 'code',
    client_id: 'portcullis',
    redirect_uri: `${o.issuer}/login/${o.providerId}/callback`,
    code_challenge_method: 'S256',
  };
  for (const [k, v] of Object.entries(want)) if (p.get(k) !== v) problems.push(`${k}=${JSON.stringify(p.get(k))} (expected ${JSON.stringify(v)})`);
  if (!/^[A-Za-z0-9_-]{43}$/.test(p.get('code_challenge') ?? '')) problems.push(`code_challenge=${JSON.stringify(p.get('code_challenge'))} is not a base64url SHA-256`);
  if ((p.get('state') ?? '').length < 16) problems.push(`state=${JSON.stringify(p.get('state'))} (missing or too short)`);
  if ((p.get('nonce') ?? '').length < 16) problems.push(`nonce=${JSON.stringify(p.get('nonce'))} (missing or too short)`);
  const scopes = (p.get('scope') ?? '').split(' ');
  for (const s of ['openid', 'groups']) if (!scopes.includes(s)) problems.push(`scope ${JSON.stringify(p.get('scope'))} lacks ${s}`);
  check(problems.length === 0, `Portcullis's upstream authorization request ${u.href} breaks the contract: ${problems.join('; ')}`);
}

class SdkAuth {
  constructor({ redirectUrl, authorize }) {
    this._redirectUrl = redirectUrl;
    this.authorizeInBrowser = authorize;
    this._clientInformation = undefined;
    this._tokens = undefined;
    this._codeVerifier = undefined;
    this.savedTokens = [];
    this.authorizations = 0;
    this.invalidations = [];
  }
  get redirectUrl() {
    return this._redirectUrl;
  }
  get clientMetadata() {
    return {
      client_name: 'Portcullis interop (company sign-in)',
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
    log(`SDK registered client_id=${info.client_id}`);
    this._clientInformation = info;
  }
  tokens() {
    return this._tokens;
  }
  saveTokens(t) {
    log(`SDK saveTokens #${this.savedTokens.length + 1}: expires_in=${t.expires_in} scope=${JSON.stringify(t.scope)} refresh_token=${t.refresh_token ? 'yes' : 'NO'}`);
    this._tokens = t;
    this.savedTokens.push(t);
  }
  async redirectToAuthorization(url) {
    this.authorizations++;
    check(this.authorizations === 1, `the SDK started authorization #${this.authorizations}`);
    this.authorizationUrl = url;
    this.callbackUrl = await this.authorizeInBrowser(url.href);
  }
  saveCodeVerifier(v) {
    this._codeVerifier = v;
  }
  codeVerifier() {
    return this._codeVerifier;
  }
  invalidateCredentials(scope) {
    this.invalidations.push(scope);
  }
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const timer = setTimeout(() => {
    console.error(`${NAME}: FAIL: overall timeout of ${o.timeout}s exceeded`);
    process.exit(1);
  }, o.timeout * 1000);
  timer.unref();
  fs.mkdirSync(o.out, { recursive: true });
  fs.mkdirSync(o.flow, { recursive: true });
  const warnings = [];

  const asMeta = await (await fetch(`${o.issuer}/.well-known/oauth-authorization-server`)).json();
  const idpMeta = await (await fetch(`${o.idpIssuer}/.well-known/openid-configuration`)).json();
  check(idpMeta.issuer === o.idpIssuer, `the provider's discovery says issuer ${idpMeta.issuer}`);
  const tokenEndpoint = asMeta.token_endpoint ?? `${o.issuer}/token`;

  // A plain public client (dynamic registration) for the screenshots and dave's attempt.
  const reg = await http('POST', asMeta.registration_endpoint ?? `${o.issuer}/register`, {
    json: { redirect_uris: [PLAIN_REDIRECT], token_endpoint_auth_method: 'none', client_name: 'Company sign-in check' },
  });
  check((reg.status === 201 || reg.status === 200) && reg.body?.client_id, `dynamic registration failed: ${reg.status} ${reg.text.slice(0, 300)}`);
  const plainClient = reg.body.client_id;
  let plainVerifier;
  const plainAuthorizeUrl = () => {
    const verifier = crypto.randomBytes(32).toString('base64url');
    plainVerifier = verifier;
    const u = new URL(asMeta.authorization_endpoint ?? `${o.issuer}/authorize`);
    u.search = new URLSearchParams({
      response_type: 'code',
      client_id: plainClient,
      redirect_uri: PLAIN_REDIRECT,
      state: crypto.randomBytes(12).toString('base64url'),
      code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
      scope: 'mcp:tools',
      resource: o.mcpUrl,
    }).toString();
    return u.href;
  };

  const browser = await launchBrowser();
  try {
    // 1. the login page with the provider, at both widths.
    for (const [width, height] of WIDTHS) {
      const { context, captured } = await contextCapturing(browser, PLAIN_REDIRECT, { width, height });
      const page = await context.newPage();
      page.setDefaultTimeout(20_000);
      const rec = recordNavigation(page);
      await page.goto(plainAuthorizeUrl(), { waitUntil: 'load' });
      check(!captured.url, `at ${width}px /authorize without a session went straight to the client: ${captured.url}`);
      const entry = await findProviderEntry(page, o);
      check(entry, `at ${width}px the login page has no "Sign in with ${o.providerName}" link\n${await describe(page, rec)}`);
      check(await entry.locator.isVisible(), `at ${width}px the "Sign in with ${o.providerName}" ${entry.kind} is not visible`);
      if (entry.kind === 'link') checkProviderHref(entry.href, page, o);
      else warnings.push(`the provider entry is a button, not a link (contract: a link to /login/${o.providerId}?request_id=...)`);
      check(
        (await page.locator('input[name=password]').count()) === 1,
        `at ${width}px the login page has no password form although password_login = true\n${await describe(page, rec)}`,
      );
      const file = path.join(o.out, `login-company-${width}.png`);
      await page.screenshot({ path: file, fullPage: true });
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      if (overflow > 0) warnings.push(`the login page with a provider at ${width}px overflows horizontally by ${overflow}px`);
      log(`wrote ${file} (${entry.kind} ${entry.href ?? ''})`);
      await context.close();
    }

    // 2. carol, through the MCP SDK; her browser context stays open for the sign-out later.
    const callbackPort = await freePort();
    const redirectUrl = `http://127.0.0.1:${callbackPort}/callback`;
    const carolBrowser = await contextCapturing(browser, redirectUrl);
    const carolPage = await carolBrowser.context.newPage();
    carolPage.setDefaultTimeout(20_000);
    const carolRec = recordNavigation(carolPage);
    const upstream = watchUpstream(carolPage, idpMeta.authorization_endpoint);
    let shot = 0;
    const flowShot = (page, who) => async (name) => {
      shot++;
      await page.screenshot({ path: path.join(o.flow, `${String(shot).padStart(2, '0')}-${who}-${name}.png`), fullPage: true }).catch(() => {});
    };
    const auth = new SdkAuth({
      redirectUrl,
      authorize: async (url) => {
        log(`carol: the SDK opens ${url}`);
        await carolPage.goto(url, { waitUntil: 'load' });
        await drive(carolPage, carolRec, [...portcullisHandlers(o), ...idpHandlers(o.idpIssuer, { username: 'carol', password: o.passwords.carol })], {
          finished: () => Boolean(carolBrowser.captured.url),
          log: (m) => log(`carol: ${m}`),
          shot: flowShot(carolPage, 'carol'),
        });
        return carolBrowser.captured.url;
      },
    });
    const exchanges = [];
    const loggingFetch = async (input, init) => {
      const res = await fetch(input, init);
      const url = typeof input === 'string' ? input : input.href ?? input.url;
      let note = '';
      if (!res.ok) note = ` ${(await res.clone().text().catch(() => '')).slice(0, 300)}`;
      exchanges.push(`${init?.method ?? 'GET'} ${url} -> ${res.status}${note}`);
      return res;
    };
    const first = new StreamableHTTPClientTransport(new URL(o.mcpUrl), { authProvider: auth, fetch: loggingFetch });
    const firstClient = new Client({ name: 'portcullis-interop-company', version: '0.0.0' });
    try {
      await firstClient.connect(first);
      throw new Fail('connected to the MCP server without a token');
    } catch (e) {
      if (e instanceof Fail) throw e;
      if (!(e instanceof UnauthorizedError)) throw new Fail(`expected UnauthorizedError from the first connect, got: ${e.stack ?? e}\n  SDK HTTP: ${exchanges.join('\n  ')}`);
    }
    check(upstream.length === 1, `expected one upstream authorization request to the provider, saw ${upstream.length}\n${await describe(carolPage, carolRec)}`);
    checkUpstreamRequest(upstream[0], o);
    log(`carol: Portcullis's upstream request is per contract (code, S256, state, nonce, ${upstream[0].searchParams.get('redirect_uri')}, scope ${JSON.stringify(upstream[0].searchParams.get('scope'))})`);
    const cb = new URL(auth.callbackUrl);
    check(!cb.searchParams.get('error'), `carol's authorization failed: ${auth.callbackUrl}`);
    check(cb.searchParams.get('state') === auth.expectedState, `state mismatch: sent ${auth.expectedState}, got ${cb.searchParams.get('state')}`);
    check(cb.searchParams.get('iss') === asMeta.issuer, `RFC 9207 iss ${cb.searchParams.get('iss')}, expected ${asMeta.issuer}`);
    const code = cb.searchParams.get('code');
    check(code, `no code in ${auth.callbackUrl}`);
    await first.finishAuth(code);
    await firstClient.close().catch(() => {});
    const t1 = auth.savedTokens[0];
    check(t1?.refresh_token, 'no refresh_token in the token response');
    const client = new Client({ name: 'portcullis-interop-company', version: '0.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(o.mcpUrl), { authProvider: auth, fetch: loggingFetch }));
    const res = await client.callTool({ name: 'whoami', arguments: {} });
    check(!res.isError, `whoami failed: ${JSON.stringify(res.content)}`);
    const who = JSON.parse(res.content.find((c) => c.type === 'text').text);
    log(`carol: whoami ${JSON.stringify(who)}`);
    check(who.sub && (who.scope ?? '').split(' ').includes('mcp:tools'), `whoami: ${JSON.stringify(who)}`);
    await client.close().catch(() => {});
    const clientId = auth._clientInformation.client_id;

    // 3. dave: refused after the provider, with a page and no code.
    const daveBrowser = await contextCapturing(browser, PLAIN_REDIRECT);
    const davePage = await daveBrowser.context.newPage();
    davePage.setDefaultTimeout(20_000);
    const daveRec = recordNavigation(davePage);
    const idpOrigin = originOf(o.idpIssuer);
    // Done once the main frame has shown a provider page and then a Portcullis page again.
    const backFromIdp = () => {
      const i = daveRec.committed.findIndex((u) => originOf(u) === idpOrigin);
      return i >= 0 && daveRec.committed.slice(i + 1).some((u) => originOf(u) === originOf(o.issuer));
    };
    await davePage.goto(plainAuthorizeUrl(), { waitUntil: 'load' });
    await drive(
      davePage,
      daveRec,
      [portcullisHandlers(o)[0], ...idpHandlers(o.idpIssuer, { username: 'dave', password: o.passwords.dave })],
      {
        finished: () => Boolean(daveBrowser.captured.url) || backFromIdp(),
        log: (m) => log(`dave: ${m}`),
        shot: flowShot(davePage, 'dave'),
      },
    );
    await davePage.waitForLoadState('load');
    check(!daveBrowser.captured.url, `dave (groups [staff]) got a redirect to the client: ${daveBrowser.captured.url}\n${await describe(davePage, daveRec)}`);
    check(
      (await davePage.locator('button[name=decision][value=approve]').count()) === 0,
      `dave (groups [staff]) was offered Portcullis's consent page; expected a 403 page (allowed_groups = ["mcp-users"])\n${await describe(davePage, daveRec)}`,
    );
    const daveText = await pageText(davePage, 2000);
    check(
      daveRec.last?.status === 403,
      `dave (groups [staff]) ended on HTTP ${daveRec.last?.status}, expected 403\n${await describe(davePage, daveRec)}`,
    );
    check(
      /limited|group/i.test(daveText) && daveText.includes(o.resourceName),
      `the 403 page does not say that ${o.resourceName} is limited to certain groups: ${JSON.stringify(daveText.slice(0, 400))}`,
    );
    check(!daveRec.requests.some((u) => u.startsWith(PLAIN_REDIRECT)), 'a navigation reached the client redirect URI for dave');
    log(`dave: refused with HTTP 403: ${JSON.stringify(daveText.slice(0, 200))}`);
    for (const [width, height] of [...WIDTHS].reverse()) {
      await davePage.setViewportSize({ width, height });
      const file = path.join(o.out, `company-refused-${width}.png`);
      await davePage.screenshot({ path: file, fullPage: true });
      const overflow = await davePage.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      if (overflow > 0) warnings.push(`the refusal page at ${width}px overflows horizontally by ${overflow}px`);
      log(`wrote ${file}`);
    }
    await daveBrowser.context.close();

    // 4. before the sign-out: the refresh token works and carol has a Portcullis session.
    let rt = auth._tokens.refresh_token;
    const r1 = await http('POST', tokenEndpoint, { form: { grant_type: 'refresh_token', refresh_token: rt, client_id: clientId } });
    check(r1.status === 200 && r1.body?.access_token && r1.body?.refresh_token, `carol's refresh before the sign-out: HTTP ${r1.status} ${r1.text.slice(0, 300)}`);
    check(r1.body.refresh_token !== rt, 'the refresh token was not rotated');
    rt = r1.body.refresh_token;
    await carolPage.goto(`${o.issuer}/account`, { waitUntil: 'load' });
    check(
      (await carolPage.locator('section.connected-app').count()) >= 1 && (await carolPage.locator('input[name=password]').count()) === 0,
      `carol's browser has no Portcullis session before the sign-out (/account should list her app)\n${await describe(carolPage, carolRec)}`,
    );
    log('carol: refresh OK (rotated) and /account lists her app');

    // 5. sign out at the provider: back-channel logout to Portcullis.
    const before = (await (await fetch(`${o.idpIssuer}/_rig/backchannel`)).json()).deliveries.length;
    await idpSignOut(carolPage, carolRec, idpMeta.end_session_endpoint, log);
    const deliveries = (await (await fetch(`${o.idpIssuer}/_rig/backchannel`)).json()).deliveries.slice(before);
    log(`back-channel deliveries: ${JSON.stringify(deliveries)}`);
    check(deliveries.length === 1, `the provider made ${deliveries.length} back-channel logout deliveries, expected 1 (to Portcullis, for carol)`);
    const d = deliveries[0];
    check(d.uri === `${o.issuer}/login/${o.providerId}/backchannel-logout` && d.account === 'carol', `back-channel delivery: ${JSON.stringify(d)}`);
    check(d.ok, `Portcullis refused the back-channel logout: ${d.error} (POST ${d.uri} with a logout_token for sub ${d.sub}, sid ${d.sid})`);
    const r2 = await http('POST', tokenEndpoint, { form: { grant_type: 'refresh_token', refresh_token: rt, client_id: clientId } });
    check(
      r2.status === 400 && r2.body?.error === 'invalid_grant',
      `carol's refresh after the back-channel logout: HTTP ${r2.status} ${r2.text.slice(0, 300)}, expected 400 {"error":"invalid_grant"}`,
    );
    log('carol: the refresh after the back-channel logout gets 400 invalid_grant');
    await carolPage.goto(`${o.issuer}/account`, { waitUntil: 'load' });
    check(
      (await carolPage.locator('section.connected-app').count()) === 0 &&
        ((await carolPage.locator('input[name=password]').count()) > 0 || (await findProviderEntry(carolPage, o)) !== undefined),
      `after the back-channel logout carol's Portcullis session still works (/account did not ask her to sign in)\n${await describe(carolPage, carolRec)}`,
    );
    log('carol: /account asks her to sign in again');
    await carolBrowser.context.close();

    // 6. carol signs in again (new browser, another client): the same Portcullis person, since
    // people are linked by (provider, sub), and a back-channel logout does not lock her out.
    const again = await contextCapturing(browser, PLAIN_REDIRECT);
    const againPage = await again.context.newPage();
    againPage.setDefaultTimeout(20_000);
    const againRec = recordNavigation(againPage);
    await againPage.goto(plainAuthorizeUrl(), { waitUntil: 'load' });
    await drive(againPage, againRec, [...portcullisHandlers(o), ...idpHandlers(o.idpIssuer, { username: 'carol', password: o.passwords.carol })], {
      finished: () => Boolean(again.captured.url),
      log: (m) => log(`carol again: ${m}`),
      shot: flowShot(againPage, 'carol-again'),
    });
    await again.context.close();
    const code2 = new URL(again.captured.url).searchParams.get('code');
    check(code2, `carol's second sign-in reached the client without a code: ${again.captured.url}`);
    const t3 = await http('POST', tokenEndpoint, {
      form: { grant_type: 'authorization_code', code: code2, redirect_uri: PLAIN_REDIRECT, client_id: plainClient, code_verifier: plainVerifier, resource: o.mcpUrl },
    });
    check(t3.status === 200 && t3.body?.access_token, `carol's second code exchange: HTTP ${t3.status} ${t3.text.slice(0, 300)}`);
    const sub2 = JSON.parse(Buffer.from(t3.body.access_token.split('.')[1], 'base64url')).sub;
    check(sub2 === who.sub, `carol's second sign-in is a different person: sub ${sub2}, first ${who.sub} (people are linked by provider and sub)`);
    log(`carol: signed in again after the logout as the same person (sub ${sub2})`);
  } finally {
    await browser.close().catch(() => {});
  }
  for (const w of warnings) console.log(`${NAME}: WARN: ${w}`);
  log('PASS: provider button, carol signed in through the company IdP and called whoami, dave refused (403), back-channel logout ended carol\'s session and grants');
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`${NAME}: FAIL: ${e instanceof Fail ? e.message : e?.stack ?? e}`);
    if (transcript.length) console.error(`${NAME}: HTTP transcript:\n  ${transcript.join('\n  ')}`);
    process.exit(1);
  },
);
