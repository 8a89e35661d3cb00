#!/usr/bin/env node
// The admin console in headless Chromium: an administrator signs in from /admin, adds a person and
// an MCP server, revokes a grant through the confirmation page; a person without the admin role
// gets 403. Screenshots of every section at 390 px and 1280 px, light and dark: admin-NAME-WIDTH[-dark].png.
//
// Usage: node admin_console.mjs --issuer URL --admin NAME --admin-password PW --user NAME --password PW [--out DIR]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchBrowser } from './browser.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const log = (m) => console.log(`admin_console: ${m}`);
class Fail extends Error {}
const check = (c, m) => {
  if (!c) throw new Fail(m);
};

function parseArgs(argv) {
  const o = { out: path.join(HERE, 'out', 'screenshots') };
  for (let i = 0; i < argv.length; i++) {
    const v = () => argv[++i];
    const a = argv[i];
    if (a === '--issuer') o.issuer = v().replace(/\/$/, '');
    else if (a === '--admin') o.admin = v();
    else if (a === '--admin-password') o.adminPassword = v();
    else if (a === '--user') o.user = v();
    else if (a === '--password') o.password = v();
    else if (a === '--out') o.out = v();
    else throw new Fail(`unknown argument ${a}`);
  }
  check(o.issuer && o.admin && o.adminPassword && o.user && o.password, 'usage: see the header');
  return o;
}

const SECTIONS = [
  ['overview', '/admin', 'At a glance'],
  ['people', '/admin/people', 'Add a person'],
  ['resources', '/admin/resources', 'Add an MCP server'],
  ['grants', '/admin/grants', 'Live grants'],
  ['audit', '/admin/audit', 'Events, newest first'],
  ['keys', '/admin/keys', 'Signing keys'],
  ['settings', '/admin/settings', 'secrets redacted'],
];

async function signIn(page, o, name, password) {
  await page.fill('input[name=username]', name);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForLoadState('load'), page.click('button[type=submit]')]);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  fs.mkdirSync(o.out, { recursive: true });
  const browser = await launchBrowser();
  try {
    // A person without the admin role: 403.
    {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(`${o.issuer}/admin`);
      check(page.url().includes('/login'), `an anonymous visit to /admin should reach the login page, got ${page.url()}`);
      await signIn(page, o, o.user, o.password);
      const res = await page.goto(`${o.issuer}/admin/people`);
      check(res.status() === 403, `${o.user} (not an admin) got HTTP ${res.status()} at /admin/people`);
      log(`PASS ${o.user} (no admin role) gets 403`);
      await context.close();
    }
    // The administrator signs in once; the other sizes and schemes reuse that session (the rig's
    // sign-ins share one address and its per-minute login limit).
    let signedIn = null;
    let first = true;
    for (const scheme of ['light', 'dark']) {
      for (const [width, height] of [[390, 844], [1280, 900]]) {
        const options = { viewport: { width, height }, colorScheme: scheme };
        const context = await browser.newContext(signedIn ? { ...options, storageState: signedIn } : options);
        const page = await context.newPage();
        page.setDefaultTimeout(20_000);
        const shoot = async (name) => {
          const file = path.join(o.out, `admin-${name}-${width}${scheme === 'dark' ? '-dark' : ''}.png`);
          await page.screenshot({ path: file, fullPage: true });
        };
        if (!signedIn) {
          await page.goto(`${o.issuer}/admin`);
          check(page.url().includes('/login') && page.url().includes('next=admin'), `expected the login page, got ${page.url()}`);
          await signIn(page, o, o.admin, o.adminPassword);
          check(new URL(page.url()).pathname === '/admin', `after signing in, expected /admin, got ${page.url()}`);
          signedIn = await context.storageState();
        }
        for (const [name, p, text] of SECTIONS) {
          const res = await page.goto(`${o.issuer}${p}`);
          check(res.status() === 200, `${p} -> HTTP ${res.status()}`);
          const body = await page.locator('body').innerText();
          check(body.includes(text), `${p} does not show "${text}"`);
          check((await page.locator('h1').count()) === 1, `${p} should have one h1`);
          await shoot(name);
        }
        if (first) {
          first = false;
          // Add a person: the generated password is shown once.
          await page.goto(`${o.issuer}/admin/people`);
          const addForm = page.locator('form[method=post][action$="/admin/people"]');
          await addForm.locator('input[name=username]').fill('dana');
          await addForm.locator('input[name=groups]').fill('eng, mcp-users');
          await Promise.all([page.waitForLoadState('load'), addForm.locator('button[type=submit]').click()]);
          check((await page.locator('body').innerText()).includes('Added dana'), 'adding dana did not show her password');
          await shoot('person-added');
          // Add an MCP server.
          await page.goto(`${o.issuer}/admin/resources`);
          await page.fill('input[name=uri]', 'https://console-added.example.com/mcp');
          await page.fill('input[name=name]', 'Added from the console');
          await page.fill('input[name=scopes]', 'notes:read=Read notes');
          const resourceForm = page.locator('form[method=post][action$="/admin/resources"]');
          await Promise.all([page.waitForLoadState('load'), resourceForm.locator('button[type=submit]').click()]);
          check((await page.locator('body').innerText()).includes('https://console-added.example.com/mcp'), 'the new MCP server is not listed');
          // Revoke a grant through the confirmation page, if there is one.
          await page.goto(`${o.issuer}/admin/grants`);
          const revoke = page.locator('a', { hasText: 'Revoke' }).first();
          if (await revoke.count()) {
            await Promise.all([page.waitForLoadState('load'), revoke.click()]);
            check((await page.locator('h1').innerText()).includes('Are you sure'), 'no confirmation step before revoking');
            await shoot('confirm');
            await Promise.all([page.waitForLoadState('load'), page.click('form button[type=submit]')]);
            check(new URL(page.url()).pathname === '/admin/grants', `after revoking, expected /admin/grants, got ${page.url()}`);
            log('PASS revoked a grant through the confirmation page');
          } else {
            log('no live grant to revoke (the earlier tests revoked theirs)');
          }
          log('PASS added a person and an MCP server');
        }
        await context.close();
      }
    }
    log(`PASS screenshots in ${o.out}`);
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`admin_console: FAIL ${e instanceof Fail ? e.message : e.stack}`);
  process.exit(1);
});
