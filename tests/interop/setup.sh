#!/usr/bin/env bash
# Installs what the interop rig needs; idempotent, fails loudly.
#   - Debian's chromium (apt) when /usr/bin/chromium is missing (never a browser from npm);
#   - node_modules from package-lock.json (npm ci), skipped when already installed from this lock;
#   - a Python venv at tests/interop/.venv with requirements.txt, skipped when already installed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

say() { echo "setup: $*"; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }

hash_of() { sha256sum "$@" | sha256sum | cut -c1-64; }

# --- chromium -------------------------------------------------------------------------------
apt_retry() {
  # A colleague (or CI) may hold the dpkg/apt locks: wait for them rather than fail.
  local i
  for i in $(seq 1 30); do
    if DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 "$@"; then
      return 0
    fi
    say "apt-get $* failed (attempt $i); retrying in 10 s"
    sleep 10
  done
  return 1
}

if [ ! -x /usr/bin/chromium ]; then
  command -v apt-get >/dev/null || die "/usr/bin/chromium is missing and apt-get is not available"
  say "installing chromium from Debian"
  apt_retry update -q || die "apt-get update failed"
  apt_retry install -y -q chromium fonts-dejavu-core fonts-liberation || die "apt-get install chromium failed"
fi
[ -x /usr/bin/chromium ] || die "/usr/bin/chromium is still missing after apt-get install"

# --- node -----------------------------------------------------------------------------------
command -v node >/dev/null || die "node is not installed (Node 20+ is required)"
command -v npm >/dev/null || die "npm is not installed"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "Node 20+ is required, found $(node -v)"

lock_hash="$(hash_of package.json package-lock.json)"
if [ -f node_modules/.interop-installed ] && [ "$(cat node_modules/.interop-installed)" = "$lock_hash" ]; then
  say "node_modules up to date"
else
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error || die "npm ci failed"
  echo "$lock_hash" > node_modules/.interop-installed
fi

# --- python ---------------------------------------------------------------------------------
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || die "$PY is not installed (Python 3.10+ is required)"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || die "Python 3.10+ is required, found $("$PY" -V 2>&1)"

req_hash="$(hash_of requirements.txt)"
if [ -x .venv/bin/python ] && [ -f .venv/.interop-installed ] && [ "$(cat .venv/.interop-installed)" = "$req_hash" ]; then
  say "python venv up to date"
else
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    "$PY" -m venv .venv || die "python -m venv failed (on Debian: apt-get install python3-venv)"
  fi
  say "pip install -r requirements.txt"
  .venv/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt || die "pip install failed"
  echo "$req_hash" > .venv/.interop-installed
fi

say "chromium: $(/usr/bin/chromium --version 2>/dev/null | tail -1)"
say "node $(node -v); @modelcontextprotocol/sdk $(node -p 'require("./node_modules/@modelcontextprotocol/sdk/package.json").version'); @modelcontextprotocol/client $(node -p 'require("./node_modules/@modelcontextprotocol/client/package.json").version'); playwright-core $(node -p 'require("./node_modules/playwright-core/package.json").version'); oidc-provider $(node -p 'require("./node_modules/oidc-provider/package.json").version')"
say "python $(.venv/bin/python -V 2>&1 | cut -d' ' -f2); mcp $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("mcp"))')"
