#!/usr/bin/env node
// A small MCP server (official TypeScript SDK, Streamable HTTP) that is an OAuth 2.1
// resource server for Portcullis:
//   - RFC 9728 protected-resource metadata at /.well-known/oauth-protected-resource/mcp
//     and /.well-known/oauth-protected-resource;
//   - 401 + WWW-Authenticate (resource_metadata, scope) without a valid token;
//   - verifies RFC 9068 JWT access tokens against the AS's JWKS (typ at+jwt, iss, aud, exp),
//     or, with --introspect, asks the AS's RFC 7662 introspection endpoint about every token
//     (HTTP Basic with the credentials `portcullis resource add --introspection` printed) and
//     requires active:true, aud == this server's URL, iss == the issuer, an unexpired exp;
//   - DPoP (RFC 9449): a token with `cnf.jkt` only as `Authorization: DPoP` with a proof (typ
//     dpop+jwt, asymmetric alg, embedded public jwk, htm/htu of this request, recent iat, unused
//     jti, `ath` = the token's hash) whose key's thumbprint is `cnf.jkt`; never as Bearer;
//   - one tool, `whoami`, returning the token's sub and scope (and `cnf_jkt` when bound);
//   - GET /stats: the distinct access-token jti values it accepted (in total and per client_id).
//
// Usage: node mcp_server.mjs [--port N] [--issuer URL] [--name NAME]
//                           [--introspect [--client-id ID] [--client-secret SECRET]]
//   or env MCP_PORT, PORTCULLIS_ISSUER (AS_ISSUER), MCP_INTROSPECTION_CLIENT_ID,
//   MCP_INTROSPECTION_CLIENT_SECRET (prefer the env for the secret: argv is visible in ps).
//   Port 0 picks a free port; the chosen port is printed as
//   "mcp_server listening on http://127.0.0.1:PORT/mcp".
import express from 'express';
import crypto from 'node:crypto';
import { calculateJwkThumbprint, createRemoteJWKSet, EmbeddedJWK, jwtVerify, errors as joseErrors } from 'jose';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';

const SCOPE = 'mcp:tools';

function parseArgs(argv) {
  const opts = {
    port: Number(process.env.MCP_PORT ?? 0),
    issuer: process.env.PORTCULLIS_ISSUER ?? process.env.AS_ISSUER,
    introspect: false,
    name: 'Portcullis interop MCP server',
    clientId: process.env.MCP_INTROSPECTION_CLIENT_ID,
    clientSecret: process.env.MCP_INTROSPECTION_CLIENT_SECRET,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--port') opts.port = Number(argv[++i]);
    else if (a === '--issuer') opts.issuer = argv[++i];
    else if (a === '--introspect') opts.introspect = true;
    else if (a === '--name') opts.name = argv[++i];
    else if (a === '--client-id') opts.clientId = argv[++i];
    else if (a === '--client-secret') opts.clientSecret = argv[++i];
    else if (a === '--help' || a === '-h') {
      console.log(
        'usage: node mcp_server.mjs [--port N] [--issuer URL] [--name NAME] [--introspect [--client-id ID] [--client-secret SECRET]]',
      );
      process.exit(0);
    } else {
      console.error(`mcp_server: unknown argument ${a}`);
      process.exit(2);
    }
  }
  if (!opts.issuer) {
    console.error('mcp_server: the AS issuer is required (--issuer or PORTCULLIS_ISSUER)');
    process.exit(2);
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    console.error(`mcp_server: bad port ${opts.port}`);
    process.exit(2);
  }
  if (opts.introspect && (!opts.clientId || !opts.clientSecret)) {
    console.error(
      'mcp_server: --introspect needs the introspection credentials (--client-id/--client-secret or ' +
        'MCP_INTROSPECTION_CLIENT_ID/MCP_INTROSPECTION_CLIENT_SECRET)',
    );
    process.exit(2);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const issuer = opts.issuer; // byte-identical to the AS metadata `issuer`
const jwks = createRemoteJWKSet(new URL(`${issuer.replace(/\/$/, '')}/jwks.json`), {
  cooldownDuration: 0, // refetch at once when an unknown kid shows up (key rotation)
});

// Filled in once the port is known.
let resourceUrl = '';
let origin = '';

// Accepted tokens, for /stats.
const acceptedJti = new Set();
const jtiByClient = new Map(); // client_id -> Set(jti)
let acceptedRequests = 0;
let rejected = 0;
let dpopAccepted = 0;
// DPoP proof jti values seen, with when they may be forgotten (ms).
const seenProofs = new Map();
const DPOP_ALGS = ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'];
const DPOP_MAX_AGE_S = 300;

function log(...args) {
  console.log(new Date().toISOString(), 'mcp_server:', ...args);
}

function prm() {
  return {
    resource: resourceUrl,
    authorization_servers: [issuer],
    scopes_supported: [SCOPE],
    bearer_methods_supported: ['header'],
    resource_name: opts.name,
  };
}

function challenge(res, status, error, description) {
  const parts = [];
  if (error) parts.push(`error="${error}"`);
  if (description) parts.push(`error_description="${description.replace(/["\\]/g, '')}"`);
  parts.push(`resource_metadata="${origin}/.well-known/oauth-protected-resource/mcp"`);
  parts.push(`scope="${SCOPE}"`);
  res.set('WWW-Authenticate', `Bearer ${parts.join(', ')}`);
  res.status(status).json({ error: error ?? 'unauthorized', error_description: description ?? 'a bearer token is required' });
}

// Why a token was refused: 401 invalid_token with this description.
class Refused extends Error {}

async function verifyJwt(token) {
  try {
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      issuer,
      audience: resourceUrl,
      typ: 'at+jwt',
      algorithms: ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'],
      requiredClaims: ['exp', 'sub', 'jti'],
      clockTolerance: 0,
    });
    return { payload, how: `alg=${protectedHeader.alg} kid=${protectedHeader.kid}` };
  } catch (e) {
    const expired = e instanceof joseErrors.JWTExpired;
    throw new Refused(expired ? 'the access token expired' : `the access token is invalid: ${e.message}`, {
      cause: `${e.code ?? e.name}: ${e.message}`,
    });
  }
}

