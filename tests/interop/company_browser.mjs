// Browser helpers for the company sign-in tests (company_signin.mjs, company_idp_selftest.mjs):
// a navigation recorder that keeps every document request and response (status, Location),
// and a step driver that looks at the current page, does the one thing that page asks for
// (click "Sign in with Company", sign in at the provider, allow, approve...) and waits for the
// next document, so that a failure names the page it stopped on and the whole trail.

export class Fail extends Error {}
export const check = (cond, msg) => {
  if (!cond) throw new Fail(msg);
};

/** Records the main frame's document traffic of `page`. */
export function recordNavigation(page) {
  const rec = {
    lines: [],
    navigations: 0,
    /** The last main-frame document response: { url, status }. */
    last: undefined,
    /** Every main-frame document request URL, in order. */
    requests: [],
    /** Every URL the main frame committed to, in order. */
    committed: [],
  };
  page.on('request', (req) => {
    if (!req.isNavigationRequest() || req.frame() !== page.mainFrame()) return;
    rec.requests.push(req.url());
    rec.lines.push(`${req.method()} ${req.url()}`);
  });
  page.on('response', (res) => {
    const req = res.request();
    if (!req.isNavigationRequest() || req.frame() !== page.mainFrame()) return;
    const loc = res.headers()['location'];
    rec.lines.push(`  <- ${res.status()}${loc ? ` Location: ${loc}` : ''}`);
    if (!loc) rec.last = { url: res.url(), status: res.status() };
  });
  page.on('requestfailed', (req) => {
    if (req.isNavigationRequest() && req.frame() === page.mainFrame()) rec.lines.push(`  !! failed: ${req.failure()?.errorText}`);
  });
  page.on('framenavigated', (f) => {
    if (f !== page.mainFrame()) return;
    rec.navigations++;
    rec.committed.push(f.url());
  });
  return rec;
}

export async function pageText(page, max = 600) {
  try {
    return (await page.locator('body').innerText({ timeout: 2000 })).replace(/\s+/g, ' ').trim().slice(0, max);
  } catch {
    return '';
  }
}

export async function describe(page, rec) {
  let title = '';
  try {
    title = await page.title();
  } catch {
    /* page gone */
  }
  return (
    `  page: url=${page.url()} status=${rec?.last?.status ?? '?'} title=${JSON.stringify(title)} text=${JSON.stringify(await pageText(page))}` +
    (rec ? `\n  navigation trail:\n    ${rec.lines.join('\n    ')}` : '')
  );
}

/**
 * Clicks `locator` (or runs `action`) and waits until the main frame committed a new document
 * and it loaded (or `done()` became true, e.g. the client's callback was captured).
 */
export async function actAndWait(page, rec, action, { timeoutMs = 20_000, done = () => false } = {}) {
  const before = rec.navigations;
  await action();
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (done()) return;
    if (rec.navigations > before) {
      await page.waitForLoadState('load', { timeout: 10_000 }).catch(() => {});
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Fail(`the page did not navigate within ${timeoutMs / 1000}s\n${await describe(page, rec)}`);
}

/**
 * Drives `page` through pages until `finished()` is true. Each step: the first handler whose
 * `match(page)` is true acts (at most `max` times, default 1); no match is a failure.
 * @param {Array<{name: string, match: (page) => Promise<boolean>, act: (page) => Promise<void>, max?: number}>} handlers
 */
export async function drive(page, rec, handlers, { finished, maxSteps = 12, log = () => {}, shot = async () => {} }) {
  const used = new Map();
  for (let step = 0; step < maxSteps; step++) {
    if (finished()) return;
    let handler;
    for (const h of handlers) {
      if (await h.match(page)) {
        handler = h;
        break;
      }
    }
    if (!handler) {
      await shot('failure');
      throw new Fail(`unexpected page (expected one of: ${handlers.map((h) => h.name).join(', ')})\n${await describe(page, rec)}`);
    }
    const n = (used.get(handler.name) ?? 0) + 1;
    used.set(handler.name, n);
    if (n > (handler.max ?? 1)) {
      await shot('failure');
      throw new Fail(`the "${handler.name}" page came back (${n} times)\n${await describe(page, rec)}`);
    }
    log(`step ${step + 1}: ${handler.name} at ${page.url()}`);
    await shot(handler.name);
    await actAndWait(page, rec, () => handler.act(page), { done: finished });
  }
  if (!finished()) throw new Fail(`still not finished after ${maxSteps} pages\n${await describe(page, rec)}`);
}

const originOf = (u) => {
  try {
    return new URL(u).origin;
  } catch {
    return '';
  }
};

/** Handlers for the company IdP's own pages (company_idp.mjs). */
export function idpHandlers(idpIssuer, { username, password }) {
  const idpOrigin = originOf(idpIssuer);
  const at = (page) => originOf(page.url()) === idpOrigin;
  return [
    {
      name: 'idp-login',
      match: async (page) => at(page) && (await page.locator('#idp-sign-in').count()) > 0,
      act: async (page) => {
        await page.locator('input[name=username]').fill(username);
        await page.locator('input[name=password]').fill(password);
        await page.locator('#idp-sign-in').click({ noWaitAfter: true });
      },
    },
    {
      name: 'idp-consent',
      match: async (page) => at(page) && (await page.locator('#idp-allow').count()) > 0,
      act: async (page) => page.locator('#idp-allow').click({ noWaitAfter: true }),
    },
  ];
}

/** Opens the provider's end_session endpoint and confirms "Yes, sign me out". */
export async function idpSignOut(page, rec, endSessionEndpoint, log = () => {}) {
  log(`signing out at the provider: ${endSessionEndpoint}`);
  await page.goto(endSessionEndpoint, { waitUntil: 'load' });
  const yes = page.locator('button[name=logout][value=yes]');
  check((await yes.count()) === 1, `the provider's end-session page has no "Yes, sign me out" button\n${await describe(page, rec)}`);
  await actAndWait(page, rec, () => yes.click({ noWaitAfter: true }));
  const text = await pageText(page);
  check(/Signed out/.test(text), `signing out at the provider did not end on its "Signed out" page\n${await describe(page, rec)}`);
}
