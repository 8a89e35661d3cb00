#!/usr/bin/env bash
# Interop tests: real MCP client SDKs and a real headless browser against the real Portcullis
# binary. Usage: tests/interop/run.sh [PORTCULLIS_BIN]   (default target/debug/portcullis)
#
# Tests (each counted once):
#   portcullis-setup  migrate, user add, resource add, serve (GET /readyz), MCP server up
#   ts-sdk            @modelcontextprotocol/sdk client: discovery, DCR, browser login+consent, tool call, refresh
#   python-sdk        mcp (Python) client: the same
#   dpop              @modelcontextprotocol/client 2.x with a DpopSession: the same with DPoP-bound tokens
#   introspection     the TS SDK flow against a second MCP server that checks tokens at /introspect (RFC 7662)
#   screenshots       landing, login, consent, step-up, account, error and sign-out pages at 390 px and 1280 px, light and dark
#   doctor            `portcullis doctor --token-check` against the running deployment: all PASS
#   admin-console     an administrator uses /admin (adds a person and an MCP server, revokes a grant); a non-admin gets 403
#   account-revoke    a TS SDK flow, then alice revokes the app at /account: refresh and introspection fail
#   company-idp       the company's IdP (node-oidc-provider) against a strict relying party of our own
#   company-signin    a second Portcullis with that IdP as [[identity_providers]] "company": carol signs in
#                     through it (TS SDK, tool call), dave (not in mcp-users) gets 403, and the IdP's
#                     back-channel logout makes carol's refresh fail with invalid_grant
#   machine-clients   @modelcontextprotocol/client (SDK v2) ClientCredentialsProvider (client_secret_basic) and
#                     PrivateKeyJwtProvider (private_key_jwt, keys made for the run, public set in the config
#                     file) against a Portcullis of their own: whoami as themselves; bad credentials refused
#   enterprise-chain  two more Portcullis processes, a company IdP and an MCP server's AS: carol signs in at
#                     the IdP (browser), the SDK v2 CrossAppAccessProvider exchanges her ID token for an
#                     ID-JAG, redeems it at the AS and calls whoami; a replay and a scope outside policy refused
# Ends with "interop: N passed, N failed"; exits non-zero when anything failed.
#
# Environment: INTEROP_OUT (default tests/interop/out) for screenshots and logs.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${INTEROP_OUT:-$HERE/out}"
USER_NAME="alice"
PASSWORD="interop-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

PASSED=0
FAILED=0
RESULTS=()
PIDS=()
TMP=""

note() { echo "interop: $*"; }

