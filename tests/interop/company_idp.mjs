#!/usr/bin/env node
// "The company's identity provider" for the interop rig: node-oidc-provider (certified OpenID
// Provider), in memory, at http://127.0.0.1:PORT, with
//   - two people: carol (carol@example.com, email_verified, groups mcp-users + staff) and dave
//     (dave@example.com, groups staff), each with a password;
//   - its own login and consent pages (plain HTML forms, no JavaScript) at /interaction/{uid};
//   - one confidential client, `portcullis` (client_secret_basic only, PKCE S256 required, code flow),
//     whose redirect URI is {rp}/login/{provider-id}/callback and whose back-channel logout URI
//     is {rp}/login/{provider-id}/backchannel-logout (OIDC Back-Channel Logout 1.0, `sid`
//     required), {rp} being Portcullis's issuer;
//   - the scope `groups` for the `groups` claim; every claim of a granted scope goes in the ID
//     token (conformIdTokenClaims off) and at userinfo;
//   - RP-initiated logout at the discovery's end_session_endpoint: "Yes, sign me out" ends the
//     session and sends a logout_token to every client the person signed in to;
//   - GET /_rig/backchannel: the back-channel logout deliveries so far (client, account, sid,
//     ok or the error, e.g. the status Portcullis answered), for the tests.
// Fresh RS256 and ES256 signing keys are generated at each start.
//
// Usage: node company_idp.mjs --port N --rp PORTCULLIS_ISSUER [--provider-id company]
//          [--client-id portcullis]
//   Secrets from the environment (argv is visible in ps): COMPANY_IDP_CLIENT_SECRET,
//   COMPANY_IDP_CAROL_PASSWORD, COMPANY_IDP_DAVE_PASSWORD.
//   Port 0 picks a free port. Prints "company_idp ready: issuer http://127.0.0.1:PORT" once
//   it serves; logs every request and protocol event to stdout.
//
// As a module: `startCompanyIdp(options)` resolves to { issuer, deliveries, close() }.
import crypto from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Provider from 'oidc-provider';
import { exportJWK, generateKeyPair } from 'jose';

export const PEOPLE = {
  carol: {
    sub: '7d3a1f0e-5c2b-4e8a-9f61-c4a0b2d8e911',
    email: 'carol@example.com',
    email_verified: true,
    name: 'Carol Example',
    given_name: 'Carol',
    family_name: 'Example',
    preferred_username: 'carol',
    groups: ['mcp-users', 'staff'],
  },
  dave: {
    sub: 'b61e9c42-08d7-4f3a-a5e2-3f9d7c1a6b04',
    email: 'dave@example.com',
    email_verified: true,
    name: 'Dave Example',
    given_name: 'Dave',
    family_name: 'Example',
    preferred_username: 'dave',
    groups: ['staff'],
  },
};

const esc = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

