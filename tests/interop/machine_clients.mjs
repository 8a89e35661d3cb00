#!/usr/bin/env node
// Interop test: machine clients (client credentials, SEP-1046) with the official TypeScript SDK
// v2 (`@modelcontextprotocol/client`). Two agents, each given only the MCP server URL and its
// credentials, reach an MCP server that verifies every token (JWKS signature, `iss`, `aud`,
// `typ at+jwt`) and call its `whoami` tool:
//   - `ClientCredentialsProvider`: client_secret_basic;
//   - `PrivateKeyJwtProvider`: private_key_jwt (RFC 7523) with an ES256 key generated for this
//     run, whose public JWK set Portcullis has in its config file (`jwks`).
// Then two refusals through the same SDK: a wrong secret and an unregistered key each get
// `invalid_client`, and the MCP server sees no token for them.
//
// Usage:
//   node machine_clients.mjs keygen --private FILE --jwks FILE
//       writes a fresh ES256 private JWK (0600) and the public JWK set for the config file
//   node machine_clients.mjs --issuer URL --mcp-url URL --secret-client ID --key-client ID --private-key FILE
//       the secret comes from MACHINE_CLIENT_SECRET (never argv)
import fs from 'node:fs';
import { exportJWK, generateKeyPair } from 'jose';
import { ClientCredentialsProvider, PrivateKeyJwtProvider } from '@modelcontextprotocol/client';
import { Fail, check, connect, connectOrFail, decodeJwt, getJson, loggingFetch, makeLog, run, tokenRequests, whoami } from './sdk2_common.mjs';

const NAME = 'machine_clients';
const log = makeLog(NAME);
const SCOPE = 'mcp:tools';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

async function newKey(kid) {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const id = kid ? { kid } : {};
  const priv = { ...(await exportJWK(privateKey)), ...id, alg: 'ES256', use: 'sig' };
  const pub = { ...(await exportJWK(publicKey)), ...id, alg: 'ES256', use: 'sig' };
  return { priv, pub };
}

async function keygen(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--private') o.priv = argv[++i];
    else if (argv[i] === '--jwks') o.jwks = argv[++i];
    else if (argv[i] === '--kid') o.kid = argv[++i];
    else throw new Fail(`unknown argument ${argv[i]}`);
  }
  check(o.priv && o.jwks, 'usage: node machine_clients.mjs keygen --private FILE --jwks FILE [--kid KID]');
  const { priv, pub } = await newKey(o.kid);
  fs.writeFileSync(o.priv, `${JSON.stringify(priv)}\n`, { mode: 0o600 });
  fs.writeFileSync(o.jwks, `${JSON.stringify({ keys: [pub] })}\n`);
  console.log(`${NAME}: wrote a fresh ES256 key (${o.kid ? `kid ${o.kid}` : 'no kid'}): private JWK ${o.priv}, public JWK set ${o.jwks}`);
}

function parseArgs(argv) {
  const o = { secret: process.env.MACHINE_CLIENT_SECRET };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--issuer') o.issuer = v();
    else if (a === '--mcp-url') o.mcpUrl = v();
    else if (a === '--secret-client') o.secretClient = v();
    else if (a === '--key-client') o.keyClient = v();
    else if (a === '--private-key') o.privateKey = v();
    else if (a === '--kid-client') o.kidClient = v();
    else if (a === '--kid-private-key') o.kidPrivateKey = v();
    else if (a === '--kid-expect') o.kidExpect = v();
    else throw new Fail(`unknown argument ${a}`);
  }
  if (!o.issuer || !o.mcpUrl || !o.secretClient || !o.keyClient || !o.privateKey || !o.secret) {
    throw new Fail(
      'usage: MACHINE_CLIENT_SECRET=... node machine_clients.mjs --issuer URL --mcp-url URL --secret-client ID --key-client ID --private-key FILE',
    );
  }
  if (o.kidClient && (!o.kidPrivateKey || !['works', 'refused'].includes(o.kidExpect))) {
    throw new Fail('--kid-client needs --kid-private-key FILE and --kid-expect works|refused');
  }
  return o;
}

/** What every machine client's token and tool call must show. */
function checkGrant(label, clientId, mcpUrl, saved, who) {
  check(saved, `${label}: the SDK saved no tokens`);
  log(`${label}: token response token_type=${saved.token_type} expires_in=${saved.expires_in} scope=${JSON.stringify(saved.scope)} refresh_token=${saved.refresh_token ? 'yes' : 'no'}`);
  check(String(saved.token_type).toLowerCase() === 'bearer', `${label}: token_type ${saved.token_type}, expected Bearer`);
  check(!saved.refresh_token, `${label}: a client credentials grant must not issue a refresh token`);
  check(saved.expires_in > 0, `${label}: expires_in ${saved.expires_in}`);
  const { header, payload } = decodeJwt(saved.access_token);
  log(`${label}: access token header=${JSON.stringify(header)} claims=${JSON.stringify(payload)}`);
  check(header.typ === 'at+jwt', `${label}: access token typ ${header.typ}, expected at+jwt`);
  check(payload.aud === mcpUrl || (Array.isArray(payload.aud) && payload.aud.includes(mcpUrl)), `${label}: aud ${JSON.stringify(payload.aud)} is not ${mcpUrl}`);
  check(payload.sub === clientId && payload.client_id === clientId, `${label}: sub ${payload.sub} / client_id ${payload.client_id}, expected both ${clientId}`);
  check(who.sub === clientId, `${label}: whoami sub ${JSON.stringify(who.sub)}, expected the client ${clientId}`);
  check(who.client_id === clientId, `${label}: whoami client_id ${JSON.stringify(who.client_id)}, expected ${clientId}`);
  check((who.scope ?? '').split(' ').includes(SCOPE), `${label}: whoami scope ${JSON.stringify(who.scope)} lacks ${SCOPE}`);
  check(who.jti === payload.jti, `${label}: the MCP server verified jti ${who.jti}, not the token the SDK saved (${payload.jti})`);
}

