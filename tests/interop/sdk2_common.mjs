// Helpers shared by the tests that drive the official TypeScript SDK v2
// (`@modelcontextprotocol/client`): machine_clients.mjs and enterprise_chain.mjs.
//
// `loggingFetch` is handed to the SDK as its fetch: every HTTP exchange the SDK makes is logged
// and recorded (method, URL, status, the authentication scheme it used, the form parameters with
// secrets shortened, and the body of error answers), so a failure report shows exactly what the
// SDK sent and what Portcullis answered.
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

export class Fail extends Error {}
export const check = (cond, msg) => {
  if (!cond) throw new Fail(msg);
};

export function makeLog(name) {
  const t0 = Date.now();
  return (m) => console.log(`${name} [+${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);
}

export function decodeJwt(token) {
  const [h, p] = String(token).split('.');
  return { header: JSON.parse(Buffer.from(h, 'base64url')), payload: JSON.parse(Buffer.from(p, 'base64url')) };
}

// Parameters whose values are secrets or long tokens: logged shortened, never whole.
const SECRET_PARAMS = new Set(['client_secret', 'code', 'code_verifier', 'refresh_token', 'password']);
const TOKEN_PARAMS = new Set(['client_assertion', 'assertion', 'subject_token']);

function formOf(body) {
  if (typeof body === 'string') return new URLSearchParams(body);
  if (body instanceof URLSearchParams) return body;
  return undefined;
}

/** A fetch for the SDK that records each exchange in `exchanges` ({method, url, status, auth, form, error}). */
export function loggingFetch(exchanges, log) {
  return async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const method = (init?.method ?? (typeof input === 'object' && 'method' in input ? input.method : 'GET')).toUpperCase();
    const headers = new Headers(init?.headers ?? {});
    const authz = headers.get('authorization') ?? '';
    const auth = authz ? authz.split(' ')[0] : '';
    const params = formOf(init?.body);
    const form = {};
    if (params && !url.endsWith('/mcp')) {
      for (const [k, v] of params) form[k] = SECRET_PARAMS.has(k) ? '…' : TOKEN_PARAMS.has(k) ? `${v.slice(0, 12)}…(${v.length})` : v;
    }
    const res = await fetch(input, init);
    let error;
    if (!res.ok) {
      try {
        error = (await res.clone().text()).slice(0, 400);
      } catch {
        /* ignore */
      }
      const www = res.headers.get('www-authenticate');
      if (www) error = `${error ?? ''} www-authenticate=${www}`;
    }
    const x = { method, url, status: res.status, auth, form, error, body: params };
    exchanges.push(x);
    log(
      `http: ${method} ${url} -> ${res.status}${auth ? ` (Authorization: ${auth})` : ''}` +
        `${Object.keys(form).length ? ` ${JSON.stringify(form)}` : ''}${error ? ` body=${error}` : ''}`,
    );
    return res;
  };
}

/** The token requests among the recorded exchanges (POSTs to `tokenEndpoint`). */
export const tokenRequests = (exchanges, tokenEndpoint) => exchanges.filter((x) => x.method === 'POST' && x.url === tokenEndpoint);

/** Connects an SDK v2 client with `authProvider` to `mcpUrl`. */
export async function connect(mcpUrl, authProvider, fetchFn, name) {
  const client = new Client({ name, version: '0.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider, fetch: fetchFn });
  await client.connect(transport);
  return client;
}

/** `connect`, where a failure names the step (the HTTP exchanges above it say what was sent). */
export async function connectOrFail(label, ...args) {
  try {
    return await connect(...args);
  } catch (e) {
    throw new Fail(`${label}: the SDK could not connect: ${e?.code ? `${e.code}: ` : ''}${e?.message ?? e} (see the http: lines above)`);
  }
}

/** Calls the MCP server's `whoami` tool: the verified token's sub, scope, client_id and jti. */
export async function whoami(client) {
  const res = await client.callTool({ name: 'whoami', arguments: {} });
  check(!res.isError, `whoami returned an error: ${JSON.stringify(res.content)}`);
  const text = res.content?.find((c) => c.type === 'text')?.text;
  check(text, `whoami returned no text content: ${JSON.stringify(res)}`);
  return JSON.parse(text);
}

export async function getJson(url) {
  const r = await fetch(url);
  check(r.ok, `GET ${url} -> ${r.status}`);
  return r.json();
}

/** Runs `main`, exits 0 on success, 1 with "NAME: FAIL: ..." otherwise; an overall timeout. */
export function run(name, timeoutS, main) {
  const timer = setTimeout(() => {
    console.error(`${name}: FAIL: overall timeout of ${timeoutS}s exceeded`);
    process.exit(1);
  }, timeoutS * 1000);
  timer.unref();
  main().then(
    () => process.exit(0),
    (e) => {
      console.error(`${name}: FAIL: ${e instanceof Fail ? e.message : (e?.stack ?? e)}`);
      process.exit(1);
    },
  );
}