finish() {
  local rc=$?
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] || continue
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] || continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ -n "$TMP" ] && [ -d "$TMP" ]; then
    mkdir -p "$OUT/logs" && cp "$TMP"/*.log "$OUT/logs/" 2>/dev/null || true
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

summary_and_exit() {
  echo
  for r in "${RESULTS[@]:-}"; do [ -n "$r" ] && echo "  $r"; done
  echo "interop: $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
  exit $?
}

pass() { PASSED=$((PASSED + 1)); RESULTS+=("ok      $1"); note "PASS $1"; }
fail() {
  FAILED=$((FAILED + 1)); RESULTS+=("FAILED  $1${2:+: $2}"); note "FAIL $1${2:+: $2}"
  SERVER_LOG_WANTED=1
}
SERVER_LOG_WANTED=0
INTROSPECTION_ERR=""
INTROSPECTION_CLIENT_ID=""
INTROSPECTION_CLIENT_SECRET=""

show_server_logs() {
  [ -n "$TMP" ] || return 0
  if [ -f "$TMP/portcullis.log" ]; then
    echo "----- portcullis serve log (last 300 lines) -----"
    tail -n 300 "$TMP/portcullis.log"
    echo "----- end of portcullis log -----"
  fi
  local f
  for f in mcp_server mcp_server_introspect company_idp portcullis_company mcp_server_company \
    portcullis_machines mcp_server_machines portcullis_idp portcullis_mcp_as mcp_server_enterprise; do
    if [ -f "$TMP/$f.log" ]; then
      echo "----- $f log (last 100 lines) -----"
      tail -n 100 "$TMP/$f.log"
      echo "----- end of $f log -----"
    fi
  done
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

wait_http_200() { # url timeout_s pid
  local url=$1 timeout=$2 pid=$3 deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      note "process $pid exited while waiting for $url"
      return 1
    fi
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" 2>/dev/null)" = "200" ]; then
      return 0
    fi
    sleep 0.2
  done
  note "no 200 from $url within ${timeout}s"
  return 1
}

# Runs one counted test: name, timeout (s), command...
run_test() {
  local name=$1 limit=$2
  shift 2
  echo
  note "===== $name ====="
  local start=$SECONDS rc
  timeout --kill-after=10 "$limit" "$@"
  rc=$?
  if [ $rc -eq 0 ]; then
    pass "$name ($((SECONDS - start))s)"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    fail "$name" "timed out after ${limit}s"
  else
    fail "$name" "exit $rc"
  fi
}

# --- binary and tools --------------------------------------------------------------------------
BIN="${1:-$ROOT/target/debug/portcullis}"
if [ ! -x "$BIN" ]; then
  if [ -z "${1:-}" ]; then
    note "$BIN missing: cargo build --bin portcullis"
    (cd "$ROOT" && cargo build --bin portcullis) || { fail "build" "cargo build --bin portcullis failed"; summary_and_exit; }
  else
    fail "portcullis-setup" "no executable at $BIN"; summary_and_exit
  fi
fi
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

note "setup.sh"
if ! "$HERE/setup.sh"; then
  fail "setup" "tests/interop/setup.sh failed"
  summary_and_exit
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-interop.XXXXXX")"
rm -rf "$OUT/logs" "$OUT/screenshots" "$OUT/flow"
mkdir -p "$OUT/screenshots" "$OUT/flow" "$OUT/logs"

AS_PORT="$(free_port)"
MCP_PORT="$(free_port)"
while [ "$MCP_PORT" = "$AS_PORT" ]; do MCP_PORT="$(free_port)"; done
MCP_URL="http://127.0.0.1:$MCP_PORT/mcp"
MCP2_PORT="$(free_port)"
while [ "$MCP2_PORT" = "$AS_PORT" ] || [ "$MCP2_PORT" = "$MCP_PORT" ]; do MCP2_PORT="$(free_port)"; done
MCP2_URL="http://127.0.0.1:$MCP2_PORT/mcp"   # the MCP server that introspects

export PORTCULLIS_DATABASE_URL="sqlite://$TMP/portcullis.db"
export PORTCULLIS_ISSUER="http://127.0.0.1:$AS_PORT"      # no trailing slash
export PORTCULLIS_BIND="127.0.0.1:$AS_PORT"
# Every browser of the rig signs in from 127.0.0.1: room above the per-address login limit (30 a
# minute, which counts the login page's loads too).
export PORTCULLIS_RATE_LIMIT_PER_IP='{login=600}'
export RUST_LOG="${RUST_LOG:-info}"
note "AS $PORTCULLIS_ISSUER, MCP servers $MCP_URL (JWT) and $MCP2_URL (introspection), database $PORTCULLIS_DATABASE_URL"

# --- portcullis-setup ----------------------------------------------------------------------------
echo
note "===== portcullis-setup ====="
setup_ok=1
step() { # description, command...
  local what=$1
  shift
  note "\$ $what"
  if ! "$@"; then
    note "step failed: $what"
    setup_ok=0
    return 1
  fi
}
step "portcullis migrate" "$BIN" migrate &&
  step "portcullis user add $USER_NAME --password-stdin" \
    bash -c 'printf "%s" "$1" | "$2" user add "$3" --password-stdin' _ "$PASSWORD" "$BIN" "$USER_NAME" &&
  step "portcullis resource add $MCP_URL ..." "$BIN" resource add "$MCP_URL" --name "Interop MCP" \
    --scope "mcp:tools=Call the interop server's tools" --token-lifetime 4
AS_PID=""
# The introspecting MCP server: its own resource, with /introspect credentials. A failure here
# fails only the tests that need it (introspection, account-revoke), not portcullis-setup.
if [ $setup_ok -eq 1 ]; then
  note "\$ portcullis resource add $MCP2_URL ... --introspection"
  if "$BIN" resource add "$MCP2_URL" --name "Interop MCP (introspection)" \
    --scope "mcp:tools=Call the introspecting interop server's tools" --token-lifetime 4 --introspection \
    >"$TMP/resource-add-introspection.out" 2>&1; then
    INTROSPECTION_CLIENT_ID="$(sed -n 's/^[[:space:]]*client_id:[[:space:]]*\([^[:space:]]*\)[[:space:]]*$/\1/p' "$TMP/resource-add-introspection.out" | head -n 1)"
    INTROSPECTION_CLIENT_SECRET="$(sed -n 's/^[[:space:]]*client_secret:[[:space:]]*\([^[:space:]]*\)[[:space:]]*$/\1/p' "$TMP/resource-add-introspection.out" | head -n 1)"
    if [ -n "$INTROSPECTION_CLIENT_ID" ] && [ -n "$INTROSPECTION_CLIENT_SECRET" ]; then
      note "introspection credentials: client_id $INTROSPECTION_CLIENT_ID (secret not shown)"
    else
      INTROSPECTION_ERR="resource add --introspection printed no client_id/client_secret lines"
      note "$INTROSPECTION_ERR; it printed (secrets masked):"
      sed -E 's/(secret[^:]*:[[:space:]]*).*/\1<masked>/' "$TMP/resource-add-introspection.out"
    fi
  else
    INTROSPECTION_ERR="portcullis resource add --introspection failed"
    note "$INTROSPECTION_ERR:"
    sed -E 's/(secret[^:]*:[[:space:]]*).*/\1<masked>/' "$TMP/resource-add-introspection.out"
  fi
  rm -f "$TMP/resource-add-introspection.out"
