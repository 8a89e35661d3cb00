#!/usr/bin/env node
// Interop test: enterprise-managed authorization (MCP ext-auth SEP-990, ID-JAG) end to end with
// the official TypeScript SDK v2 (`@modelcontextprotocol/client`) and two Portcullis processes:
// one the company's identity provider (IdP), one the MCP server's authorization server (AS).
//
//   1. carol signs in at the IdP in headless Chromium: the SDK's `startAuthorization` /
//      `exchangeAuthorization` (authorization code + PKCE, scope `openid email`, a confidential
//      client declared in the IdP's config) give the agent her ID token, checked against the
//      IdP's JWKS;
//   2. the SDK's `CrossAppAccessProvider`, given only the MCP server URL, discovers the AS, and
//      its assertion callback calls the SDK's `discoverAndRequestJwtAuthGrant`: RFC 8693 token
//      exchange of the ID token at the IdP for an ID-JAG (checked: `typ`, signature, claims);
//      the provider redeems it at the AS (RFC 7523 jwt-bearer, client_secret_basic) and the
//      agent calls `whoami` on an MCP server that verifies the access token (JWKS, iss, aud);
//   3. refusals end to end: the same ID-JAG redeemed again (the SDK's `exchangeJwtAuthGrant`)
//      gets `invalid_grant`; the SDK's `auth()` asking for a scope outside the enterprise app's
//      policy gets `invalid_scope` from the IdP, and nothing reaches the AS.
//
// Usage: node enterprise_chain.mjs --idp URL --as URL --mcp-url URL --idp-client ID
//          --as-client ID --redirect-uri URL [--user carol] [--email E] [--flow DIR]
//   secrets from the environment: ENTERPRISE_IDP_CLIENT_SECRET, ENTERPRISE_AS_CLIENT_SECRET,
//   ENTERPRISE_USER_PASSWORD.
import crypto from 'node:crypto';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import {
  CrossAppAccessProvider,
  auth,
  discoverAndRequestJwtAuthGrant,
  discoverAuthorizationServerMetadata,
  exchangeAuthorization,
  exchangeJwtAuthGrant,
  startAuthorization,
} from '@modelcontextprotocol/client';
import { authorize } from './browser.mjs';
import { Fail, check, connectOrFail, decodeJwt, getJson, loggingFetch, makeLog, run, tokenRequests, whoami } from './sdk2_common.mjs';

const NAME = 'enterprise_chain';
const log = makeLog(NAME);
const SCOPE = 'mcp:tools';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const ID_JAG = 'urn:ietf:params:oauth:token-type:id-jag';
const ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';
const ID_JAG_PROFILE = 'urn:ietf:params:oauth:grant-profile:id-jag';

function parseArgs(argv) {
  const o = {
    user: 'carol',
    email: 'carol@example.com',
    idpSecret: process.env.ENTERPRISE_IDP_CLIENT_SECRET,
    asSecret: process.env.ENTERPRISE_AS_CLIENT_SECRET,
    password: process.env.ENTERPRISE_USER_PASSWORD,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--idp') o.idp = v();
    else if (a === '--as') o.as = v();
    else if (a === '--mcp-url') o.mcpUrl = v();
    else if (a === '--idp-client') o.idpClient = v();
    else if (a === '--as-client') o.asClient = v();
    else if (a === '--redirect-uri') o.redirectUri = v();
    else if (a === '--user') o.user = v();
    else if (a === '--email') o.email = v();
    else if (a === '--flow') o.flow = v();
    else throw new Fail(`unknown argument ${a}`);
  }
  const missing = ['idp', 'as', 'mcpUrl', 'idpClient', 'asClient', 'redirectUri', 'idpSecret', 'asSecret', 'password'].filter((k) => !o[k]);
  check(
    missing.length === 0,
    `missing ${missing.join(', ')}; usage: ENTERPRISE_IDP_CLIENT_SECRET=... ENTERPRISE_AS_CLIENT_SECRET=... ENTERPRISE_USER_PASSWORD=... ` +
      'node enterprise_chain.mjs --idp URL --as URL --mcp-url URL --idp-client ID --as-client ID --redirect-uri URL',
  );
  return o;
}