/** A connection that must fail with invalid_client, without any token reaching the MCP server. */
async function expectInvalidClient(label, mcpUrl, provider, tokenEndpoint, says) {
  const exchanges = [];
  let error;
  try {
    const client = await connect(mcpUrl, provider, loggingFetch(exchanges, (m) => log(`${label}: ${m}`)), 'portcullis-interop-refused');
    await client.close().catch(() => {});
  } catch (e) {
    error = e;
  }
  check(error, `${label}: the SDK connected, but Portcullis should have refused these credentials`);
  const message = `${error?.code ?? ''} ${error?.message ?? error}`;
  log(`${label}: the SDK failed as it should: ${message.trim()}`);
  const refusals = tokenRequests(exchanges, tokenEndpoint);
  check(refusals.length >= 1, `${label}: the SDK sent no token request (error: ${message})`);
  for (const x of refusals) {
    check(x.status === 401 || x.status === 400, `${label}: POST ${x.url} -> ${x.status}, expected 401 invalid_client`);
    check(/"error"\s*:\s*"invalid_client"/.test(x.error ?? ''), `${label}: the token endpoint answered ${x.status} ${x.error}, expected invalid_client`);
  }
  check(/invalid_client/.test(message), `${label}: the SDK's error does not say invalid_client: ${message}`);
  if (says) check(says.test(message), `${label}: the SDK's error does not match ${says}: ${message}`);
  check(provider.tokens() === undefined, `${label}: the SDK holds a token although the client was refused`);
}