fi
if [ $setup_ok -eq 1 ]; then
  note "\$ portcullis serve"
  "$BIN" serve >"$TMP/portcullis.log" 2>&1 &
  AS_PID=$!
  PIDS+=($AS_PID)
fi
if [ $setup_ok -eq 1 ] && ! wait_http_200 "$PORTCULLIS_ISSUER/readyz" 30 "$AS_PID"; then
  setup_ok=0
  note "portcullis serve did not become ready"
fi
if [ $setup_ok -eq 1 ]; then
  node "$HERE/mcp_server.mjs" --port "$MCP_PORT" --issuer "$PORTCULLIS_ISSUER" >"$TMP/mcp_server.log" 2>&1 &
  MCP_PID=$!
  PIDS+=($MCP_PID)
  if ! wait_http_200 "http://127.0.0.1:$MCP_PORT/healthz" 15 "$MCP_PID"; then
    setup_ok=0
    note "the MCP server did not start"
  fi
fi
if [ $setup_ok -eq 1 ] && [ -z "$INTROSPECTION_ERR" ]; then
  MCP_INTROSPECTION_CLIENT_ID="$INTROSPECTION_CLIENT_ID" MCP_INTROSPECTION_CLIENT_SECRET="$INTROSPECTION_CLIENT_SECRET" \
    node "$HERE/mcp_server.mjs" --port "$MCP2_PORT" --issuer "$PORTCULLIS_ISSUER" --introspect \
    --name "Portcullis interop MCP server (introspection)" >"$TMP/mcp_server_introspect.log" 2>&1 &
  MCP2_PID=$!
  PIDS+=($MCP2_PID)
  if ! wait_http_200 "http://127.0.0.1:$MCP2_PORT/healthz" 15 "$MCP2_PID"; then
    INTROSPECTION_ERR="the introspecting MCP server did not start (see mcp_server_introspect.log)"
    note "$INTROSPECTION_ERR"
  fi
fi
if [ $setup_ok -eq 1 ]; then
  meta="$(curl -s --max-time 5 "$PORTCULLIS_ISSUER/.well-known/oauth-authorization-server")"
  note "AS metadata: $meta"
  pass "portcullis-setup"
else
  fail "portcullis-setup" "see above"
  for t in ts-sdk python-sdk introspection screenshots account-revoke company-idp company-signin machine-clients enterprise-chain; do fail "$t" "not run: portcullis-setup failed"; done
  show_server_logs
  summary_and_exit
fi

export MCP_URL INTEROP_USER="$USER_NAME" INTEROP_PASSWORD="$PASSWORD"

# Portcullis puts the user's id (not the name) in `sub`, and the CLI does not print it: read it
# from the fresh database so the clients can check that `sub` is alice's.
INTEROP_EXPECT_SUB="$("$HERE/.venv/bin/python" - "$TMP/portcullis.db" "$USER_NAME" <<'EOF' 2>/dev/null
import sqlite3, sys, uuid
con = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
row = con.execute("SELECT id FROM users WHERE username = ?", (sys.argv[2],)).fetchone()
v = row[0]
print(uuid.UUID(bytes=v) if isinstance(v, bytes) and len(v) == 16 else v)
EOF
)" || INTEROP_EXPECT_SUB=""
note "user $USER_NAME has id ${INTEROP_EXPECT_SUB:-(unknown: could not read it from the database)}"
export INTEROP_EXPECT_SUB

# --- clients -----------------------------------------------------------------------------------
INTEROP_SCREENSHOTS="$OUT/flow/ts" run_test ts-sdk 180 node "$HERE/ts_client.mjs" --tokens-out "$TMP/ts-tokens.json"
INTEROP_SCREENSHOTS="$OUT/flow/py" run_test python-sdk 180 "$HERE/.venv/bin/python" "$HERE/py_client.py"
# dpop: the TS SDK v2 with a DpopSession (RFC 9449) through login, consent, a tool call on the
# JWT-checking MCP server (which checks the proof and cnf.jkt) and a refresh by the same key; a
# copied token sent as Bearer is refused. ts-sdk and python-sdk above are the bearer clients beside it.
INTEROP_SCREENSHOTS="$OUT/flow/dpop" run_test dpop 180 node "$HERE/dpop_client.mjs"
if [ -n "$INTROSPECTION_ERR" ]; then
  fail introspection "not run: $INTROSPECTION_ERR"