// RFC 7662: ask the AS. Every request asks again (no cache), so a revocation takes effect at once.
let introspectionEndpoint = '';
async function introspectionUrl() {
  if (introspectionEndpoint) return introspectionEndpoint;
  let advertised;
  try {
    const meta = await (await fetch(`${issuer.replace(/\/$/, '')}/.well-known/oauth-authorization-server`)).json();
    advertised = meta.introspection_endpoint;
  } catch (e) {
    log(`could not read the AS metadata: ${e.message}`);
  }
  if (!advertised) log('WARNING: the AS metadata has no introspection_endpoint; using {issuer}/introspect');
  introspectionEndpoint = advertised ?? `${issuer.replace(/\/$/, '')}/introspect`;
  return introspectionEndpoint;
}

const introspection = { calls: 0, active: 0, inactive: 0, refused: 0, errors: 0 };

async function verifyIntrospect(token) {
  const url = await introspectionUrl();
  // RFC 6749 §2.3.1: each part form-urlencoded, then base64.
  const basic = Buffer.from(`${encodeURIComponent(opts.clientId)}:${encodeURIComponent(opts.clientSecret)}`).toString('base64');
  introspection.calls++;
  let status;
  let text;
  try {
    const r = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
    });
    status = r.status;
    text = await r.text();
  } catch (e) {
    introspection.errors++;
    throw new Refused('the authorization server could not be asked about the token', { cause: `POST ${url}: ${e.message}` });
  }
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (status !== 200 || !body || typeof body !== 'object') {
    introspection.errors++;
    throw new Refused('the authorization server could not be asked about the token', {
      cause: `POST ${url} -> ${status}: ${String(text).slice(0, 300)}`,
    });
  }
  if (body.active !== true) {
    introspection.inactive++;
    throw new Refused('the access token is not active', { cause: `introspection: ${JSON.stringify(body)}` });
  }
  introspection.active++;
  const auds = Array.isArray(body.aud) ? body.aud : [body.aud];
  const now = Math.floor(Date.now() / 1000);
  const problem = !auds.includes(resourceUrl)
    ? `aud ${JSON.stringify(body.aud)} is not ${resourceUrl}`
    : body.iss !== undefined && body.iss !== issuer
      ? `iss ${JSON.stringify(body.iss)} is not ${issuer}`
      : typeof body.exp === 'number' && body.exp <= now
        ? `exp ${body.exp} has passed (now ${now})`
        : !body.sub || !body.jti
          ? 'no sub or jti'
          : body.token_type !== undefined && String(body.token_type).toLowerCase() !== 'bearer'
            ? `token_type ${JSON.stringify(body.token_type)}`
            : '';
  if (problem) {
    introspection.refused++;
    throw new Refused(`the access token is not for this server: ${problem}`, { cause: `active introspection answer refused: ${JSON.stringify(body)}` });
  }
  return { payload: body, how: 'introspected' };
}

