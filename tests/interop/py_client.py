#!/usr/bin/env python3
"""Interop test: the official MCP Python SDK (`mcp`, v2) client against Portcullis.

Given only the MCP server URL, the SDK's OAuthClientProvider discovers the protected-resource
and authorization-server metadata, registers dynamically, sends the user through the browser
(login + consent, driven by browser.mjs), exchanges the code, and calls `whoami`. After the
access token expired, a second call must make the SDK refresh (proactively, from
`expires_in`) with refresh-token rotation, not start a new authorization.

Usage: py_client.py --mcp-url URL --user NAME --password PW [--screenshots DIR]
  (or env MCP_URL, INTEROP_USER, INTEROP_PASSWORD, INTEROP_SCREENSHOTS)
Exit status 0 on success; non-zero with "py_client: FAIL: ..." otherwise.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import anyio
import httpx2
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

NAME = "py_client"
HERE = Path(__file__).resolve().parent
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"{NAME} [+{time.monotonic() - T0:.1f}s] {msg}", flush=True)


class Fail(Exception):
    pass


def check(cond: object, msg: str) -> None:
    if not cond:
        raise Fail(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def decode_jwt(token: str) -> tuple[dict, dict]:
    def part(p: str) -> dict:
        return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))

    h, p, _ = token.split(".")
    return part(h), part(p)


class InMemoryTokenStorage(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None
        self.saved: list[OAuthToken] = []

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        log(
            f"set_tokens #{len(self.saved) + 1}: token_type={tokens.token_type} expires_in={tokens.expires_in} "
            f"scope={tokens.scope!r} refresh_token={'yes' if tokens.refresh_token else 'NO'}"
        )
        self.tokens = tokens
        self.saved.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        log(f"set_client_info: client_id={client_info.client_id} auth_method={client_info.token_endpoint_auth_method}")
        self.client_info = client_info


class BrowserFlow:
    """redirect_handler runs browser.mjs (headless chromium); callback_handler returns what it captured."""

    def __init__(self, user: str, password: str, screenshots: str | None) -> None:
        self.user = user
        self.password = password
        self.screenshots = screenshots
        self.authorizations = 0
        self.authorization_url: str | None = None
        self.callback_url: str | None = None

    async def redirect_handler(self, url: str) -> None:
        self.authorizations += 1
        log(f"redirect_handler #{self.authorizations}: {url}")
        if self.authorizations > 1:
            raise Fail(
                f"the SDK started authorization #{self.authorizations} "
                "(expected exactly one: the second call should have been served by a refresh)"
            )
        self.authorization_url = url
        cmd = ["node", str(HERE / "browser.mjs"), url, self.user, self.password]
        if self.screenshots:
            cmd.append(self.screenshots)
        proc = await anyio.run_process(cmd, check=False, stderr=None)
        out = proc.stdout.decode().strip()
        if proc.returncode != 0 or not out:
            raise Fail(f"browser.mjs failed (exit {proc.returncode}); see its output above")
        self.callback_url = out.splitlines()[-1]

    async def callback_handler(self) -> AuthorizationCodeResult:
        check(self.callback_url, "no callback URL was captured")
        q = parse_qs(urlparse(self.callback_url).query)
        if "error" in q:
            raise Fail(f"the authorization failed: {self.callback_url}")
        code = q.get("code", [None])[0]
        check(code, f"no code in the callback URL: {self.callback_url}")
        return AuthorizationCodeResult(code=code, state=q.get("state", [None])[0], iss=q.get("iss", [None])[0])


def tool_json(result) -> dict:
    check(not getattr(result, "is_error", False), f"whoami returned an error: {result.content!r}")
    texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    check(texts, f"whoami returned no text content: {result!r}")
    return json.loads(texts[0])


async def run(args: argparse.Namespace) -> None:
    mcp_url = args.mcp_url
    parsed = urlparse(mcp_url)
    origin = f"{parsed.scheme}://{parsed.netloc}"
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"

    storage = InMemoryTokenStorage()
    flow = BrowserFlow(args.user, args.password, args.screenshots)
    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="Portcullis interop (MCP Python SDK)",
            redirect_uris=[redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=flow.redirect_handler,
        callback_handler=flow.callback_handler,
    )

    exchanges: list[str] = []

    async def on_response(response: httpx2.Response) -> None:
        req = response.request
        note = ""
        if response.status_code >= 400:
            await response.aread()
            note = f" body={response.text[:400]}"
            if "www-authenticate" in response.headers:
                note += f" www-authenticate={response.headers['www-authenticate']}"
        line = f"{req.method} {req.url} -> {response.status_code}{note}"
        exchanges.append(line)
        log(f"http: {line}")

    async with httpx2.AsyncClient() as plain:
        stats_before = (await plain.get(f"{origin}/stats")).json()

    log(f"step 1: connecting to {mcp_url} (callback {redirect_uri})")
    http_client = httpx2.AsyncClient(
        auth=provider,
        timeout=httpx2.Timeout(30.0, read=60.0),
        event_hooks={"response": [on_response]},
    )
    async with http_client:
        async with streamable_http_client(mcp_url, http_client=http_client) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                log(f"initialized: protocol {init.protocol_version}, server {init.server_info.name}")
                check(flow.authorizations == 1, f"expected one browser authorization, got {flow.authorizations}")
                check(storage.saved, "no tokens were stored after the authorization")
                t1 = storage.saved[-1]
                check(t1.refresh_token, "the token response has no refresh_token (the client registered refresh_token)")
                hdr, claims = decode_jwt(t1.access_token)
                log(f"access token 1: header={json.dumps(hdr)} claims={json.dumps(claims)}")
                check(hdr.get("typ") == "at+jwt", f"access token typ is {hdr.get('typ')!r}, expected at+jwt")
                aud = claims.get("aud")
                check(aud == mcp_url or (isinstance(aud, list) and mcp_url in aud), f"aud {aud!r} != {mcp_url}")
                q = parse_qs(urlparse(flow.authorization_url or "").query)
                log(f"the SDK asked for scope={q.get('scope')} resource={q.get('resource')} prompt={q.get('prompt')}")
                # The SDK checked state and RFC 9207 iss itself; re-check iss against the PRM for the record.
                cbq = parse_qs(urlparse(flow.callback_url or "").query)
                async with httpx2.AsyncClient() as plain:
                    prm = (await plain.get(f"{origin}/.well-known/oauth-protected-resource/mcp")).json()
                check(
                    cbq.get("iss", [None])[0] == prm["authorization_servers"][0],
                    f"RFC 9207 iss mismatch: {cbq.get('iss')} vs {prm['authorization_servers'][0]}",
                )

                log("step 2: calling whoami")
                w1 = tool_json(await session.call_tool("whoami", {}))
                log(f"whoami #1: {json.dumps(w1)}")
                subs = [args.user, *args.expect_sub]
                check(w1.get("sub") in subs, f"whoami sub is {w1.get('sub')!r}, expected one of {subs!r} (user {args.user})")
                check("mcp:tools" in (w1.get("scope") or "").split(), f"whoami scope {w1.get('scope')!r} lacks mcp:tools")

                ctx = provider.context
                wait_until = max(claims["exp"], ctx.token_expiry_time or 0) + 1.5
                wait = wait_until - time.time()
                check(wait < 60, f"the access token lives too long for this test ({wait:.0f}s; expected --token-lifetime 4)")
                log(f"step 3: waiting {max(wait, 0):.1f}s for the access token to expire (exp={claims['exp']})")
                await anyio.sleep(max(wait, 0))

                w2 = tool_json(await session.call_tool("whoami", {}))
                log(f"whoami #2: {json.dumps(w2)}")
                check(flow.authorizations == 1, f"the SDK re-ran authorization ({flow.authorizations}) instead of refreshing")
                check(len(storage.saved) >= 2, "the SDK stored no new tokens: no refresh happened")
                t2 = storage.saved[-1]
                check(t2.access_token != t1.access_token, "the access token did not change after the refresh")
                check(t2.refresh_token, "no refresh_token after the refresh")
                check(t2.refresh_token != t1.refresh_token, "the refresh token was not rotated (same refresh_token returned)")
                refresh_calls = [e for e in exchanges if "/token" in e.split(" -> ")[0]]
                check(len(refresh_calls) >= 2, f"expected a code exchange and a refresh at the token endpoint, saw: {refresh_calls}")
                check(w2.get("sub") == w1.get("sub"), f"whoami #2 sub is {w2.get('sub')!r}, expected {w1.get('sub')!r} as before")
                check(w2.get("jti") != w1.get("jti"), "whoami #2 ran with the same token jti as #1")

    client_id = storage.client_info.client_id if storage.client_info else None
    async with httpx2.AsyncClient() as plain:
        stats = (await plain.get(f"{origin}/stats")).json()
    mine = stats.get("by_client", {}).get(client_id, {}).get("distinct_jti", 0)
    log(f"MCP server stats: this client {mine} distinct jti; total {stats['distinct_jti']} (was {stats_before['distinct_jti']})")
    check(mine >= 2, f"the MCP server saw {mine} distinct token(s) for client {client_id}, expected >= 2")
    log(f"PASS: registered {client_id}, authorized in the browser, called whoami as {args.user} (sub {w1['sub']}), refreshed with rotation")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mcp-url", default=os.environ.get("MCP_URL"))
    ap.add_argument("--user", default=os.environ.get("INTEROP_USER"))
    ap.add_argument("--password", default=os.environ.get("INTEROP_PASSWORD"))
    ap.add_argument("--screenshots", default=os.environ.get("INTEROP_SCREENSHOTS"))
    ap.add_argument(
        "--expect-sub",
        action="append",
        default=os.environ.get("INTEROP_EXPECT_SUB", "").split(),
        help="another value `sub` may take for this user (e.g. the user's id); repeatable",
    )
    ap.add_argument("--timeout", type=float, default=float(os.environ.get("INTEROP_CLIENT_TIMEOUT", "150")))
    args = ap.parse_args()
    if not args.mcp_url or not args.user or args.password is None:
        ap.error("--mcp-url, --user and --password are required")

    async def with_timeout() -> None:
        with anyio.fail_after(args.timeout):
            await run(args)

    try:
        anyio.run(with_timeout)
    except Fail as e:
        print(f"{NAME}: FAIL: {e}", file=sys.stderr, flush=True)
        return 1
    except TimeoutError:
        print(f"{NAME}: FAIL: overall timeout of {args.timeout:.0f}s exceeded", file=sys.stderr, flush=True)
        return 1
    except BaseException as e:  # noqa: BLE001 - report anything, including exception groups from task groups
        fails = _find_fail(e)
        if fails:
            print(f"{NAME}: FAIL: {fails}", file=sys.stderr, flush=True)
            return 1
        import traceback

        traceback.print_exc()
        print(f"{NAME}: FAIL: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


def _find_fail(e: BaseException) -> str | None:
    """Task groups wrap our Fail in (nested) exception groups; dig it out."""
    if isinstance(e, Fail):
        return str(e)
    for sub in getattr(e, "exceptions", ()) or ():
        found = _find_fail(sub)
        if found:
            return found
    if e.__cause__ is not None and e.__cause__ is not e:
        return _find_fail(e.__cause__)
    if e.__context__ is not None and e.__context__ is not e:
        return _find_fail(e.__context__)
    return None


if __name__ == "__main__":
    sys.exit(main())
