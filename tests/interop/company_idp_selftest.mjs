#!/usr/bin/env node
// Self-test of the company IdP (company_idp.mjs) with a small relying party of our own, so that
// a failure of company-signin can be told apart from a broken provider. The RP serves the same
// paths Portcullis does ({rp}/login/company/callback and /backchannel-logout) and is as strict
// as Portcullis is meant to be: code + PKCE S256 + state + nonce, client_secret_basic, the ID
// token verified against the JWKS (iss, aud, exp, nonce), RFC 9207 `iss` in the response.
//
// Checks:
//   1. discovery: issuer, endpoints, S256, `groups` in scopes_supported, back-channel logout
//      (with sid) supported, the JWKS has signing keys;
//   2. headless chromium: carol signs in (a wrong password first: the provider says so), allows,
//      and the RP gets an ID token with email_verified, groups [mcp-users, staff] and a sid;
//      userinfo agrees; the token endpoint refuses a replayed code and client_secret_post;
//   3. dave, in a fresh browser, gets groups [staff] only;
//   4. carol signs out at the provider ("Yes, sign me out"): the RP receives one logout_token
//      (signed, iss, aud, the back-channel event, carol's sub and her session's sid, no nonce)
//      and the provider records the delivery as successful; her next authorization asks for a
//      password again.
//
// Usage: node company_idp_selftest.mjs [--flow DIR]     exit 0 on success, 1 with a reason.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { launchBrowser } from './browser.mjs';
import { startCompanyIdp } from './company_idp.mjs';
import { Fail, check, recordNavigation, drive, idpHandlers, idpSignOut, describe, pageText } from './company_browser.mjs';

