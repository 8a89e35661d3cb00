#!/usr/bin/env bash
# Builds and runs every fuzz target for a while; exits non-zero if any target crashed.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     # default 60 s per target, all targets
#
# Needs cargo-fuzz (installed from crates.io if missing). Stable Rust works with
# RUSTC_BOOTSTRAP=1, which lets cargo-fuzz pass its -Z sanitizer flags.
set -uo pipefail

cd "$(dirname "$0")"
duration="${1:-60}"
shift || true
if ! [[ "$duration" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
fi
all_targets=(redirect_uri resource scope client_metadata cimd_document token_request)
targets=("$@")
if [ $# -eq 0 ]; then targets=("${all_targets[@]}"); fi

export RUSTC_BOOTSTRAP=1
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 1
fi

echo "== building ${#targets[@]} fuzz target(s)"
for t in "${targets[@]}"; do
    cargo fuzz build "$t" || { echo "build of $t failed" >&2; exit 1; }
done

mkdir -p logs
failed=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    corpora=("corpus/$t")
    [ -d "seeds/$t" ] && corpora+=("seeds/$t")
    extra=()
    case "$t" in
        client_metadata | cimd_document) extra+=("-dict=dicts/metadata.dict") ;;
        resource | redirect_uri) extra+=("-dict=dicts/resource.dict") ;;
    esac
    before=$(find "artifacts/$t" -type f | wc -l)
    log="logs/$t.log"
    echo "== $t: ${duration}s (log: fuzz/$log)"
    cargo fuzz run "$t" "${corpora[@]}" -- -max_total_time="$duration" -timeout=10 \
        -print_final_stats=1 "${extra[@]}" >"$log" 2>&1
    rc=$?
    after=$(find "artifacts/$t" -type f | wc -l)
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    corpus=$(find "corpus/$t" -type f | wc -l)
    if [ "$rc" -ne 0 ] || [ "$after" -gt "$before" ]; then
        failed=1
        line="$t: CRASH (exit $rc, $((after - before)) new artifact(s) in fuzz/artifacts/$t; see fuzz/$log)"
        grep -m1 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)' "$log" | sed 's/^/    /'
    else
        line="$t: ok, ${execs:-?} execs (${speed:-?}/s), cov ${cov:-?}, corpus $corpus, 0 crashes"
    fi
    echo "$line"
    summary+=("$line")
done

echo "== summary (${duration}s per target)"
printf '%s\n' "${summary[@]}"
exit "$failed"
