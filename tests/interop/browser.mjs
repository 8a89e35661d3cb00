#!/usr/bin/env node
// Drives Portcullis's browser pages with headless Debian chromium (playwright-core):
// opens an authorization URL, signs in, approves consent and returns the URL the browser
// was finally sent to (the client's loopback callback with code, state and iss).
//
// The callback request is intercepted and answered here, so the client's own callback
// server need not be listening.
//
// CLI: node browser.mjs <authorize-url> <username> <password> [screenshot-dir]
//      prints the callback URL on stdout (one line), diagnostics on stderr.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM_PATH)) {
    throw new Error(`chromium not found at ${CHROMIUM_PATH} (run tests/interop/setup.sh)`);
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, headless: true });
}

function callbackMatcher(authorizeUrl, explicit) {
  let target = explicit;
  if (!target) {
    const u = new URL(authorizeUrl);
    target = u.searchParams.get('redirect_uri');
    if (!target) throw new Error(`authorization URL has no redirect_uri: ${authorizeUrl}`);
  }
  const t = new URL(target);
  const prefix = `${t.protocol}//${t.host}${t.pathname}`;
  return (url) => {
    try {
      const u = new URL(url);
      return `${u.protocol}//${u.host}${u.pathname}` === prefix;
    } catch {
      return false;
    }
  };
}

async function pageSummary(page) {
  let text = '';
  try {
    text = (await page.locator('body').innerText({ timeout: 2000 })).replace(/\s+/g, ' ').trim().slice(0, 600);
  } catch {
    /* page gone */
  }
  let title = '';
  try {
    title = await page.title();
  } catch {
    /* ignore */
  }
  return `url=${page.url()} title=${JSON.stringify(title)} text=${JSON.stringify(text)}`;
}

/**
 * Runs the authorization in a browser.
 * @param {string} authorizeUrl
 * @param {{username: string, password: string, screenshotDir?: string, callbackUrl?: string,
 *          timeoutMs?: number, log?: (msg: string) => void, browser?: import('playwright-core').Browser}} opts
 * @returns {Promise<string>} the callback URL (with code/state/iss, or error)
 */
export async function authorize(authorizeUrl, opts) {
  const { username, password, screenshotDir, timeoutMs = 60_000 } = opts;
  const log = opts.log ?? ((m) => process.stderr.write(`browser: ${m}\n`));
  const isCallback = callbackMatcher(authorizeUrl, opts.callbackUrl);
  const deadline = Date.now() + timeoutMs;
  if (screenshotDir) fs.mkdirSync(screenshotDir, { recursive: true });

  const ownBrowser = !opts.browser;
  const browser = opts.browser ?? (await launchBrowser());
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(Math.min(20_000, timeoutMs));

  let callback = null;
  let shot = 0;
  const trail = []; // every document request/response, for error reports
  const consoleMessages = [];

  page.on('console', (m) => consoleMessages.push(`[${m.type()}] ${m.text()}`));
  page.on('request', (req) => {
    if (!req.isNavigationRequest()) return;
    trail.push(`${req.method()} ${req.url()}`);
    if (!callback && isCallback(req.url())) callback = req.url();
  });
  page.on('response', (res) => {
    if (res.request().isNavigationRequest()) {
      const loc = res.headers()['location'];
      trail.push(`  <- ${res.status()}${loc ? ` Location: ${loc}` : ''}`);
    }
  });
  page.on('requestfailed', (req) => {
    if (req.isNavigationRequest() && !isCallback(req.url())) trail.push(`  !! failed: ${req.failure()?.errorText}`);
  });
  // Answer the callback ourselves: the client's callback server may be gone already.
  await context.route(
    (url) => isCallback(url.href),
    async (route) => {
      if (!callback) callback = route.request().url();
      await route.fulfill({ status: 200, contentType: 'text/plain', body: 'interop rig: callback captured' });
    },
  );

  const screenshot = async (name) => {
    if (!screenshotDir) return;
    shot++;
    const file = path.join(screenshotDir, `${String(shot).padStart(2, '0')}-${name}.png`);
    try {
      await page.screenshot({ path: file, fullPage: true });
    } catch (e) {
      log(`screenshot ${file} failed: ${e.message}`);
    }
  };

  // Waits until the page navigated away from `fromUrl` (or a callback was seen) and the new
  // document is loaded.
  const waitForProgress = async (navCountBefore) => {
    while (Date.now() < deadline) {
      if (callback) return;
      if (navCount > navCountBefore) {
        try {
          await page.waitForLoadState('domcontentloaded', { timeout: 5000 });
        } catch {
          /* keep polling */
        }
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  let navCount = 0;
  page.on('framenavigated', (f) => {
    if (f === page.mainFrame()) navCount++;
  });

  const fail = async (msg) => {
    await screenshot('failure');
    const summary = await pageSummary(page);
    const err = new Error(
      `${msg}\n  page: ${summary}\n  navigation trail:\n    ${trail.join('\n    ')}` +
        (consoleMessages.length ? `\n  console:\n    ${consoleMessages.slice(-10).join('\n    ')}` : ''),
    );
    return err;
  };

  try {
    log(`opening ${authorizeUrl}`);
    try {
      await page.goto(authorizeUrl, { waitUntil: 'domcontentloaded' });
    } catch (e) {
      if (!callback) throw await fail(`could not open the authorization URL: ${e.message}`);
    }

    let loginAttempts = 0;
    let consentClicks = 0;
    for (let step = 0; step < 10 && !callback; step++) {
      if (Date.now() > deadline) throw await fail('timed out before reaching the callback');
      const before = navCount;
      const passwordField = page.locator('input[name=password]');
      const approve = page.locator('button[name=decision][value=approve]');
      if ((await passwordField.count()) > 0) {
        if (loginAttempts >= 1) throw await fail('the login page came back after signing in (wrong credentials or CSRF failure?)');
        loginAttempts++;
        await screenshot('login');
        log(`login page at ${page.url()}: signing in as ${username}`);
        await page.locator('input[name=username]').fill(username);
        await passwordField.fill(password);
        const form = page.locator('form', { has: passwordField });
        const submit = form.locator('button[type=submit], input[type=submit], button:not([type])').first();
        if ((await submit.count()) > 0) await submit.click({ noWaitAfter: true });
        else await form.evaluate((f) => f.requestSubmit());
      } else if ((await approve.count()) > 0) {
        if (consentClicks >= 2) throw await fail('the consent page keeps coming back after approving');
        consentClicks++;
        await screenshot('consent');
        log(`consent page at ${page.url()}: approving`);
        await approve.first().click({ noWaitAfter: true });
      } else {
        throw await fail('unexpected page: neither a login form (input[name=password]) nor a consent form (button[name=decision][value=approve])');
      }
      await waitForProgress(before);
      if (!callback && navCount === before) throw await fail('the page did not navigate after submitting the form');
    }
    if (!callback) throw await fail('too many pages before the callback');
    log(`callback reached: ${callback}`);
    return callback;
  } finally {
    await context.close().catch(() => {});
    if (ownBrowser) await browser.close().catch(() => {});
  }
}

// CLI
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [url, username, password, screenshotDir] = process.argv.slice(2);
  if (!url || !username || password === undefined) {
    console.error('usage: node browser.mjs <authorize-url> <username> <password> [screenshot-dir]');
    process.exit(2);
  }
  authorize(url, { username, password, screenshotDir })
    .then((cb) => {
      process.stdout.write(`${cb}\n`);
      process.exit(0);
    })
    .catch((e) => {
      console.error(`browser: FAILED: ${e.message}`);
      process.exit(1);
    });
}