else
  # The TS SDK flow against the introspecting server, then plain-HTTP checks of /introspect
  # (bad credentials; a live token for the JWT server, from ts-sdk's grant, reads inactive here).
  INTEROP_SCREENSHOTS="$OUT/flow/introspect" INTEROP_INTROSPECTION_CLIENT_ID="$INTROSPECTION_CLIENT_ID" \
    INTEROP_INTROSPECTION_CLIENT_SECRET="$INTROSPECTION_CLIENT_SECRET" \
    run_test introspection 180 bash -c '
      node "$1/ts_client.mjs" --mcp-url "$2" --expect-mode introspect --label ts_client/introspect &&
      node "$1/introspect_checks.mjs" --issuer "$PORTCULLIS_ISSUER" --mcp-url "$2" --other-tokens "$3"' \
    _ "$HERE" "$MCP2_URL" "$TMP/ts-tokens.json"
fi
run_test screenshots 120 node "$HERE/screenshots.mjs" --out "$OUT/screenshots"
# doctor: `portcullis doctor` checks the deployment as an MCP client would (issuer metadata and
# keys; the JWT-checking MCP server's metadata, its 401, a token it must accept and one for another
# audience it must refuse): every check passes.
run_test doctor 60 "$BIN" doctor --token-check "$MCP_URL"
# admin-console: an administrator (made here with `user add --admin`) uses /admin in Chromium.
ADMIN_PASSWORD="console-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
if printf "%s" "$ADMIN_PASSWORD" | "$BIN" user add ops --password-stdin --admin >/dev/null 2>&1; then
  run_test admin-console 120 node "$HERE/admin_console.mjs" --issuer "$PORTCULLIS_ISSUER" --admin ops \
    --admin-password "$ADMIN_PASSWORD" --user "$USER_NAME" --password "$PASSWORD" --out "$OUT/screenshots"
else
  fail admin-console "could not create the administrator ops"
fi
# account-revoke: a fresh TS SDK flow (its own client name, so /account lists it once) against the
# introspecting MCP server, keeping its tokens; then account_revoke.mjs revokes it in the browser.
if [ -n "$INTROSPECTION_ERR" ]; then
  fail account-revoke "not run: $INTROSPECTION_ERR"
else
  INTEROP_SCREENSHOTS="$OUT/flow/revoke" INTEROP_INTROSPECTION_CLIENT_ID="$INTROSPECTION_CLIENT_ID" \
    INTEROP_INTROSPECTION_CLIENT_SECRET="$INTROSPECTION_CLIENT_SECRET" \
    run_test account-revoke 240 bash -c '
      node "$1/ts_client.mjs" --mcp-url "$2" --client-name "Portcullis interop (account-revoke)" \
        --tokens-out "$3" --label ts_client/revoke &&
      node "$1/account_revoke.mjs" --tokens "$3" --out "$4/screenshots" --flow "$4/flow/account"' \
    _ "$HERE" "$MCP2_URL" "$TMP/revoke-tokens.json" "$OUT"
fi

# --- company sign-in ---------------------------------------------------------------------------
# The company's IdP on its own first, so that a company-signin failure can be told from a broken
# provider.
run_test company-idp 90 node "$HERE/company_idp_selftest.mjs" --flow "$OUT/flow/company-idp"

