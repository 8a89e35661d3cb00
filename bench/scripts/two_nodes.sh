#!/usr/bin/env bash
# Two Portcullis nodes on one Postgres database, each driven by its own load generator, as the
# capacity model in docs/performance.md is checked. Node A runs on CPU 0 and node B on CPU 1; each
# generator runs on the other node's CPU; Postgres floats. Prints each generator's table and the
# sum of the two.
#
#   bench/scripts/two_nodes.sh [ADMIN_URL] [SCENARIOS] [SECONDS] [CONCURRENCY_PER_NODE]
#
# Needs target/release/portcullis and target/release/portcullis-load (cargo build --release --workspace).
set -euo pipefail
admin=${1:-postgres://postgres@127.0.0.1:5432/postgres}
scenarios=${2:-authcode,refresh,introspect,register}
seconds=${3:-10}
conc=${4:-8}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/target/release/portcullis
load=$root/target/release/portcullis-load
dir=$(mktemp -d /tmp/portcullis-two-nodes.XXXXXX)
db=portcullis_two_nodes_$$
base=${admin%/*}
psql "$admin" -qc "CREATE DATABASE $db"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  rm -rf "$dir"
}
trap cleanup EXIT
port_a=$((20000 + RANDOM % 10000)); port_b=$((port_a + 1))
limits=$'authorize = 0\ntoken = 0\nregister = 0\nintrospect = 0\nlogin = 0\nrevoke = 0\n'
for node in a b; do
  port=$port_a; [ "$node" = b ] && port=$port_b
  # One issuer for both nodes (what a load balancer in front of them would serve); each binds its own port.
  cat > "$dir/$node.toml" <<TOML
issuer = "http://127.0.0.1:$port_a"
bind = "127.0.0.1:$port"
database_url = "$base/$db"
data_dir = "$dir/$node"
log_level = "warn"
bootstrap_admin = false
registrations_per_ip_per_hour = 0
max_dynamic_clients = 100000000
login_max_failures = 1000000
rate_limit_per_refresh_family = 0
pending_sessions_per_address = 0

[rate_limit_per_ip]
$limits
[rate_limit_total]
$limits
TOML
done
"$bin" --config "$dir/a.toml" migrate >/dev/null
taskset -c 0 "$bin" --config "$dir/a.toml" serve >"$dir/a.log" 2>&1 & pids+=($!); pid_a=$!
taskset -c 1 "$bin" --config "$dir/b.toml" serve >"$dir/b.log" 2>&1 & pids+=($!); pid_b=$!
for port in $port_a $port_b; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
done
"$load" --target "http://127.0.0.1:$port_a" --server-pid "$pid_a" --config "$dir/a.toml" --load-cpu 1 \
  --scenario "$scenarios" --duration "$seconds" --concurrency "$conc" >"$dir/a.json" 2>"$dir/a.err" &
gen_a=$!
"$load" --target "http://127.0.0.1:$port_b" --server-pid "$pid_b" --config "$dir/b.toml" --load-cpu 0 \
  --scenario "$scenarios" --duration "$seconds" --concurrency "$conc" >"$dir/b.json" 2>"$dir/b.err" &
gen_b=$!
wait $gen_a $gen_b
echo "node A:"; grep -v '^{' "$dir/a.err" | tail -n +2
echo "node B:"; grep -v '^{' "$dir/b.err" | tail -n +2
echo "both (ops/s summed; each generator measured its own window):"
python3 - "$dir/a.json" "$dir/b.json" <<'PY'
import json, sys
runs = [{r["scenario"]: r for r in map(json.loads, open(p))} for p in sys.argv[1:]]
for name in runs[0]:
    a, b = runs[0][name], runs[1].get(name)
    if b is None:
        continue
    pg = max(a.get("postgres_cpu") or 0, b.get("postgres_cpu") or 0)
    print(f"{name:12} {a['ops_per_s'] + b['ops_per_s']:8.0f} ops/s   server cpu {a['server_cpu']:.2f} + {b['server_cpu']:.2f}   "
          f"postgres cpu {pg:.2f}   p99 {a['p99_ms']:.1f} / {b['p99_ms']:.1f} ms   errors {a['errors'] + b['errors']}")
PY
