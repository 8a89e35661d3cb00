#!/usr/bin/env node
// The reference peer for `portcullis-load --peer`: node-oidc-provider configured as an MCP
// authorization server, so the benchmark can put Portcullis's figures beside a well-known
// implementation's, measured by the same generator on the same core.
//
// What it is (and the load tool relies on):
//   - issuer http://127.0.0.1:PORT; its default in-memory adapter (an LRU of 1000+1000 entries:
//     nothing is written anywhere; PEER_STORE_SIZE=N runs the same adapter over an LRU of N, for
//     loads whose state does not fit); its default signing, RS256 with an RSA-2048 key generated
//     at start (PEER_SIGNING_ALG=ES256 switches to a P-256 key, for comparison);
//   - dynamic registration open (RFC 7591, and RFC 7592 management), PKCE S256 required;
//   - resource indicators (RFC 8707) for two MCP servers, both with the scope `mcp:tools`:
//     the MCP server (`--resource`) gets JWT access tokens (RFC 9068), the second one
//     (`--opaque-resource`) opaque ones, because node-oidc-provider introspects only opaque tokens;
//   - refresh tokens for every client allowed the refresh_token grant (no offline_access needed),
//     rotated on every use (rotateRefreshToken: true), not ended with the browser session;
//   - introspection for one resource server client declared here (client_secret_basic), which may
//     introspect only tokens whose audience is the opaque MCP server; revocation enabled;
//   - its own login and consent pages at /interaction/{uid}: plain HTML forms (username and
//     password, then a consent form with buttons name="decision" value="approve" / "deny");
//     the interaction's signed cookie binds each form to the browser that started it;
//   - one person; the password is checked by a constant-time comparison of SHA-256 digests
//     (cheap: sign-in is not among the compared scenarios);
//   - no per-request output: one line when it serves, and server errors on stderr.
//
// Usage: NODE_ENV=production node peer.mjs --port N --resource URL [--opaque-resource URL]
//   Port 0 picks a free port. The rest from the environment (argv is visible in ps):
//   PEER_USERNAME, PEER_PASSWORD, PEER_RS_CLIENT_ID (default load-rs), PEER_RS_SECRET (at least
//   32 characters); PEER_PORT, PEER_RESOURCE and PEER_OPAQUE_RESOURCE stand in for the flags;
//   PEER_SIGNING_ALG (RS256 or ES256; RS256 is node-oidc-provider's default); PEER_STORE_SIZE.
import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import LRU from 'oidc-provider/lib/helpers/lru.js';

const SCOPE = 'mcp:tools';

function options(argv, env) {
  const o = {
    port: Number(env.PEER_PORT ?? 0),
    resource: env.PEER_RESOURCE,
    opaqueResource: env.PEER_OPAQUE_RESOURCE,
    username: env.PEER_USERNAME,
    password: env.PEER_PASSWORD,
    rsClientId: env.PEER_RS_CLIENT_ID ?? 'load-rs',
    rsSecret: env.PEER_RS_SECRET,
    alg: env.PEER_SIGNING_ALG ?? 'RS256',
    storeSize: env.PEER_STORE_SIZE === undefined ? undefined : Number(env.PEER_STORE_SIZE),
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
    const v = argv[++i];
    if (a === '--port') o.port = Number(v);
    else if (a === '--resource') o.resource = v;
    else if (a === '--opaque-resource') o.opaqueResource = v;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) throw new Error('--port must be 0..65535');
  if (!o.resource) throw new Error('the MCP server is required: --resource URL or PEER_RESOURCE');
  o.opaqueResource ??= `${o.resource}-opaque`;
  for (const r of [o.resource, o.opaqueResource]) {
    const u = new URL(r);
    if (u.hash || u.href !== r) throw new Error(`resource ${r} is not in canonical form (${u.href})`);
  }
  if (!o.username || !o.password) throw new Error('PEER_USERNAME and PEER_PASSWORD must be set');
  if (!o.rsSecret || o.rsSecret.length < 32) throw new Error('PEER_RS_SECRET must be set (at least 32 characters)');
  if (!['RS256', 'ES256'].includes(o.alg)) throw new Error('PEER_SIGNING_ALG must be RS256 or ES256');
  if (o.storeSize !== undefined && !(Number.isInteger(o.storeSize) && o.storeSize > 0)) {
    throw new Error('PEER_STORE_SIZE must be a positive integer');
  }
  return o;
}