# company-signin gets its own Portcullis (config file with [[identity_providers]], its own SQLite
# database), its own IdP and MCP server, so a problem there cannot disturb the tests above.
COMPANY_ERR=""
company_setup() {
  CO_PORT="$(free_port)"
  IDP_PORT="$(free_port)"
  MCP3_PORT="$(free_port)"
  local used=" $AS_PORT $MCP_PORT $MCP2_PORT "
  while [[ "$used" == *" $CO_PORT "* ]]; do CO_PORT="$(free_port)"; done
  used+="$CO_PORT "
  while [[ "$used" == *" $IDP_PORT "* ]]; do IDP_PORT="$(free_port)"; done
  used+="$IDP_PORT "
  while [[ "$used" == *" $MCP3_PORT "* ]]; do MCP3_PORT="$(free_port)"; done
  CO_ISSUER="http://127.0.0.1:$CO_PORT"
  IDP_ISSUER="http://127.0.0.1:$IDP_PORT"
  CO_MCP_URL="http://127.0.0.1:$MCP3_PORT/mcp"
  COMPANY_IDP_CLIENT_SECRET="$(head -c 48 /dev/urandom | base64 | tr -d '=+/\n')"
  COMPANY_IDP_CAROL_PASSWORD="carol-$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  COMPANY_IDP_DAVE_PASSWORD="dave-$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  export COMPANY_IDP_CAROL_PASSWORD COMPANY_IDP_DAVE_PASSWORD
  note "company: Portcullis $CO_ISSUER, IdP $IDP_ISSUER, MCP server $CO_MCP_URL"

  COMPANY_IDP_CLIENT_SECRET="$COMPANY_IDP_CLIENT_SECRET" \
    node "$HERE/company_idp.mjs" --port "$IDP_PORT" --rp "$CO_ISSUER" >"$TMP/company_idp.log" 2>&1 &
  local idp_pid=$!
  PIDS+=($idp_pid)
  if ! wait_http_200 "$IDP_ISSUER/.well-known/openid-configuration" 20 "$idp_pid"; then
    COMPANY_ERR="the company IdP did not start (company_idp.log)"
    return 1
  fi

  # The client secret comes from the environment (PORTCULLIS_IDP_COMPANY_CLIENT_SECRET), not the file.
  cat >"$TMP/company.toml" <<TOML
issuer = "$CO_ISSUER"
bind = "127.0.0.1:$CO_PORT"
database_url = "sqlite://$TMP/company.db"
password_login = true
bootstrap_admin = false   # no admin password printed into the CI log; nobody signs in with one here

[[identity_providers]]
id = "company"
name = "Company"
kind = "oidc"
issuer = "$IDP_ISSUER"
client_id = "portcullis"
scopes = ["openid", "email", "profile", "groups"]
groups_claim = "groups"
create_people = true
allow_private_network = true

[[resources]]
uri = "$CO_MCP_URL"
name = "Company MCP server"
allowed_groups = ["mcp-users"]
scopes = [{ name = "mcp:tools", description = "Call the company MCP server's tools", default = true }]
TOML
  note "company: config file $TMP/company.toml:"
  sed 's/^/    /' "$TMP/company.toml"
  # The shared instance's PORTCULLIS_* variables would win over the file: set this one's.
  co_portcullis() {
    PORTCULLIS_ISSUER="$CO_ISSUER" PORTCULLIS_BIND="127.0.0.1:$CO_PORT" \
      PORTCULLIS_DATABASE_URL="sqlite://$TMP/company.db" \
      PORTCULLIS_IDP_COMPANY_CLIENT_SECRET="$COMPANY_IDP_CLIENT_SECRET" \
      "$BIN" --config "$TMP/company.toml" "$@"
  }
  # config check validates the file (and must not print the secret); idp list must name the
  # redirect and back-channel logout URIs the company IdP registered for this client.
  note "\$ portcullis --config company.toml config check"
  if ! co_portcullis config check >"$TMP/company-config-check.out" 2>&1; then
    sed 's/^/    /' "$TMP/company-config-check.out"
    COMPANY_ERR="portcullis config check refused company.toml (output above)"
    return 1
  fi
  if grep -qF "$COMPANY_IDP_CLIENT_SECRET" "$TMP/company-config-check.out"; then
    COMPANY_ERR="portcullis config check printed the identity provider's client secret (from PORTCULLIS_IDP_COMPANY_CLIENT_SECRET)"
    return 1
  fi
  note "\$ portcullis --config company.toml idp list"
  if ! co_portcullis idp list >"$TMP/company-idp-list.out" 2>&1; then
    sed 's/^/    /' "$TMP/company-idp-list.out"
    COMPANY_ERR="portcullis idp list failed (output above)"
    return 1
  fi
  sed 's/^/    /' "$TMP/company-idp-list.out"
  local uri
  for uri in "$CO_ISSUER/login/company/callback" "$CO_ISSUER/login/company/backchannel-logout"; do
    if ! grep -qF "$uri" "$TMP/company-idp-list.out"; then
      COMPANY_ERR="portcullis idp list does not name $uri, which the company IdP registered"
      return 1
    fi
  done
  note "\$ portcullis --config company.toml serve"
  co_portcullis serve >"$TMP/portcullis_company.log" 2>&1 &
  local co_pid=$!
  PIDS+=($co_pid)
  if ! wait_http_200 "$CO_ISSUER/readyz" 30 "$co_pid"; then
    COMPANY_ERR="the company Portcullis (--config company.toml) did not start (portcullis_company.log)"
    return 1
  fi
  node "$HERE/mcp_server.mjs" --port "$MCP3_PORT" --issuer "$CO_ISSUER" \
    --name "Portcullis interop MCP server (company)" >"$TMP/mcp_server_company.log" 2>&1 &
  local mcp_pid=$!
  PIDS+=($mcp_pid)
  if ! wait_http_200 "http://127.0.0.1:$MCP3_PORT/healthz" 15 "$mcp_pid"; then
    COMPANY_ERR="the company MCP server did not start (mcp_server_company.log)"
    return 1
  fi
}
echo
note "===== company-signin setup ====="
if company_setup; then
  run_test company-signin 300 node "$HERE/company_signin.mjs" --issuer "$CO_ISSUER" --mcp-url "$CO_MCP_URL" \
    --idp-issuer "$IDP_ISSUER" --out "$OUT/screenshots" --flow "$OUT/flow/company"
else
  note "$COMPANY_ERR"
  [ -f "$TMP/portcullis_company.log" ] && tail -n 40 "$TMP/portcullis_company.log"
  fail company-signin "not run: $COMPANY_ERR"
fi