// RFC 9449 §4.3 and §7: the request's DPoP proof, for the access token `token` bound to `jkt`.
async function verifyProof(req, token, jkt) {
  const proofs = req.headers['dpop'];
  if (typeof proofs !== 'string' || !proofs) throw new Refused('a DPoP proof is required with a DPoP-bound token');
  let verified;
  try {
    verified = await jwtVerify(proofs, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: DPOP_ALGS });
  } catch (e) {
    throw new Refused(`the DPoP proof is invalid: ${e.message}`);
  }
  const { payload, protectedHeader } = verified;
  const now = Math.floor(Date.now() / 1000);
  const htu = `${origin}${req.originalUrl.split(/[?#]/)[0]}`;
  const ath = crypto.createHash('sha256').update(token).digest('base64url');
  if (['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'].some((m) => m in protectedHeader.jwk)) throw new Refused('the DPoP proof carries a private key');
  if (payload.htm !== req.method) throw new Refused(`the DPoP proof's htm ${payload.htm} is not ${req.method}`);
  if (payload.htu?.split(/[?#]/)[0] !== htu) throw new Refused(`the DPoP proof's htu ${payload.htu} is not ${htu}`);
  if (typeof payload.iat !== 'number' || payload.iat < now - DPOP_MAX_AGE_S || payload.iat > now + 60) throw new Refused('the DPoP proof is stale');
  if (payload.ath !== ath) throw new Refused('the DPoP proof\'s ath is not the hash of the access token');
  if ((await calculateJwkThumbprint(protectedHeader.jwk, 'sha256')) !== jkt) throw new Refused('the DPoP proof is signed by another key than cnf.jkt');
  for (const [id, until] of seenProofs) if (until < Date.now()) seenProofs.delete(id);
  if (typeof payload.jti !== 'string' || seenProofs.has(payload.jti)) throw new Refused('the DPoP proof was used before');
  seenProofs.set(payload.jti, Date.now() + (DPOP_MAX_AGE_S + 60) * 1000);
}

async function requireToken(req, res, next) {
  const header = req.get('authorization') ?? '';
  const dpop = /^DPoP\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(header);
  const m = dpop ?? /^Bearer\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(header);
  if (!m) {
    rejected++;
    log(`${req.method} ${req.path}: no bearer token -> 401`);
    return challenge(res, 401);
  }
  let verified;
  try {
    verified = await (opts.introspect ? verifyIntrospect(m[1]) : verifyJwt(m[1]));
  } catch (e) {
    rejected++;
    if (!(e instanceof Refused)) {
      log(`${req.method} ${req.path}: error verifying the token -> 401:`, e);
      return challenge(res, 401, 'invalid_token', 'the access token could not be verified');
    }
    log(`${req.method} ${req.path}: token rejected (${e.cause ?? e.message}) -> 401`);
    return challenge(res, 401, 'invalid_token', e.message);
  }
  const { payload, how } = verified;
  // A DPoP-bound token (RFC 9449 §6): only with the DPoP scheme and a proof by its key.
  const jkt = payload.cnf?.jkt;
  try {
    if (jkt && !dpop) throw new Refused('a DPoP-bound token must be sent with the DPoP scheme');
    if (dpop && !jkt) throw new Refused('the DPoP scheme needs a DPoP-bound token');
    if (jkt) await verifyProof(req, m[1], jkt);
  } catch (e) {
    rejected++;
    log(`${req.method} ${req.path}: DPoP refused (${e.message}) -> 401`);
    res.set('WWW-Authenticate', `DPoP error="invalid_dpop_proof", algs="${DPOP_ALGS.join(' ')}"`);
    return res.status(401).json({ error: 'invalid_dpop_proof', error_description: e.message });
  }
  if (jkt) dpopAccepted++;
  const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : [];
  if (!scopes.includes(SCOPE)) {
    rejected++;
    log(`${req.method} ${req.path}: token jti=${payload.jti} lacks scope ${SCOPE} (has "${payload.scope}") -> 403`);
    res.set(
      'WWW-Authenticate',
      `Bearer error="insufficient_scope", scope="${SCOPE}", resource_metadata="${origin}/.well-known/oauth-protected-resource/mcp"`,
    );
    return res.status(403).json({ error: 'insufficient_scope' });
  }
  acceptedRequests++;
  if (!acceptedJti.has(payload.jti)) {
    acceptedJti.add(payload.jti);
    const cid = String(payload.client_id ?? '');
    if (!jtiByClient.has(cid)) jtiByClient.set(cid, new Set());
    jtiByClient.get(cid).add(payload.jti);
    log(
      `accepted new token jti=${payload.jti} sub=${payload.sub} client_id=${cid} scope="${payload.scope}" ` +
        `${how} exp_in=${payload.exp - Math.floor(Date.now() / 1000)}s`,
    );
  }
  req.auth = { token: m[1], payload };
  return next();
}

function buildMcpServer(auth) {
  const server = new McpServer({ name: 'portcullis-interop', version: '0.0.0' });
  server.registerTool(
    'whoami',
    { description: "Returns the access token's subject and scope." },
    async () => {
      const result = {
        sub: auth.payload.sub,
        scope: auth.payload.scope,
        client_id: auth.payload.client_id,
        jti: auth.payload.jti,
        ...(auth.payload.cnf?.jkt ? { cnf_jkt: auth.payload.cnf.jkt } : {}),
      };
      return { content: [{ type: 'text', text: JSON.stringify(result) }], structuredContent: result };
    },
  );
  return server;
}

const app = express();
app.disable('x-powered-by');

app.get(['/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-protected-resource'], (req, res) => {
  res.set('Access-Control-Allow-Origin', '*');
  res.json(prm());
});

app.get('/stats', (req, res) => {
  const byClient = {};
  for (const [cid, set] of jtiByClient) byClient[cid] = { distinct_jti: set.size, jti: [...set] };
  res.json({
    mode: opts.introspect ? 'introspect' : 'jwt',
    distinct_jti: acceptedJti.size,
    accepted_requests: acceptedRequests,
    rejected_requests: rejected,
    dpop_accepted_requests: dpopAccepted,
    ...(opts.introspect ? { introspection } : {}),
    by_client: byClient,
  });
});

app.get('/healthz', (req, res) => res.type('text').send('ok'));

app.post('/mcp', requireToken, express.json({ limit: '1mb' }), async (req, res) => {
  // Stateless: a fresh server and transport per request.
  const server = buildMcpServer(req.auth);
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  res.on('close', () => {
    transport.close().catch(() => {});
    server.close().catch(() => {});
  });
  try {
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  } catch (e) {
    log('error handling MCP request:', e);
    if (!res.headersSent) {
      res.status(500).json({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null });
    }
  }
});

// No standalone SSE stream and no sessions in this stateless server.
app.all('/mcp', requireToken, (req, res) => {
  res.set('Allow', 'POST');
  res.status(405).json({ jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null });
});

const listener = app.listen(opts.port, '127.0.0.1', () => {
  const { port } = listener.address();
  origin = `http://127.0.0.1:${port}`;
  resourceUrl = `${origin}/mcp`;
  log(`listening on ${resourceUrl} (issuer ${issuer}; tokens checked by ${opts.introspect ? `introspection as ${opts.clientId}` : 'JWT verification against the JWKS'})`);
  console.log(`mcp_server listening on ${resourceUrl}`);
});
listener.on('error', (e) => {
  console.error('mcp_server: cannot listen:', e.message);
  process.exit(1);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    listener.close();
    process.exit(0);
  });
}
