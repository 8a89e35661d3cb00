#!/usr/bin/env node
// Screenshots of Portcullis's browser pages (login, consent, an error page) at 390 px and
// 1280 px wide, full page: login-390.png, login-1280.png, consent-390.png, consent-1280.png,
// error-390.png, error-1280.png.
//
// Usage: node screenshots.mjs --issuer URL --resource MCP_URL --user NAME --password PW [--out DIR]
//   (or env PORTCULLIS_ISSUER, MCP_URL, INTEROP_USER, INTEROP_PASSWORD; DIR defaults to
//   tests/interop/out/screenshots)
// Fails (exit 1) when a page is not what the contract says (no login form, no consent buttons,
// an error page that redirects to the client). Layout problems (horizontal overflow at 390 px)
// are printed as warnings.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchBrowser } from './browser.mjs';

const NAME = 'screenshots';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const log = (m) => console.log(`${NAME}: ${m}`);
class Fail extends Error {}
const check = (c, m) => {
  if (!c) throw new Fail(m);
};

function parseArgs(argv) {
  const o = {
    issuer: process.env.PORTCULLIS_ISSUER,
    resource: process.env.MCP_URL,
    user: process.env.INTEROP_USER,
    password: process.env.INTEROP_PASSWORD,
    out: path.join(HERE, 'out', 'screenshots'),
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--issuer') o.issuer = v();
    else if (a === '--resource') o.resource = v();
    else if (a === '--user') o.user = v();
    else if (a === '--password') o.password = v();
    else if (a === '--out') o.out = v();
    else if (!a.startsWith('--') && i === argv.length - 1) o.out = a; // positional directory
    else throw new Fail(`unknown argument ${a}`);
  }
  if (!o.issuer || !o.user || o.password === undefined) {
    throw new Fail('usage: node screenshots.mjs --issuer URL --resource MCP_URL --user NAME --password PW [--out DIR]');
  }
  return o;
}

const REDIRECT_URI = 'http://127.0.0.1:9/callback';
const WIDTHS = [
  [390, 844],
  [1280, 900],
];

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const issuer = o.issuer.replace(/\/$/, '');
  fs.mkdirSync(o.out, { recursive: true });
  const warnings = [];

  // Endpoints from the metadata (fall back to the documented paths).
  let meta = {};
  try {
    meta = await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json();
  } catch (e) {
    warnings.push(`could not read AS metadata: ${e.message}`);
  }
  const authorizeEndpoint = meta.authorization_endpoint ?? `${issuer}/authorize`;
  const registerEndpoint = meta.registration_endpoint ?? `${issuer}/register`;

  const regRes = await fetch(registerEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none', client_name: 'Screenshot client' }),
  });
  const regText = await regRes.text();
  check(regRes.status === 201 || regRes.status === 200, `POST ${registerEndpoint} -> ${regRes.status}: ${regText.slice(0, 400)}`);
  const clientId = JSON.parse(regText).client_id;
  check(clientId, `registration response has no client_id: ${regText.slice(0, 400)}`);
  log(`registered client ${clientId} (HTTP ${regRes.status})`);

  const authorizeUrl = (cid) => {
    const verifier = crypto.randomBytes(32).toString('base64url');
    const u = new URL(authorizeEndpoint);
    u.searchParams.set('response_type', 'code');
    u.searchParams.set('client_id', cid);
    u.searchParams.set('redirect_uri', REDIRECT_URI);
    u.searchParams.set('state', crypto.randomBytes(12).toString('base64url'));
    u.searchParams.set('code_challenge', crypto.createHash('sha256').update(verifier).digest('base64url'));
    u.searchParams.set('code_challenge_method', 'S256');
    u.searchParams.set('scope', 'mcp:tools');
    if (o.resource) u.searchParams.set('resource', o.resource);
    return u.href;
  };

  const browser = await launchBrowser();
  const written = [];
  try {
    for (const [width, height] of WIDTHS) {
      const context = await browser.newContext({ viewport: { width, height } });
      const page = await context.newPage();
      page.setDefaultTimeout(20_000);
      let callbackHit = null;
      await context.route(
        (u) => u.href.startsWith(REDIRECT_URI),
        async (route) => {
          callbackHit = route.request().url();
          await route.fulfill({ status: 200, contentType: 'text/plain', body: 'callback' });
        },
      );
      const shoot = async (name) => {
        const file = path.join(o.out, `${name}-${width}.png`);
        await page.screenshot({ path: file, fullPage: true });
        written.push(file);
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        if (overflow > 0) warnings.push(`${name} page at ${width}px overflows horizontally by ${overflow}px`);
        log(`wrote ${file}`);
      };

      // Login page.
      const res = await page.goto(authorizeUrl(clientId), { waitUntil: 'load' });
      check(!callbackHit, `at ${width}px /authorize without a session redirected straight to the client: ${callbackHit}`);
      check(
        (await page.locator('input[name=username]').count()) > 0 && (await page.locator('input[name=password]').count()) > 0,
        `at ${width}px /authorize did not lead to a login form (HTTP ${res?.status()} at ${page.url()})`,
      );
      if (width === WIDTHS[0][0]) {
        const h = res?.headers() ?? {};
        log(
          `login page ${page.url()}: HTTP ${res?.status()}, content-security-policy=${JSON.stringify(h['content-security-policy'] ?? null)}, ` +
            `x-frame-options=${JSON.stringify(h['x-frame-options'] ?? null)}`,
        );
      }
      await shoot('login');

      // Consent page.
      await page.locator('input[name=username]').fill(o.user);
      await page.locator('input[name=password]').fill(o.password);
      const form = page.locator('form', { has: page.locator('input[name=password]') });
      const approve = page.locator('button[name=decision][value=approve]');
      const deny = page.locator('button[name=decision][value=deny]');
      await form.locator('button[type=submit], input[type=submit], button:not([type])').first().click();
      await approve.first().waitFor({ timeout: 10_000 }).catch(() => {});
      await page.waitForLoadState('load');
      check(!callbackHit, `at ${width}px signing in redirected to the client without a consent page: ${callbackHit}`);
      check(
        (await approve.count()) > 0 && (await deny.count()) > 0,
        `at ${width}px no consent page after signing in (at ${page.url()}: ${(await page.locator('body').innerText()).slice(0, 300)})`,
      );
      await shoot('consent');

      // Error page: an unknown client must get an error page, never a redirect.
      const errRes = await page.goto(authorizeUrl(`unknown-${crypto.randomBytes(4).toString('hex')}`), { waitUntil: 'load' });
      check(!callbackHit, `at ${width}px /authorize with an unknown client_id redirected to ${callbackHit} (must not redirect)`);
      const status = errRes?.status();
      if (!(status >= 400 && status < 500)) warnings.push(`the unknown-client error page answered HTTP ${status}, expected 400`);
      log(`error page for an unknown client: HTTP ${status}`);
      await shoot('error');

      await context.close();
    }
  } finally {
    await browser.close().catch(() => {});
  }
  for (const w of warnings) console.log(`${NAME}: WARN: ${w}`);
  log(`PASS: ${written.length} screenshots in ${o.out}`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`${NAME}: FAIL: ${e instanceof Fail ? e.message : e?.stack ?? e}`);
    process.exit(1);
  },
);