# --- machine clients and enterprise-managed authorization (TypeScript SDK v2) --------------------
# Each gets Portcullis processes of its own (config files, SQLite databases), like company-signin.
USED_PORTS=" $AS_PORT $MCP_PORT $MCP2_PORT ${CO_PORT:-} ${IDP_PORT:-} ${MCP3_PORT:-} "
new_port() { # VAR: a free port no other part of the rig uses
  local p
  p="$(free_port)"
  while [[ "$USED_PORTS" == *" $p "* ]]; do p="$(free_port)"; done
  USED_PORTS+="$p "
  printf -v "$1" '%s' "$p"
}
random_secret() { head -c 36 /dev/urandom | base64 | tr -d '=+/\n'; }
# portcullis with its own config file; the shared instance's PORTCULLIS_* would win over the file.
own_portcullis() { # config issuer port database, then portcullis arguments
  local config=$1 issuer=$2 port=$3 db=$4
  shift 4
  PORTCULLIS_ISSUER="$issuer" PORTCULLIS_BIND="127.0.0.1:$port" PORTCULLIS_DATABASE_URL="sqlite://$db" \
    "$BIN" --config "$config" "$@"
}
# Writes stdin to a config file (0600: it holds client secrets) and prints it with secrets masked.
write_config() { # file
  (umask 077 && cat >"$1")
  note "config file $1 (secrets masked):"
  sed -E 's/^(client_secret = ).*/\1"<masked>"/' "$1" | sed 's/^/    /'
}
config_check() { # what (for messages) secret config issuer port database
  local what=$1 secret=$2
  shift 2
  note "\$ portcullis --config $(basename "$1") config check"
  if ! own_portcullis "$@" config check >"$TMP/config-check.out" 2>&1; then
    sed 's/^/    /' "$TMP/config-check.out"
    SETUP_ERR="portcullis config check refused the $what config file (output above)"
    return 1
  fi
  if grep -qF "$secret" "$TMP/config-check.out"; then
    SETUP_ERR="portcullis config check printed a client secret from the $what config file"
    return 1
  fi
}
serve_own() { # log-name config issuer port database
  local name=$1 config=$2 issuer=$3 port=$4 db=$5
  note "\$ portcullis --config $(basename "$config") serve"
  PORTCULLIS_ISSUER="$issuer" PORTCULLIS_BIND="127.0.0.1:$port" PORTCULLIS_DATABASE_URL="sqlite://$db" \
    "$BIN" --config "$config" serve >"$TMP/$name.log" 2>&1 &
  local pid=$!
  PIDS+=($pid)
  wait_http_200 "$issuer/readyz" 30 "$pid" || { SETUP_ERR="$name did not start ($name.log)"; return 1; }
}
mcp_server_for() { # log-name port issuer display-name
  node "$HERE/mcp_server.mjs" --port "$2" --issuer "$3" --name "$4" >"$TMP/$1.log" 2>&1 &
  local pid=$!
  PIDS+=($pid)
  wait_http_200 "http://127.0.0.1:$2/healthz" 15 "$pid" || { SETUP_ERR="the MCP server $1 did not start ($1.log)"; return 1; }
}
not_run() { # test
  note "$SETUP_ERR"
  fail "$1" "not run: $SETUP_ERR"
}