const NAME = 'company_idp_selftest';
const HERE = path.dirname(fileURLToPath(import.meta.url));
const t0 = Date.now();
const log = (m) => console.log(`${NAME} [+${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);
const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

function parseArgs(argv) {
  const o = { flow: path.join(HERE, 'out', 'flow', 'company-idp') };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--flow') o.flow = argv[++i];
    else throw new Fail(`unknown argument ${argv[i]}`);
  }
  return o;
}

// The relying party: one pending authorization per state; results per sub.
function startRp({ clientId, clientSecret, providerId }) {
  const pending = new Map();
  const signIns = []; // { username, claims, userinfo }
  const logouts = []; // verified logout_token payloads, or { error }
  let meta;
  let jwks;
  let base;
  const rp = {
    signIns,
    logouts,
    setProvider(m) {
      meta = m;
      jwks = createRemoteJWKSet(new URL(m.jwks_uri));
    },
    get base() {
      return base;
    },
    get callback() {
      return `${base}/login/${providerId}/callback`;
    },
    lastCode: undefined,
  };
  const basic = `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`;

  const send = (res, status, body, type = 'text/html; charset=utf-8') => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
    res.end(body);
  };
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, base);
    try {
      if (req.method === 'GET' && url.pathname === '/start') {
        const state = crypto.randomBytes(16).toString('base64url');
        const nonce = crypto.randomBytes(16).toString('base64url');
        const verifier = crypto.randomBytes(32).toString('base64url');
        pending.set(state, { nonce, verifier });
        const a = new URL(meta.authorization_endpoint);
        a.search = new URLSearchParams({
          response_type: 'code',
          client_id: clientId,
          redirect_uri: rp.callback,
          scope: 'openid email profile groups',
          state,
          nonce,
          code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'),
          code_challenge_method: 'S256',
        }).toString();
        res.writeHead(302, { location: a.href });
        return res.end();
      }
      if (req.method === 'GET' && url.pathname === `/login/${providerId}/callback`) {
        const state = url.searchParams.get('state');
        const p = pending.get(state);
        pending.delete(state);
        if (!p) return send(res, 400, 'unknown state');
        if (url.searchParams.get('error')) return send(res, 400, `provider error ${url.searchParams.get('error')}`);
        if (url.searchParams.get('iss') !== meta.issuer) return send(res, 400, `iss ${url.searchParams.get('iss')} is not ${meta.issuer}`);
        const code = url.searchParams.get('code');
        rp.lastCode = { code, verifier: p.verifier };
        const tr = await fetch(meta.token_endpoint, {
          method: 'POST',
          headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: rp.callback, code_verifier: p.verifier }),
        });
        const tokens = await tr.json();
        if (tr.status !== 200) return send(res, 502, `token endpoint ${tr.status}: ${JSON.stringify(tokens)}`);
        const { payload } = await jwtVerify(tokens.id_token, jwks, {
          issuer: meta.issuer,
          audience: clientId,
          algorithms: ['RS256'],
          maxTokenAge: '10m',
        });
        if (payload.nonce !== p.nonce) return send(res, 400, 'nonce mismatch');
        const ui = await (await fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${tokens.access_token}` } })).json();
        signIns.push({ username: payload.preferred_username, claims: payload, userinfo: ui });
        return send(res, 200, `<!DOCTYPE html><title>RP</title><p id="rp-signed-in">signed in as ${payload.preferred_username}</p>`);
      }
      if (req.method === 'POST' && url.pathname === `/login/${providerId}/backchannel-logout`) {
        const chunks = [];
        for await (const c of req) chunks.push(c);
        const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
        const token = form.get('logout_token');
        try {
          check(token, 'no logout_token');
          // OIDC Back-Channel Logout 1.0 §2.6.
          const { payload, protectedHeader } = await jwtVerify(token, jwks, {
            issuer: meta.issuer,
            audience: clientId,
            algorithms: ['RS256'],
            maxTokenAge: '2m',
          });
          check(payload.events && typeof payload.events[BACKCHANNEL_EVENT] === 'object', `no back-channel event: ${JSON.stringify(payload.events)}`);
          check(payload.sub || payload.sid, 'neither sub nor sid');
          check(!('nonce' in payload), 'a logout_token must not carry a nonce');
          check(payload.jti, 'no jti');
          logouts.push({ payload, typ: protectedHeader.typ });
          return send(res, 200, '', 'text/plain');
        } catch (e) {
          logouts.push({ error: e.message });
          return send(res, 400, JSON.stringify({ error: 'invalid_request', error_description: e.message }), 'application/json');
        }
      }
      send(res, 404, 'not found', 'text/plain');
    } catch (e) {
      send(res, 500, `rp error: ${e.message}`, 'text/plain');
    }
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      base = `http://127.0.0.1:${server.address().port}`;
      rp.close = () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); });
      resolve(rp);
    });
  });
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  fs.mkdirSync(o.flow, { recursive: true });
  const clientId = 'portcullis';
  const clientSecret = crypto.randomBytes(32).toString('base64url');
  const passwords = { carol: `carol-${crypto.randomBytes(6).toString('hex')}`, dave: `dave-${crypto.randomBytes(6).toString('hex')}` };

  const rp = await startRp({ clientId, clientSecret, providerId: 'company' });
  const idp = await startCompanyIdp({ port: 0, rp: rp.base, clientSecret, passwords, log: (m) => log(`idp: ${m}`) });
  let browser;
  try {
    // 1. discovery and keys.
    const meta = await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json();
    check(meta.issuer === idp.issuer, `discovery issuer ${meta.issuer} is not ${idp.issuer}`);
    for (const k of ['authorization_endpoint', 'token_endpoint', 'jwks_uri', 'userinfo_endpoint', 'end_session_endpoint']) {
      check(typeof meta[k] === 'string' && meta[k].startsWith(idp.issuer), `discovery ${k}: ${meta[k]}`);
    }
    check(meta.code_challenge_methods_supported?.includes('S256'), 'S256 not supported');
    check(meta.scopes_supported?.includes('groups'), `scope groups not in ${JSON.stringify(meta.scopes_supported)}`);
    check(meta.backchannel_logout_supported === true && meta.backchannel_logout_session_supported === true, 'back-channel logout (with sid) not advertised');
    const keys = (await (await fetch(meta.jwks_uri)).json()).keys ?? [];
    check(keys.some((k) => k.alg === 'RS256' && k.use === 'sig' && !k.d), `JWKS has no public RS256 key: ${JSON.stringify(keys.map((k) => k.kid))}`);
    check(keys.every((k) => !k.d && !k.p), 'the JWKS publishes private key material');
    log(`discovery OK: ${meta.issuer}, ${keys.length} keys (${keys.map((k) => k.alg).join(', ')})`);
    rp.setProvider(meta);

    browser = await launchBrowser();
    const signIn = async (username, { wrongPasswordFirst = false, context } = {}) => {
      const ctx = context ?? (await browser.newContext({ viewport: { width: 1280, height: 900 } }));
      const page = await ctx.newPage();
      page.setDefaultTimeout(20_000);
      const rec = recordNavigation(page);
      let n = 0;
      const shot = async (name) => {
        n++;
        await page.screenshot({ path: path.join(o.flow, `${username}-${String(n).padStart(2, '0')}-${name}.png`), fullPage: true }).catch(() => {});
      };
      const before = rp.signIns.length;
      await page.goto(`${rp.base}/start`, { waitUntil: 'load' });
      if (wrongPasswordFirst) {
        check((await page.locator('#idp-sign-in').count()) === 1, `no provider login form\n${await describe(page, rec)}`);
        await page.locator('input[name=username]').fill(username);
        await page.locator('input[name=password]').fill('not-the-password');
        await page.locator('#idp-sign-in').click();
        await page.waitForLoadState('load');
        check((await page.locator('#login-error').count()) === 1, `a wrong password was not refused\n${await describe(page, rec)}`);
        log(`${username}: a wrong password is refused ("${await page.locator('#login-error').innerText()}")`);
      }
      await drive(page, rec, idpHandlers(idp.issuer, { username, password: passwords[username] }), {
        finished: () => rp.signIns.length > before || originOf(page.url()) === rp.base,
        log: (m) => log(`${username}: ${m}`),
        shot,
      });
      await page.waitForLoadState('load');
      const text = await pageText(page);
      check(rp.signIns.length === before + 1, `the RP did not complete ${username}'s sign-in: ${text}\n${await describe(page, rec)}`);
      return { ctx, page, rec, result: rp.signIns[rp.signIns.length - 1] };
    };
    const originOf = (u) => new URL(u).origin;

    // 2. carol.
    const carol = await signIn('carol', { wrongPasswordFirst: true });
    const c = carol.result.claims;
    log(`carol's ID token: ${JSON.stringify(c)}`);
    check(c.sub === '7d3a1f0e-5c2b-4e8a-9f61-c4a0b2d8e911', `carol's sub ${c.sub}`);
    check(c.email === 'carol@example.com' && c.email_verified === true, `carol's email claims: ${c.email} ${c.email_verified}`);
    check(JSON.stringify(c.groups) === JSON.stringify(['mcp-users', 'staff']), `carol's groups in the ID token: ${JSON.stringify(c.groups)}`);
    check(typeof c.sid === 'string' && c.sid, 'no sid in the ID token (backchannel_logout_session_required)');
    check(JSON.stringify(carol.result.userinfo.groups) === JSON.stringify(c.groups), `userinfo groups ${JSON.stringify(carol.result.userinfo)}`);

    // The token endpoint is strict: a replayed code, and the right secret sent the wrong way, fail.
    const basic = `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`;
    const replay = await fetch(meta.token_endpoint, {
      method: 'POST',
      headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code: rp.lastCode.code, redirect_uri: rp.callback, code_verifier: rp.lastCode.verifier }),
    });
    const replayBody = await replay.json();
    check(replay.status === 400 && replayBody.error === 'invalid_grant', `a replayed code: ${replay.status} ${JSON.stringify(replayBody)}`);
    const post = await fetch(meta.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code: 'x', redirect_uri: rp.callback, client_id: clientId, client_secret: clientSecret }),
    });
    const postBody = await post.json();
    check(post.status === 401 && postBody.error === 'invalid_client', `client_secret_post: ${post.status} ${JSON.stringify(postBody)}`);
    log('token endpoint: a replayed code gets invalid_grant, client_secret_post gets invalid_client');

    // 3. dave.
    const dave = await signIn('dave');
    const d = dave.result.claims;
    check(d.sub === 'b61e9c42-08d7-4f3a-a5e2-3f9d7c1a6b04' && JSON.stringify(d.groups) === JSON.stringify(['staff']), `dave's claims: ${JSON.stringify(d)}`);
    log(`dave's groups: ${JSON.stringify(d.groups)}`);
    await dave.ctx.close();

    // 4. carol signs out at the provider: back-channel logout to the RP.
    const deliveriesBefore = idp.deliveries.length;
    await idpSignOut(carol.page, carol.rec, meta.end_session_endpoint, log);
    check(rp.logouts.length === 1, `the RP received ${rp.logouts.length} logout tokens, expected 1`);
    const lo = rp.logouts[0];
    check(!lo.error, `the RP refused the logout_token: ${lo.error}`);
    log(`logout_token: typ=${lo.typ} ${JSON.stringify(lo.payload)}`);
    check(lo.payload.sub === c.sub, `logout_token sub ${lo.payload.sub}, expected carol's ${c.sub}`);
    check(lo.payload.sid === c.sid, `logout_token sid ${lo.payload.sid}, expected the ID token's ${c.sid}`);
    const mine = idp.deliveries.slice(deliveriesBefore);
    check(mine.length === 1 && mine[0].ok && mine[0].account === 'carol', `provider deliveries: ${JSON.stringify(mine)}`);
    const view = await (await fetch(`${idp.issuer}/_rig/backchannel`)).json();
    check(view.deliveries?.length === idp.deliveries.length, `/_rig/backchannel: ${JSON.stringify(view)}`);

    // Her provider session is gone: the next authorization asks for a password again.
    await carol.page.goto(`${rp.base}/start`, { waitUntil: 'load' });
    check((await carol.page.locator('#idp-sign-in').count()) === 1, `after signing out, the provider did not ask carol to sign in again\n${await describe(carol.page, carol.rec)}`);
    await carol.ctx.close();
    log('PASS: discovery, JWKS, login + consent for carol and dave, groups in the ID token and userinfo, back-channel logout with sub and sid');
  } finally {
    if (browser) await browser.close().catch(() => {});
    await idp.close();
    await rp.close();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`${NAME}: FAIL: ${e instanceof Fail ? e.message : e?.stack ?? e}`);
    process.exit(1);
  },
);