async function main() {
  const argv = process.argv.slice(2);
  if (argv[0] === 'keygen') return keygen(argv.slice(1));
  const o = parseArgs(argv);
  const origin = new URL(o.mcpUrl).origin;
  const privateJwk = JSON.parse(fs.readFileSync(o.privateKey, 'utf8'));

  // The authorization server says what it accepts (RFC 8414).
  const meta = await getJson(`${o.issuer}/.well-known/oauth-authorization-server`);
  const tokenEndpoint = meta.token_endpoint;
  log(
    `AS metadata: grant_types_supported=${JSON.stringify(meta.grant_types_supported)} ` +
      `token_endpoint_auth_methods_supported=${JSON.stringify(meta.token_endpoint_auth_methods_supported)} ` +
      `token_endpoint_auth_signing_alg_values_supported=${JSON.stringify(meta.token_endpoint_auth_signing_alg_values_supported)}`,
  );
  check(meta.grant_types_supported?.includes('client_credentials'), 'the metadata does not list the client_credentials grant');
  for (const m of ['client_secret_basic', 'private_key_jwt']) {
    check(meta.token_endpoint_auth_methods_supported?.includes(m), `the metadata does not list token endpoint authentication ${m}`);
  }
  check(meta.token_endpoint_auth_signing_alg_values_supported?.includes('ES256'), 'the metadata does not list ES256 for private_key_jwt');

  // 1. client_secret_basic.
  log(`step 1: ClientCredentialsProvider as ${o.secretClient} (client_secret_basic) -> ${o.mcpUrl}`);
  const ex1 = [];
  const basic = new ClientCredentialsProvider({
    clientId: o.secretClient,
    clientSecret: o.secret,
    clientName: 'Portcullis interop machine client (secret)',
    expectedIssuer: o.issuer,
  });
  const c1 = await connectOrFail('secret client', o.mcpUrl, basic, loggingFetch(ex1, log), 'portcullis-interop-machine-secret');
  const w1 = await whoami(c1);
  log(`whoami (secret client): ${JSON.stringify(w1)}`);
  await c1.close().catch(() => {});
  const t1 = tokenRequests(ex1, tokenEndpoint);
  check(t1.length === 1 && t1[0].status === 200, `expected one successful token request, saw ${t1.map((x) => x.status).join(', ') || 'none'}`);
  check(t1[0].form.grant_type === 'client_credentials', `the SDK sent grant_type ${t1[0].form.grant_type}`);
  check(t1[0].auth === 'Basic' && !t1[0].body.has('client_secret'), 'the secret client did not authenticate with HTTP Basic alone');
  check(t1[0].form.resource === o.mcpUrl, `the token request named resource ${t1[0].form.resource}, expected ${o.mcpUrl}`);
  checkGrant('secret client', o.secretClient, o.mcpUrl, basic.tokens(), w1);

  // 2. private_key_jwt.
  log(`step 2: PrivateKeyJwtProvider as ${o.keyClient} (private_key_jwt, ES256, its key registered without kid) -> ${o.mcpUrl}`);
  const ex2 = [];
  const keyed = new PrivateKeyJwtProvider({
    clientId: o.keyClient,
    privateKey: privateJwk,
    algorithm: 'ES256',
    clientName: 'Portcullis interop machine client (key)',
    expectedIssuer: o.issuer,
  });
  const c2 = await connectOrFail('key client', o.mcpUrl, keyed, loggingFetch(ex2, log), 'portcullis-interop-machine-key');
  const w2 = await whoami(c2);
  log(`whoami (key client): ${JSON.stringify(w2)}`);
  await c2.close().catch(() => {});
  const t2 = tokenRequests(ex2, tokenEndpoint);
  check(t2.length === 1 && t2[0].status === 200, `expected one successful token request, saw ${t2.map((x) => x.status).join(', ') || 'none'}`);
  check(!t2[0].auth, `the key client sent an Authorization header (${t2[0].auth})`);
  check(t2[0].body.get('client_assertion_type') === ASSERTION_TYPE, `client_assertion_type ${t2[0].body.get('client_assertion_type')}`);
  const assertion = decodeJwt(t2[0].body.get('client_assertion'));
  log(`the SDK's client assertion: header=${JSON.stringify(assertion.header)} claims=${JSON.stringify(assertion.payload)}`);
  check(assertion.payload.iss === o.keyClient && assertion.payload.sub === o.keyClient, 'the client assertion is not iss = sub = the client');
  checkGrant('key client', o.keyClient, o.mcpUrl, keyed.tokens(), w2);

  // 2b. The SDK never puts `kid` in its assertion header (RFC 7515 makes it optional). A client
  // whose registered key carries a `kid` must still verify: Portcullis tries every key when the
  // header names none. It used to refuse (josekit's verifier built from a JWK with a kid demanded
  // that kid in the header); run.sh says --kid-expect works, and `refused` pins the old outcome.
  if (o.kidClient) {
    const kidJwk = JSON.parse(fs.readFileSync(o.kidPrivateKey, 'utf8'));
    log(`step 2b: PrivateKeyJwtProvider as ${o.kidClient}, whose registered key has kid ${kidJwk.kid} (expected: ${o.kidExpect})`);
    const provider = new PrivateKeyJwtProvider({ clientId: o.kidClient, privateKey: kidJwk, algorithm: 'ES256', expectedIssuer: o.issuer });
    if (o.kidExpect === 'works') {
      const ex = [];
      const c = await connectOrFail(`kid client (its key has kid ${kidJwk.kid}, the SDK's assertion none)`, o.mcpUrl, provider, loggingFetch(ex, log), 'portcullis-interop-machine-kid');
      const w = await whoami(c);
      await c.close().catch(() => {});
      checkGrant('kid client', o.kidClient, o.mcpUrl, provider.tokens(), w);
    } else {
      await expectInvalidClient('kid client (known Portcullis issue)', o.mcpUrl, provider, tokenEndpoint, /signature does not verify/);
      log(`KNOWN ISSUE (pinned): ${o.kidClient}'s kid-less assertion was refused although its key verifies it`);
    }
  }

  // 3. Refusals through the same SDK providers: nothing reaches the MCP server.
  const statsBefore = await getJson(`${origin}/stats`);
  log('step 3: a wrong secret and an unregistered key');
  await expectInvalidClient(
    'wrong secret',
    o.mcpUrl,
    new ClientCredentialsProvider({ clientId: o.secretClient, clientSecret: `${o.secret}-wrong`, expectedIssuer: o.issuer }),
    tokenEndpoint,
  );
  const stranger = await newKey(); // another key, no kid (as the registered one): the signature must fail
  await expectInvalidClient(
    'unregistered key',
    o.mcpUrl,
    new PrivateKeyJwtProvider({ clientId: o.keyClient, privateKey: stranger.priv, algorithm: 'ES256', expectedIssuer: o.issuer }),
    tokenEndpoint,
  );
  const stats = await getJson(`${origin}/stats`);
  check(stats.distinct_jti === statsBefore.distinct_jti, `the MCP server accepted ${stats.distinct_jti - statsBefore.distinct_jti} new token(s) during the refusals`);
  for (const id of [o.secretClient, o.keyClient]) {
    check(stats.by_client?.[id]?.distinct_jti === 1, `the MCP server saw ${stats.by_client?.[id]?.distinct_jti ?? 0} token(s) for ${id}, expected 1`);
  }
  log(`PASS: ${o.secretClient} (client_secret_basic) and ${o.keyClient} (private_key_jwt) called whoami as themselves; a wrong secret and an unknown key got invalid_client`);
}

run(NAME, 90, main);