# machine-clients: one Portcullis whose config file declares an MCP server and three machine
# clients: a secret one, one with a fresh public key (no kid) and one whose key has a kid.
machines_setup() {
  new_port MC_PORT
  new_port MCP4_PORT
  MC_ISSUER="http://127.0.0.1:$MC_PORT"
  MC_MCP_URL="http://127.0.0.1:$MCP4_PORT/mcp"
  MC_DB="$TMP/machines.db"
  MACHINE_CLIENT_SECRET="$(random_secret)"
  note "machines: Portcullis $MC_ISSUER, MCP server $MC_MCP_URL"
  node "$HERE/machine_clients.mjs" keygen --private "$TMP/machine-key.json" --jwks "$TMP/machine-jwks.json" &&
    node "$HERE/machine_clients.mjs" keygen --private "$TMP/machine-kid-key.json" --jwks "$TMP/machine-kid-jwks.json" \
      --kid interop-k1 || { SETUP_ERR="could not generate the machine clients' keys"; return 1; }
  write_config "$TMP/machines.toml" <<TOML
issuer = "$MC_ISSUER"
bind = "127.0.0.1:$MC_PORT"
database_url = "sqlite://$MC_DB"
bootstrap_admin = false

[[resources]]
uri = "$MC_MCP_URL"
name = "Machines MCP server"
scopes = [
  { name = "mcp:tools", description = "Call the machines MCP server's tools", default = true },
  { name = "mcp:admin", description = "Administer the machines MCP server", default = false },
]

[[clients]]
client_id = "ops-agent"
name = "Ops agent (client_secret_basic)"
grant_types = ["client_credentials"]
client_secret = "$MACHINE_CLIENT_SECRET"
resources = [{ uri = "$MC_MCP_URL", scopes = ["mcp:tools"] }]

[[clients]]
client_id = "nightly-sync"
name = "Nightly sync (private_key_jwt)"
grant_types = ["client_credentials"]
jwks = '$(tr -d '\n' <"$TMP/machine-jwks.json")'
resources = [{ uri = "$MC_MCP_URL", scopes = ["mcp:tools"] }]

[[clients]]
client_id = "kid-sync"
name = "Kid sync (private_key_jwt, key with a kid)"
grant_types = ["client_credentials"]
jwks = '$(tr -d '\n' <"$TMP/machine-kid-jwks.json")'
resources = [{ uri = "$MC_MCP_URL", scopes = ["mcp:tools"] }]
TOML
  config_check machines "$MACHINE_CLIENT_SECRET" "$TMP/machines.toml" "$MC_ISSUER" "$MC_PORT" "$MC_DB" &&
    serve_own portcullis_machines "$TMP/machines.toml" "$MC_ISSUER" "$MC_PORT" "$MC_DB" &&
    mcp_server_for mcp_server_machines "$MCP4_PORT" "$MC_ISSUER" "Portcullis interop MCP server (machines)"
}
echo
note "===== machine-clients setup ====="
SETUP_ERR=""
if machines_setup; then
  # kid-sync: the SDK's assertion has no kid while the registered key has one; it must verify
  # (it was refused until the fix; "--kid-expect refused" pins the old behaviour if ever needed).
  MACHINE_CLIENT_SECRET="$MACHINE_CLIENT_SECRET" run_test machine-clients 60 node "$HERE/machine_clients.mjs" \
    --issuer "$MC_ISSUER" --mcp-url "$MC_MCP_URL" --secret-client ops-agent --key-client nightly-sync \
    --private-key "$TMP/machine-key.json" --kid-client kid-sync --kid-private-key "$TMP/machine-kid-key.json" \
    --kid-expect works
else
  not_run machine-clients
fi