// Self-contained pages (no external fonts or scripts: the rig has no internet access).
function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} · Example Corp sign-in</title>
<style>
body{font-family:system-ui,sans-serif;background:#eef1f5;margin:0;padding:2rem 1rem;color:#1c2430}
main{max-width:22rem;margin:0 auto;background:#fff;border-radius:8px;padding:1.5rem;box-shadow:0 1px 3px rgba(0,0,0,.15)}
h1{font-size:1.25rem;margin:0 0 1rem}label{display:block;margin:.75rem 0 .25rem;font-weight:600}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}
button{margin-top:1rem;padding:.6rem 1rem;font-size:1rem;width:100%}.error{color:#a40000}
.corp{font-weight:700;color:#0b4a8b;margin-bottom:1rem}
</style></head>
<body><main><div class="corp">Example Corp</div>${body}</main></body></html>`;
}

function parseArgs(argv) {
  const o = {
    port: Number(process.env.COMPANY_IDP_PORT ?? 0),
    rp: process.env.COMPANY_IDP_RP,
    providerId: 'company',
    clientId: 'portcullis',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port') o.port = Number(v());
    else if (a === '--rp') o.rp = v();
    else if (a === '--provider-id') o.providerId = v();
    else if (a === '--client-id') o.clientId = v();
    else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const c of req) {
    size += c.length;
    if (size > 16 * 1024) throw new Error('form too large');
    chunks.push(c);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/**
 * @param {{port?: number, rp: string, providerId?: string, clientId?: string, clientSecret: string,
 *          passwords: {carol: string, dave: string}, log?: (m: string) => void}} opts
 */
export async function startCompanyIdp(opts) {
  const log = opts.log ?? ((m) => console.log(`${new Date().toISOString()} company_idp: ${m}`));
  const providerId = opts.providerId ?? 'company';
  const clientId = opts.clientId ?? 'portcullis';
  if (!/^[a-z0-9-]+$/.test(providerId)) throw new Error(`bad provider id ${providerId}`);
  if (!opts.rp) throw new Error('the relying party (Portcullis issuer) is required: --rp URL or COMPANY_IDP_RP');
  const rp = opts.rp.replace(/\/$/, '');
  if (!opts.clientSecret || opts.clientSecret.length < 32) {
    throw new Error('COMPANY_IDP_CLIENT_SECRET must be set (at least 32 characters)');
  }
  for (const who of Object.keys(PEOPLE)) {
    if (!opts.passwords?.[who]) throw new Error(`no password for ${who} (COMPANY_IDP_${who.toUpperCase()}_PASSWORD)`);
  }

  // The issuer includes the port, so listen first and hand requests to the provider once built.
  let handler = (req, res) => {
    res.statusCode = 503;
    res.end('starting');
  };
  const server = http.createServer((req, res) => handler(req, res));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;

  const keys = [];
  for (const [alg, kid] of [
    ['RS256', `rs-${crypto.randomBytes(4).toString('hex')}`],
    ['ES256', `es-${crypto.randomBytes(4).toString('hex')}`],
  ]) {
    const { privateKey } = await generateKeyPair(alg, { extractable: true });
    keys.push({ ...(await exportJWK(privateKey)), kid, alg, use: 'sig' });
  }

  const byUsername = PEOPLE;
  const bySub = new Map(Object.entries(PEOPLE).map(([username, p]) => [p.sub, { username, ...p }]));
  const callback = `${rp}/login/${providerId}/callback`;
  const backchannelUri = `${rp}/login/${providerId}/backchannel-logout`;
  const deliveries = [];

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: opts.clientSecret,
        client_name: 'Portcullis (MCP sign-in)',
        redirect_uris: [callback],
        response_types: ['code'],
        grant_types: ['authorization_code'],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: 'RS256',
        backchannel_logout_uri: backchannelUri,
        backchannel_logout_session_required: true,
      },
    ],
    jwks: { keys },
    cookies: {
      keys: [crypto.randomBytes(32).toString('base64url')],
      // Portcullis runs on the same host (another port), and cookies ignore ports: distinct names.
      names: { session: 'company_idp_session', interaction: 'company_idp_interaction', resume: 'company_idp_resume' },
    },
    scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'given_name', 'family_name', 'preferred_username'],
      groups: ['groups'],
    },
    // Claims of the granted scopes go in the ID token too, as most company IdPs do for groups.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, form) => {
          ctx.body = page(
            'Sign out',
            `<h1>Sign out of Example Corp?</h1>${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button>`,
          );
        },
        postLogoutSuccessSource: async (ctx) => {
          ctx.body = page('Signed out', '<h1>Signed out</h1><p>You have been signed out of Example Corp.</p>');
        },
      },
    },
    findAccount: async (ctx, sub) => {
      const p = bySub.get(sub);
      if (!p) return undefined;
      return {
        accountId: sub,
        claims: async () => {
          const { username, ...claims } = p;
          return { ...claims, sub };
        },
      };
    },
    renderError: async (ctx, out, error) => {
      log(`error page: ${JSON.stringify(out)}${error?.stack ? ` (${error.message})` : ''}`);
      ctx.type = 'html';
      ctx.body = page(
        'Error',
        `<h1>Sign-in error</h1><p class="error" id="error">${esc(out.error)}: ${esc(out.error_description ?? '')}</p>`,
      );
    },
    ttl: {
      AccessToken: 600,
      AuthorizationCode: 60,
      IdToken: 600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
      RefreshToken: 3600,
    },
    // The relying party is on loopback: node-oidc-provider refuses outbound requests (the
    // back-channel logout POST) to special-use addresses unless its dispatcher is dropped.
    fetch: (url, options) => {
      delete options.dispatcher;
      return globalThis.fetch(url, options);
    },
  });

  // Every request, one line; for the token endpoint also how the client authenticated and which
  // parameters it sent (names only), since that is where a relying party's mistakes show.
  provider.use(async (ctx, next) => {
    const started = Date.now();
    let extra = '';
    if (ctx.method === 'POST' && ctx.path === '/token') {
      const auth = ctx.get('authorization');
      extra = ` client-auth=${auth ? auth.split(' ')[0] : 'none in header'}`;
    }
    if (ctx.method === 'GET' && ctx.path === '/auth') {
      const q = new URLSearchParams(ctx.querystring);
      extra = ` params=${[...q.keys()].sort().join(',')} code_challenge_method=${q.get('code_challenge_method')} scope=${JSON.stringify(q.get('scope'))}`;
    }
    try {
      await next();
    } finally {
      log(`${ctx.method} ${ctx.path} -> ${ctx.status} (${Date.now() - started} ms)${extra}`);
    }
  });

  // node-oidc-provider accepts client_secret_post from a client registered for
  // client_secret_basic; a stricter provider (as some companies run) refuses it, and so do we.
  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path === '/token' && !/^basic /i.test(ctx.get('authorization'))) {
      log('POST /token without HTTP Basic client authentication: refused (the client is registered for client_secret_basic)');
      ctx.status = 401;
      ctx.set('www-authenticate', 'Basic realm="company_idp"');
      ctx.set('cache-control', 'no-store');
      ctx.body = { error: 'invalid_client', error_description: 'client authentication must use client_secret_basic' };
      return;
    }
    return next();
  });

  // Interactions (login, consent) and the rig's read-only view of back-channel deliveries.
  provider.use(async (ctx, next) => {
    if (ctx.path === '/_rig/backchannel' && ctx.method === 'GET') {
      ctx.body = { deliveries };
      return;
    }
    const m = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm|abort))?$/.exec(ctx.path);
    if (!m) return next();
    ctx.set('cache-control', 'no-store');
    const [, uid, action] = m;
    let details;
    try {
      details = await provider.interactionDetails(ctx.req, ctx.res);
    } catch (e) {
      ctx.status = 400;
      ctx.type = 'html';
      ctx.body = page('Error', `<h1>Sign-in error</h1><p class="error">This sign-in has expired or is unknown (${esc(e.message)}).</p>`);
      return;
    }
    if (details.uid !== uid) {
      ctx.status = 400;
      ctx.body = 'interaction mismatch';
      return;
    }
    const { prompt, params } = details;
    const client = await provider.Client.find(params.client_id);
    const clientName = client?.clientName ?? params.client_id;

    if (ctx.method === 'GET' && !action) {
      ctx.type = 'html';
      if (prompt.name === 'login') {
        ctx.body = page(
          'Sign in',
          `<h1>Sign in</h1><p>to continue to ${esc(clientName)}</p>
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<label for="username">Username</label><input id="username" type="text" name="username" required autofocus value="${esc(params.login_hint ?? '')}">
<label for="password">Password</label><input id="password" type="password" name="password" required>
<button type="submit" id="idp-sign-in">Sign in</button></form>`,
        );
      } else if (prompt.name === 'consent') {
        const scopes = String(params.scope ?? '').split(' ').filter(Boolean);
        ctx.body = page(
          'Allow access',
          `<h1>Allow ${esc(clientName)}?</h1><p>${esc(clientName)} asks for: ${scopes.map((s) => `<code>${esc(s)}</code>`).join(' ')}</p>
<form method="post" action="/interaction/${esc(uid)}/confirm"><button type="submit" id="idp-allow" name="decision" value="allow">Allow</button></form>
<form method="post" action="/interaction/${esc(uid)}/abort"><button type="submit" id="idp-deny">Deny</button></form>`,
        );
      } else {
        ctx.status = 400;
        ctx.body = page('Error', `<h1>Unsupported step</h1><p>${esc(prompt.name)}</p>`);
      }
      return;
    }
    if (ctx.method !== 'POST') {
      ctx.status = 405;
      return;
    }
    const form = await readForm(ctx.req);
    let result;
    if (action === 'login') {
      const username = form.get('username') ?? '';
      const person = Object.hasOwn(byUsername, username) ? byUsername[username] : undefined;
      const want = person ? Buffer.from(opts.passwords[username]) : Buffer.alloc(0);
      const got = Buffer.from(form.get('password') ?? '');
      const ok = person && want.length === got.length && crypto.timingSafeEqual(want, got);
      if (!ok) {
        log(`login failed for ${JSON.stringify(username)}`);
        ctx.status = 200;
        ctx.type = 'html';
        ctx.body = page(
          'Sign in',
          `<h1>Sign in</h1><p class="error" id="login-error">Wrong username or password.</p>
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<label for="username">Username</label><input id="username" type="text" name="username" required value="${esc(username)}">
<label for="password">Password</label><input id="password" type="password" name="password" required autofocus>
<button type="submit" id="idp-sign-in">Sign in</button></form>`,
        );
        return;
      }
      log(`login: ${username} (sub ${person.sub}) for client ${params.client_id}`);
      result = { login: { accountId: person.sub } };
    } else if (action === 'confirm') {
      const { details: missing } = prompt;
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      if (missing.missingResourceScopes) {
        for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) grant.addResourceScope(indicator, scopes.join(' '));
      }
      const grantId = await grant.save();
      log(`consent: ${bySub.get(details.session.accountId)?.username} allowed ${params.client_id} scope ${JSON.stringify(params.scope)}`);
      result = { consent: details.grantId ? {} : { grantId } };
    } else {
      result = { error: 'access_denied', error_description: 'The person declined.' };
    }
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: action !== 'login' });
    ctx.status = 303;
    ctx.redirect(returnTo);
  });

  for (const ev of ['authorization.error', 'grant.error', 'userinfo.error', 'end_session.error', 'server_error']) {
    provider.on(ev, (...args) => {
      const err = args.find((a) => a instanceof Error);
      log(`${ev}: ${err ? `${err.name}: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}` : ''}`);
    });
  }
  provider.on('grant.success', (ctx) => log(`grant.success: client ${ctx.oidc.client?.clientId}`));
  provider.on('end_session.success', (ctx) => log(`end_session.success (session of ${bySub.get(ctx.oidc.session?.accountId)?.username ?? 'someone'})`));
  provider.on('backchannel.success', (ctx, client, accountId, sid) => {
    const d = { client_id: client.clientId, uri: client.backchannelLogoutUri, account: bySub.get(accountId)?.username, sub: accountId, sid, ok: true, at: Date.now() };
    deliveries.push(d);
    log(`backchannel.success: ${JSON.stringify(d)}`);
  });
  provider.on('backchannel.error', (ctx, err, client, accountId, sid) => {
    const d = {
      client_id: client.clientId,
      uri: client.backchannelLogoutUri,
      account: bySub.get(accountId)?.username,
      sub: accountId,
      sid,
      ok: false,
      error: `${err.message}${err.cause ? ` (${err.cause.message ?? err.cause})` : ''}`,
      at: Date.now(),
    };
    deliveries.push(d);
    log(`backchannel.error: ${JSON.stringify(d)}`);
  });

  handler = provider.callback();
  log(`issuer ${issuer}; client ${clientId}: redirect_uri ${callback}, backchannel_logout_uri ${backchannelUri}; people ${Object.keys(PEOPLE).join(', ')}`);
  return {
    issuer,
    provider,
    deliveries,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

// CLI
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const o = parseArgs(process.argv.slice(2));
    if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) throw new Error(`bad port ${o.port}`);
    const idp = await startCompanyIdp({
      ...o,
      clientSecret: process.env.COMPANY_IDP_CLIENT_SECRET,
      passwords: { carol: process.env.COMPANY_IDP_CAROL_PASSWORD, dave: process.env.COMPANY_IDP_DAVE_PASSWORD },
    });
    console.log(`company_idp ready: issuer ${idp.issuer}`);
    for (const sig of ['SIGINT', 'SIGTERM']) {
      process.on(sig, () => idp.close().then(() => process.exit(0)));
    }
  } catch (e) {
    console.error(`company_idp: ${e.message}`);
    console.error('usage: node company_idp.mjs --port N --rp PORTCULLIS_ISSUER [--provider-id company] [--client-id portcullis]');
    console.error('       env COMPANY_IDP_CLIENT_SECRET, COMPANY_IDP_CAROL_PASSWORD, COMPANY_IDP_DAVE_PASSWORD');
    process.exit(2);
  }
}
