#!/usr/bin/env node
// Screenshots of Portcullis's browser pages at 390 px and 1280 px wide, in the light and the dark
// colour scheme, full page: NAME-WIDTH.png (light) and NAME-WIDTH-dark.png, for NAME in
//   landing         / for a visitor
//   login           the sign-in form, reached from /authorize (names the MCP server)
//   consent         the first consent (what is granted must be above the fold at 390 px)
//   consent-more    a step-up: "wants more access", the new permission first
//   account         /account (connected apps) after approving
//   account-error   a refused password change, the error beside the form
//   error           an unknown client's error page (never a redirect), with its request id
//   logout          the sign-out question, with a way back
//   signed-out      after signing out, with a way to sign in again
//
// Usage: node screenshots.mjs --issuer URL --resource MCP_URL --user NAME --password PW [--out DIR]
//   (or env PORTCULLIS_ISSUER, MCP_URL, INTEROP_USER, INTEROP_PASSWORD; DIR defaults to
//   tests/interop/out/screenshots)
// Fails (exit 1) when a page is not what the contract says (no login form, no consent buttons,
// an error page that redirects to the client, a consent page whose permissions are below the fold
// at 390 px, a page without exactly one h1 or with an unlabelled field). Horizontal overflow is
// printed as a warning.
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
const SCHEMES = ['light', 'dark'];

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

  // A fresh client per browser context: a remembered grant would skip the consent page.
  const register = async () => {
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
    return clientId;
  };

  const authorizeUrl = (cid, scope = 'mcp:tools') => {
    const verifier = crypto.randomBytes(32).toString('base64url');
    const u = new URL(authorizeEndpoint);
    u.searchParams.set('response_type', 'code');
    u.searchParams.set('client_id', cid);
    u.searchParams.set('redirect_uri', REDIRECT_URI);
    u.searchParams.set('state', crypto.randomBytes(12).toString('base64url'));
    u.searchParams.set('code_challenge', crypto.createHash('sha256').update(verifier).digest('base64url'));
    u.searchParams.set('code_challenge_method', 'S256');
    u.searchParams.set('scope', scope);
    if (o.resource) u.searchParams.set('resource', o.resource);
    return u.href;
  };

  const browser = await launchBrowser();
  const written = [];
  try {
    for (const scheme of SCHEMES) {
      for (const [width, height] of WIDTHS) {
        const clientId = await register();
        const context = await browser.newContext({ viewport: { width, height }, colorScheme: scheme });
        const page = await context.newPage();
        page.setDefaultTimeout(20_000);
        const where = `at ${width}px ${scheme}`;
        let callbackHit = null;
        await context.route(
          (u) => u.href.startsWith(REDIRECT_URI),
          async (route) => {
            callbackHit = route.request().url();
            await route.fulfill({ status: 200, contentType: 'text/plain', body: 'callback' });
          },
        );
        const bodyText = async () => (await page.locator('body').innerText()).replace(/\s+/g, ' ').slice(0, 300);
        const shoot = async (name) => {
          const file = path.join(o.out, `${name}-${width}${scheme === 'dark' ? '-dark' : ''}.png`);
          // The basics a screen reader needs: one h1, and every visible field labelled.
          const h1 = await page.locator('h1').count();
          check(h1 === 1, `${where} the ${name} page has ${h1} h1 elements`);
          const unlabelled = await page.evaluate(() =>
            [...document.querySelectorAll('input:not([type=hidden])')]
              .filter((i) => !(i.id && document.querySelector(`label[for="${i.id}"]`)))
              .map((i) => i.name),
          );
          check(unlabelled.length === 0, `${where} the ${name} page has fields without a label: ${unlabelled.join(', ')}`);
          await page.screenshot({ path: file, fullPage: true });
          written.push(file);
          const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
          if (overflow > 0) warnings.push(`${name} page ${where} overflows horizontally by ${overflow}px`);
          log(`wrote ${file}`);
        };
        const approve = page.locator('button[name=decision][value=approve]');
        const deny = page.locator('button[name=decision][value=deny]');
        // Clicks a consent button and waits for the browser to reach the (intercepted) callback.
        const answer = async (button) => {
          await button.first().click({ noWaitAfter: true });
          for (let i = 0; i < 200 && !callbackHit; i++) await new Promise((r) => setTimeout(r, 50));
          const hit = callbackHit;
          callbackHit = null;
          // Let the navigation to the callback finish, or it interrupts the next page.goto.
          if (hit) await page.waitForURL((u) => u.href.startsWith(REDIRECT_URI), { timeout: 5000 }).catch(() => {});
          return hit ? new URL(hit).searchParams : null;
        };

        // Landing page, for a visitor.
        const landing = await page.goto(`${issuer}/`, { waitUntil: 'load' });
        check(landing?.status() === 200, `${where} / answered HTTP ${landing?.status()}`);
        check((await page.locator('a[href*="login"]').count()) > 0, `${where} the landing page has no way to sign in: ${await bodyText()}`);
        await shoot('landing');

        // Login page.
        const res = await page.goto(authorizeUrl(clientId), { waitUntil: 'load' });
        check(!callbackHit, `${where} /authorize without a session redirected straight to the client: ${callbackHit}`);
        check(
          (await page.locator('input[name=username]').count()) > 0 && (await page.locator('input[name=password]').count()) > 0,
          `${where} /authorize did not lead to a login form (HTTP ${res?.status()} at ${page.url()})`,
        );
        if (width === WIDTHS[0][0] && scheme === SCHEMES[0]) {
          const h = res?.headers() ?? {};
          log(
            `login page ${page.url()}: HTTP ${res?.status()}, content-security-policy=${JSON.stringify(h['content-security-policy'] ?? null)}, ` +
              `x-frame-options=${JSON.stringify(h['x-frame-options'] ?? null)}`,
          );
        }
        await shoot('login');

        // Consent page: what is granted must show without scrolling on a phone.
        await page.locator('input[name=username]').fill(o.user);
        await page.locator('input[name=password]').fill(o.password);
        const form = page.locator('form', { has: page.locator('input[name=password]') });
        await form.locator('button[type=submit], input[type=submit], button:not([type])').first().click();
        await approve.first().waitFor({ timeout: 10_000 }).catch(() => {});
        await page.waitForLoadState('load');
        check(!callbackHit, `${where} signing in redirected to the client without a consent page: ${callbackHit}`);
        check(
          (await approve.count()) > 0 && (await deny.count()) > 0,
          `${where} no consent page after signing in (at ${page.url()}: ${await bodyText()})`,
        );
        const firstScope = await page.locator('li.scope').first().boundingBox();
        check(
          firstScope && firstScope.y + firstScope.height <= height,
          `${where} the first permission is below the fold (${JSON.stringify(firstScope)})`,
        );
        check(/Allow/.test(await approve.first().innerText()), `${where} the approve button does not say Allow`);
        await shoot('consent');
        const approved = await answer(approve);
        check(approved?.get('code'), `${where} approving did not return a code: ${approved}`);

        // Step-up: one more permission (email) for the same app.
        await page.goto(authorizeUrl(clientId, 'mcp:tools email'), { waitUntil: 'load' });
        check((await approve.count()) > 0, `${where} no consent page for the step-up (at ${page.url()}: ${await bodyText()})`);
        check(/wants more access/.test(await page.locator('h1').innerText()), `${where} the step-up heading: ${await bodyText()}`);
        await shoot('consent-more');
        const denied = await answer(deny);
        check(denied?.get('error') === 'access_denied', `${where} denying did not return access_denied: ${denied}`);

        // Connected apps, and a refused password change (the error beside the form).
        await page.goto(`${issuer}/account`, { waitUntil: 'load' });
        check((await page.locator('form.revoke').count()) > 0, `${where} /account lists no app: ${await bodyText()}`);
        await shoot('account');
        // Mismatched new passwords: refused without touching the password or the sign-in throttle.
        await page.locator('#current_password').fill(o.password);
        await page.locator('#new_password').fill('a new password 1');
        await page.locator('#confirm_password').fill('a different one 2');
        await page.locator('#password-change button[type=submit]').click();
        await page.waitForLoadState('load');
        check(
          (await page.locator('#confirm_password[aria-invalid=true]').count()) === 1 &&
            (await page.locator('#password-change [role=alert]').count()) === 1,
          `${where} the mismatch is not shown beside the form with aria-invalid: ${await bodyText()}`,
        );
        await shoot('account-error');

        // Error page: an unknown client must get an error page, never a redirect.
        const errRes = await page.goto(authorizeUrl(`unknown-${crypto.randomBytes(4).toString('hex')}`), { waitUntil: 'load' });
        check(!callbackHit, `${where} /authorize with an unknown client_id redirected to ${callbackHit} (must not redirect)`);
        const status = errRes?.status();
        if (!(status >= 400 && status < 500)) warnings.push(`the unknown-client error page answered HTTP ${status}, expected 400`);
        const requestId = errRes?.headers()['x-request-id'];
        check(requestId && (await page.locator('.request-id').innerText()) === requestId, `${where} the error page does not show the request id ${requestId}`);
        log(`error page for an unknown client: HTTP ${status}`);
        await shoot('error');

        // Sign out: the question has a way back; signed out, a way to sign in again.
        await page.goto(`${issuer}/logout`, { waitUntil: 'load' });
        check((await page.locator('a[href$="/account"]').count()) > 0, `${where} the sign-out question has no way back`);
        await shoot('logout');
        await page.locator('form button[type=submit]').first().click();
        await page.waitForLoadState('load');
        check(/signed out/.test(await bodyText()), `${where} not signed out: ${await bodyText()}`);
        check((await page.locator('a[href*="login"]').count()) > 0, `${where} signed out without a way to sign in again`);
        await shoot('signed-out');

        await context.close();
      }
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