/** A CrossAppAccessProvider whose assertion callback exchanges `idToken` at the IdP (SDK helpers only). */
function crossAppProvider(o, idToken, fetchFn, seen) {
  return new CrossAppAccessProvider({
    assertion: async (ctx) => {
      seen.contexts.push({ authorizationServerUrl: ctx.authorizationServerUrl, resourceUrl: ctx.resourceUrl, scope: ctx.scope });
      log(`assertion callback: ${JSON.stringify(seen.contexts.at(-1))}; exchanging the ID token at the IdP`);
      const grant = await discoverAndRequestJwtAuthGrant({
        idpUrl: o.idp,
        audience: ctx.authorizationServerUrl,
        resource: ctx.resourceUrl,
        idToken,
        clientId: o.idpClient,
        clientSecret: o.idpSecret,
        scope: ctx.scope,
        fetchFn: ctx.fetchFn,
      });
      seen.grants.push(grant);
      return grant.jwtAuthGrant;
    },
    clientId: o.asClient,
    clientSecret: o.asSecret,
    clientName: 'Portcullis interop agent (cross-app access)',
    expectedIssuer: o.as,
    fetchFn,
  });
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const exchanges = [];
  const fetchFn = loggingFetch(exchanges, log);

  // Both sides say what they do (RFC 8414 metadata).
  const idpMeta = await discoverAuthorizationServerMetadata(o.idp, { fetchFn });
  check(idpMeta?.issuer === o.idp, `the IdP's metadata names issuer ${idpMeta?.issuer}, expected ${o.idp}`);
  check(idpMeta.grant_types_supported?.includes(TOKEN_EXCHANGE), `the IdP's metadata does not list ${TOKEN_EXCHANGE}`);
  const asMeta = await getJson(`${o.as}/.well-known/oauth-authorization-server`);
  log(`AS metadata: grant_types_supported=${JSON.stringify(asMeta.grant_types_supported)} authorization_grant_profiles_supported=${JSON.stringify(asMeta.authorization_grant_profiles_supported)}`);
  check(asMeta.grant_types_supported?.includes(JWT_BEARER), `the AS's metadata does not list ${JWT_BEARER}`);
  check(asMeta.authorization_grant_profiles_supported?.includes(ID_JAG_PROFILE), `the AS's metadata does not list ${ID_JAG_PROFILE}`);
  const idpKeys = createRemoteJWKSet(new URL(idpMeta.jwks_uri));

  // 1. carol signs in at the IdP (browser), the agent gets her ID token.
  log(`step 1: ${o.user} signs in at the IdP ${o.idp} as client ${o.idpClient} (code + PKCE, openid)`);
  const clientInformation = { client_id: o.idpClient, client_secret: o.idpSecret };
  const state = crypto.randomBytes(16).toString('base64url');
  const { authorizationUrl, codeVerifier } = await startAuthorization(o.idp, {
    metadata: idpMeta,
    clientInformation,
    redirectUrl: o.redirectUri,
    scope: 'openid email',
    state,
  });
  const callback = new URL(
    await authorize(authorizationUrl.href, {
      username: o.user,
      password: o.password,
      screenshotDir: o.flow,
      log: (m) => log(`browser: ${m}`),
    }),
  );
  check(!callback.searchParams.get('error'), `the IdP refused the sign-in: ${callback.href}`);
  check(callback.searchParams.get('state') === state, `state mismatch: sent ${state}, got ${callback.searchParams.get('state')}`);
  const signedIn = await exchangeAuthorization(o.idp, {
    metadata: idpMeta,
    clientInformation,
    authorizationCode: callback.searchParams.get('code'),
    iss: callback.searchParams.get('iss') ?? undefined,
    codeVerifier,
    redirectUri: o.redirectUri,
    fetchFn,
  });
  check(signedIn.id_token, `the IdP's token response has no id_token (scope ${signedIn.scope})`);
  const { payload: idClaims, protectedHeader: idHeader } = await jwtVerify(signedIn.id_token, idpKeys, { issuer: o.idp, audience: o.idpClient });
  log(`ID token: header=${JSON.stringify(idHeader)} claims=${JSON.stringify(idClaims)}`);

  // 2. The SDK's cross-app access: token exchange at the IdP, jwt-bearer at the AS, the tool.
  log(`step 2: CrossAppAccessProvider as ${o.asClient} at the AS -> ${o.mcpUrl}`);
  const seen = { contexts: [], grants: [] };
  const provider = crossAppProvider(o, signedIn.id_token, fetchFn, seen);
  const mark = exchanges.length;
  const client = await connectOrFail('cross-app access', o.mcpUrl, provider, fetchFn, 'portcullis-interop-cross-app');
  const who = await whoami(client);
  log(`whoami: ${JSON.stringify(who)}`);
  await client.close().catch(() => {});

  check(seen.contexts.length === 1, `the assertion callback ran ${seen.contexts.length} times, expected once`);
  const ctx = seen.contexts[0];
  check(ctx.authorizationServerUrl === o.as, `the SDK discovered authorization server ${ctx.authorizationServerUrl}, expected ${o.as}`);
  check(ctx.resourceUrl === o.mcpUrl, `the SDK discovered resource ${ctx.resourceUrl}, expected ${o.mcpUrl}`);
  const chain = exchanges.slice(mark);
  const [exchange] = tokenRequests(chain, idpMeta.token_endpoint);
  check(exchange?.status === 200, `the token exchange at the IdP: ${exchange ? `${exchange.status} ${exchange.error}` : 'not sent'}`);
  const f = exchange.form;
  check(
    f.grant_type === TOKEN_EXCHANGE && f.requested_token_type === ID_JAG && f.subject_token_type === ID_TOKEN,
    `the token exchange request: ${JSON.stringify(f)}`,
  );
  check(f.audience === o.as && f.resource === o.mcpUrl && f.scope === SCOPE, `audience/resource/scope sent: ${JSON.stringify(f)}`);
  log(`the SDK authenticated at the IdP with ${exchange.auth ? `HTTP ${exchange.auth}` : 'client_id + client_secret in the body (client_secret_post)'}`);

  const grant = seen.grants[0];
  const { payload: jag, protectedHeader: jagHeader } = await jwtVerify(grant.jwtAuthGrant, idpKeys, {
    issuer: o.idp,
    audience: o.as,
    typ: 'oauth-id-jag+jwt',
  });
  log(`ID-JAG: header=${JSON.stringify(jagHeader)} claims=${JSON.stringify(jag)} (expires_in ${grant.expiresIn}, scope ${grant.scope})`);
  check(jag.sub === idClaims.sub, `the ID-JAG's sub ${jag.sub} is not the ID token's ${idClaims.sub}`);
  check(jag.client_id === o.asClient, `the ID-JAG's client_id ${jag.client_id}, expected ${o.asClient} (the agent's id at the AS)`);
  check(jag.resource === o.mcpUrl && jag.scope === SCOPE, `the ID-JAG's resource/scope: ${jag.resource} / ${jag.scope}`);
  check(jag.email === o.email, `the ID-JAG's email ${jag.email}, expected ${o.email} (include_email)`);
  check(typeof jag.jti === 'string' && jag.exp - jag.iat > 0 && jag.exp - jag.iat <= 300, `the ID-JAG's jti/lifetime: ${jag.jti} ${jag.exp - jag.iat}s`);

  const [redeem] = tokenRequests(chain, asMeta.token_endpoint);
  check(redeem?.status === 200, `the jwt-bearer request at the AS: ${redeem ? `${redeem.status} ${redeem.error}` : 'not sent'}`);
  check(redeem.form.grant_type === JWT_BEARER && redeem.body.get('assertion') === grant.jwtAuthGrant, `the AS request: ${JSON.stringify(redeem.form)}`);
  check(redeem.auth === 'Basic', `the SDK authenticated at the AS with ${redeem.auth || 'no Authorization header'}, expected client_secret_basic`);
  const tokens = provider.tokens();
  check(tokens && !tokens.refresh_token, 'the jwt-bearer grant must give an access token and no refresh token');
  const { payload: at } = decodeJwt(tokens.access_token);
  log(`access token: claims=${JSON.stringify(at)}`);
  check(at.iss === o.as && at.aud === o.mcpUrl && at.client_id === o.asClient, `access token iss/aud/client_id: ${at.iss} / ${at.aud} / ${at.client_id}`);
  check(who.client_id === o.asClient && who.sub === at.sub && who.jti === at.jti, `whoami ${JSON.stringify(who)} is not the access token's`);
  check(who.sub !== idClaims.sub, "the AS reused the IdP's sub: it must name its own person (linked by issuer and sub)");
  check((who.scope ?? '').split(' ').includes(SCOPE), `whoami scope ${JSON.stringify(who.scope)} lacks ${SCOPE}`);

  // 3. Refusals. The same ID-JAG again: used once.
  log('step 3a: the same ID-JAG redeemed again (the SDK\'s exchangeJwtAuthGrant)');
  let replay;
  try {
    await exchangeJwtAuthGrant({ tokenEndpoint: asMeta.token_endpoint, jwtAuthGrant: grant.jwtAuthGrant, clientId: o.asClient, clientSecret: o.asSecret, fetchFn });
  } catch (e) {
    replay = e;
  }
  check(replay && /invalid_grant/.test(replay.message), `a replayed ID-JAG: expected invalid_grant, got ${replay ? replay.message : 'an access token'}`);
  log(`replay refused: ${replay.message}`);

  // A scope outside the enterprise app's policy: the IdP refuses, the AS is never asked.
  log(`step 3b: the SDK's auth() asks for "${SCOPE} mcp:admin" (outside the enterprise app's scopes)`);
  const seen2 = { contexts: [], grants: [] };
  const wide = crossAppProvider(o, signedIn.id_token, fetchFn, seen2);
  const mark2 = exchanges.length;
  let refused;
  try {
    await auth(wide, { serverUrl: new URL(o.mcpUrl), scope: `${SCOPE} mcp:admin`, fetchFn });
  } catch (e) {
    refused = e;
  }
  check(refused, 'auth() succeeded with a scope outside the enterprise app policy');
  log(`refused: ${refused.message}`);
  const after = exchanges.slice(mark2);
  const [wideExchange] = tokenRequests(after, idpMeta.token_endpoint);
  check(wideExchange?.form?.scope === `${SCOPE} mcp:admin`, `the SDK did not ask the IdP for the wider scope: ${JSON.stringify(wideExchange?.form)}`);
  check(wideExchange.status === 400 && /"error"\s*:\s*"invalid_scope"/.test(wideExchange.error ?? ''), `the IdP answered ${wideExchange.status} ${wideExchange.error}, expected 400 invalid_scope`);
  check(/invalid_scope/.test(refused.message), `the SDK's error does not say invalid_scope: ${refused.message}`);
  check(tokenRequests(after, asMeta.token_endpoint).length === 0, 'the SDK went on to the AS without an ID-JAG');
  check(seen2.grants.length === 0 && wide.tokens() === undefined, 'an ID-JAG or a token was issued for the refused scope');

  const stats = await getJson(`${new URL(o.mcpUrl).origin}/stats`);
  check(stats.by_client?.[o.asClient]?.distinct_jti === 1, `the MCP server saw ${stats.by_client?.[o.asClient]?.distinct_jti ?? 0} token(s) for ${o.asClient}, expected 1`);
  log(
    `PASS: ${o.user} signed in at the IdP; the SDK exchanged her ID token for an ID-JAG, redeemed it at the AS ` +
      `and called whoami as ${who.sub} (client ${o.asClient}); a replayed ID-JAG got invalid_grant, a scope outside policy invalid_scope`,
  );
}

run(NAME, 120, main);