const esc = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title></head><body><main>${body}</main></body></html>`;
}

function loginPage(uid, error) {
  return page(
    'Sign in',
    `<h1>Sign in</h1>${error ? `<p id="error">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<label for="username">Username</label><input id="username" type="text" name="username" required autofocus>
<label for="password">Password</label><input id="password" type="password" name="password" required>
<button type="submit">Sign in</button></form>`,
  );
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

function signingKey(alg) {
  const { privateKey } =
    alg === 'RS256'
      ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
      : crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomBytes(8).toString('base64url'), alg, use: 'sig' };
}

export async function startPeer(o) {
  // The issuer carries the port, so listen first and hand requests to the provider once built.
  let handler = (req, res) => {
    res.statusCode = 503;
    res.end('starting');
  };
  const server = http.createServer((req, res) => handler(req, res));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;

  const sha256 = (s) => crypto.createHash('sha256').update(s).digest();
  const passwordDigest = sha256(o.password);
  // One person; the subject is derived from the username so it is stable across restarts.
  const sub = crypto.createHash('sha256').update(`peer:${o.username}`).digest('base64url');

  const resourceServers = new Map([
    [o.resource, { accessTokenFormat: 'jwt', jwt: { sign: { alg: o.alg } } }],
    [o.opaqueResource, { accessTokenFormat: 'opaque' }],
  ]);

  // The default adapter's own code over a larger LRU (it takes the store as an argument); 15 s is
  // the clock tolerance the default adapter is given.
  const sized = o.storeSize && {
    adapter: ((store) => (model) => new MemoryAdapter(model, store, 15))(new LRU({ maxSize: o.storeSize })),
  };

  const provider = new Provider(issuer, {
    ...sized,
    clients: [
      {
        // The MCP server's credentials for introspection: no grants of its own.
        client_id: o.rsClientId,
        client_secret: o.rsSecret,
        client_name: 'Load MCP server (introspection)',
        redirect_uris: [],
        response_types: [],
        grant_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    clientDefaults: {
      grant_types: ['authorization_code'],
      id_token_signed_response_alg: o.alg,
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    jwks: { keys: [signingKey(o.alg)] },
    cookies: {
      keys: [crypto.randomBytes(32).toString('base64url')],
      names: { session: 'peer_session', interaction: 'peer_interaction', resume: 'peer_resume' },
    },
    responseTypes: ['code'],
    pkce: { required: () => true },
    // Refresh tokens for every client allowed the grant (MCP clients do not ask for offline_access),
    // living past the browser session, rotated on every use.
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    expiresWithSession: async () => false,
    rotateRefreshToken: true,
    // Portcullis's defaults, so lifetimes play no part in the comparison.
    ttl: {
      AccessToken: 900,
      AuthorizationCode: 60,
      IdToken: 900,
      Interaction: 600,
      RefreshToken: 30 * 86400,
      Session: 12 * 3600,
      Grant: 90 * 86400,
    },
    clientBasedCORS: () => false,
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true },
      registrationManagement: { enabled: true },
      revocation: {
        enabled: true,
        allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId,
      },
      introspection: {
        enabled: true,
        // The resource server learns about tokens for itself only.
        allowedPolicy: async (ctx, client, token) => client.clientId === o.rsClientId && token.aud === o.opaqueResource,
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => oneOf,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, indicator) => {
          const rs = resourceServers.get(indicator);
          if (!rs) throw new Provider.errors.InvalidTarget();
          return { scope: SCOPE, audience: indicator, accessTokenTTL: 900, ...rs };
        },
      },
    },
    findAccount: async (ctx, id) =>
      id === sub ? { accountId: sub, claims: async () => ({ sub }) } : undefined,
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = page('Error', `<h1>Error</h1><p id="error">${esc(out.error)}: ${esc(out.error_description ?? '')}</p>`);
    },
  });

  // The login and consent pages.
  provider.use(async (ctx, next) => {
    const m = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm))?$/.exec(ctx.path);
    if (!m) return next();
    ctx.set('cache-control', 'no-store');
    const [, uid, action] = m;
    let details;
    try {
      details = await provider.interactionDetails(ctx.req, ctx.res);
    } catch {
      ctx.status = 400;
      ctx.type = 'html';
      ctx.body = page('Error', '<h1>Error</h1><p id="error">This sign-in has expired or is unknown.</p>');
      return;
    }
    if (details.uid !== uid) {
      ctx.status = 400;
      ctx.body = 'interaction mismatch';
      return;
    }
    const { prompt, params } = details;
    if (ctx.method === 'GET' && !action) {
      ctx.type = 'html';
      if (prompt.name === 'login') {
        ctx.body = loginPage(uid);
      } else if (prompt.name === 'consent') {
        const client = await provider.Client.find(params.client_id);
        const name = client?.clientName ?? params.client_id;
        const resources = [params.resource].flat().filter(Boolean);
        ctx.body = page(
          'Allow access',
          `<h1>Allow ${esc(name)}?</h1><p>${esc(name)} (self-asserted name) asks for
${esc(String(params.scope ?? ''))} on ${resources.map(esc).join(', ')}, and will be sent back to
${esc(new URL(params.redirect_uri).host)}.</p>
<form method="post" action="/interaction/${esc(uid)}/confirm">
<button type="submit" name="decision" value="approve">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button></form>`,
        );
      } else {
        ctx.status = 400;
        ctx.body = page('Error', `<h1>Unsupported step</h1><p>${esc(prompt.name)}</p>`);
      }
      return;
    }
    if (ctx.method !== 'POST' || !action || (action === 'login') !== (prompt.name === 'login')) {
      ctx.status = 400;
      ctx.body = 'unexpected form';
      return;
    }
    const form = await readForm(ctx.req);
    let result;
    if (action === 'login') {
      const ok = form.get('username') === o.username
        && crypto.timingSafeEqual(sha256(form.get('password') ?? ''), passwordDigest);
      if (!ok) {
        ctx.type = 'html';
        ctx.body = loginPage(uid, 'Wrong username or password.');
        return;
      }
      result = { login: { accountId: sub } };
    } else if (form.get('decision') === 'approve') {
      const missing = prompt.details;
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      const grantId = await grant.save();
      result = { consent: details.grantId ? {} : { grantId } };
    } else {
      result = { error: 'access_denied', error_description: 'The person declined.' };
    }
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
      mergeWithLastSubmission: action !== 'login',
    });
    ctx.status = 303;
    ctx.redirect(returnTo);
  });

  provider.on('server_error', (ctx, err) => console.error(`server_error: ${err?.stack ?? err}`));
  handler = provider.callback();
  return { issuer, server };
}

try {
  const o = options(process.argv.slice(2), process.env);
  const { issuer, server } = await startPeer(o);
  // A clean exit on SIGTERM (how the load tool stops it), so `node --cpu-prof` writes its profile.
  process.once('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
  console.log(
    `peer ready: issuer ${issuer}, resources ${o.resource} (JWT) and ${o.opaqueResource} (opaque), ${o.alg}, `
      + `store ${o.storeSize ? `LRU of ${o.storeSize}` : 'the default adapter'}`,
  );
} catch (e) {
  console.error(`peer: ${e.message}`);
  process.exit(2);
}