# enterprise-chain: the company's IdP (a Portcullis with [[enterprise_apps]] and carol) and the MCP
# server's authorization server (a Portcullis with [[trusted_identity_providers]]).
enterprise_setup() {
  new_port EI_PORT
  new_port EA_PORT
  new_port MCP5_PORT
  new_port EC_CB_PORT
  EI_ISSUER="http://127.0.0.1:$EI_PORT"
  EA_ISSUER="http://127.0.0.1:$EA_PORT"
  EN_MCP_URL="http://127.0.0.1:$MCP5_PORT/mcp"
  EN_REDIRECT="http://127.0.0.1:$EC_CB_PORT/callback" # the browser captures it: nothing listens
  EI_DB="$TMP/idp.db"
  EA_DB="$TMP/mcp-as.db"
  ENTERPRISE_IDP_CLIENT_SECRET="$(random_secret)"
  ENTERPRISE_AS_CLIENT_SECRET="$(random_secret)"
  ENTERPRISE_USER_PASSWORD="carol-$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  note "enterprise: IdP $EI_ISSUER, MCP server's AS $EA_ISSUER, MCP server $EN_MCP_URL"
  # Portcullis binds every authorization to an MCP server, so the IdP declares one for sign-in.
  write_config "$TMP/idp.toml" <<TOML
issuer = "$EI_ISSUER"
bind = "127.0.0.1:$EI_PORT"
database_url = "sqlite://$EI_DB"
bootstrap_admin = false

[[resources]]
uri = "$EI_ISSUER/agent"
name = "Company agent"
scopes = [{ name = "agent", description = "Use the company agent", default = true }]

[[clients]]
client_id = "company-agent"
name = "Company agent"
client_secret = "$ENTERPRISE_IDP_CLIENT_SECRET"
redirect_uris = ["$EN_REDIRECT"]

[[enterprise_apps]]
audience = "$EA_ISSUER"
resources = ["$EN_MCP_URL"]
scopes = ["mcp:tools"]
clients = [{ client_id = "company-agent", remote_client_id = "company-agent-at-mcp" }]
allowed_groups = ["mcp-users"]
include_email = true
TOML
  # The agent only redeems ID-JAGs here, but a declared client's grant types cannot say so
  # (authorization_code, refresh_token or client_credentials): the default, with a redirect URI.
  write_config "$TMP/mcp-as.toml" <<TOML
issuer = "$EA_ISSUER"
bind = "127.0.0.1:$EA_PORT"
database_url = "sqlite://$EA_DB"
bootstrap_admin = false

[[trusted_identity_providers]]
issuer = "$EI_ISSUER"
create_people = true
allow_private_network = true

[[resources]]
uri = "$EN_MCP_URL"
name = "Enterprise MCP server"
scopes = [
  { name = "mcp:tools", description = "Call the enterprise MCP server's tools", default = true },
  { name = "mcp:admin", description = "Administer the enterprise MCP server", default = false },
]

[[clients]]
client_id = "company-agent-at-mcp"
name = "Company agent"
client_secret = "$ENTERPRISE_AS_CLIENT_SECRET"
redirect_uris = ["$EN_REDIRECT"]
TOML
  config_check IdP "$ENTERPRISE_IDP_CLIENT_SECRET" "$TMP/idp.toml" "$EI_ISSUER" "$EI_PORT" "$EI_DB" &&
    config_check "MCP server's AS" "$ENTERPRISE_AS_CLIENT_SECRET" "$TMP/mcp-as.toml" "$EA_ISSUER" "$EA_PORT" "$EA_DB" ||
    return 1
  note "\$ portcullis --config idp.toml migrate && user add carol --email carol@example.com --group mcp-users"
  own_portcullis "$TMP/idp.toml" "$EI_ISSUER" "$EI_PORT" "$EI_DB" migrate >/dev/null &&
    printf '%s' "$ENTERPRISE_USER_PASSWORD" | own_portcullis "$TMP/idp.toml" "$EI_ISSUER" "$EI_PORT" "$EI_DB" \
      user add carol --password-stdin --email carol@example.com --group mcp-users ||
    { SETUP_ERR="could not add carol at the IdP"; return 1; }
  serve_own portcullis_idp "$TMP/idp.toml" "$EI_ISSUER" "$EI_PORT" "$EI_DB" &&
    serve_own portcullis_mcp_as "$TMP/mcp-as.toml" "$EA_ISSUER" "$EA_PORT" "$EA_DB" &&
    mcp_server_for mcp_server_enterprise "$MCP5_PORT" "$EA_ISSUER" "Portcullis interop MCP server (enterprise)"
}
echo
note "===== enterprise-chain setup ====="
SETUP_ERR=""
if enterprise_setup; then
  # After the SDK's walk, both audit trails must tell it: one ID-JAG issued and one refused
  # (scope) at the IdP; one redeemed and one replay refused at the AS, whose person for carol is
  # named by her email (include_email).
  ENTERPRISE_IDP_CLIENT_SECRET="$ENTERPRISE_IDP_CLIENT_SECRET" ENTERPRISE_AS_CLIENT_SECRET="$ENTERPRISE_AS_CLIENT_SECRET" \
    ENTERPRISE_USER_PASSWORD="$ENTERPRISE_USER_PASSWORD" \
    run_test enterprise-chain 120 bash -c '
      HERE=$1 BIN=$2 TMP=$3 IDP=$4 AS=$5
      node "$HERE/enterprise_chain.mjs" --idp "$IDP" --as "$AS" --mcp-url "$6" --idp-client company-agent \
        --as-client company-agent-at-mcp --redirect-uri "$7" --flow "$8" || exit 1
      idp() { PORTCULLIS_ISSUER="$IDP" PORTCULLIS_DATABASE_URL="sqlite://$TMP/idp.db" "$BIN" --config "$TMP/idp.toml" "$@"; }
      mas() { PORTCULLIS_ISSUER="$AS" PORTCULLIS_DATABASE_URL="sqlite://$TMP/mcp-as.db" "$BIN" --config "$TMP/mcp-as.toml" "$@"; }
      expect() { # what count command...: the audit lines of one event
        local what=$1 want=$2; shift 2
        local got; got="$("$@" | tail -n +2 | grep -c .)"
        [ "$got" = "$want" ] || { echo "enterprise-chain: $what: $got audit event(s), expected $want"; "$@"; exit 1; }
      }
      expect "IdP id_jag_issued" 1 idp audit list --event id_jag_issued
      expect "IdP id_jag_issue_refused" 1 idp audit list --event id_jag_issue_refused
      expect "AS id_jag_redeemed" 1 mas audit list --event id_jag_redeemed
      expect "AS id_jag_refused" 1 mas audit list --event id_jag_refused
      idp audit list --event id_jag_issue_refused | grep -q scope_not_allowed || { echo "enterprise-chain: the IdP did not audit scope_not_allowed"; exit 1; }
      mas audit list --event id_jag_refused | grep -q replayed || { echo "enterprise-chain: the AS did not audit the replay"; exit 1; }
      mas user list | grep -q "^carol@example.com " || { echo "enterprise-chain: the AS has no person carol@example.com:"; mas user list; exit 1; }
      echo "enterprise-chain: audit trails and the AS person agree"' \
    _ "$HERE" "$BIN" "$TMP" "$EI_ISSUER" "$EA_ISSUER" "$EN_MCP_URL" "$EN_REDIRECT" "$OUT/flow/enterprise"
else
  not_run enterprise-chain
fi

if [ "$SERVER_LOG_WANTED" = "1" ]; then show_server_logs; fi
note "screenshots: $OUT/screenshots; flow screenshots: $OUT/flow; logs: $OUT/logs"
summary_and_exit
