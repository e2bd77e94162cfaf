#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30), starting from its
# committed seeds (corpus/<target>/seed-*). New inputs go to a scratch
# corpus that is removed afterwards, so the tree stays clean.
#
#   fuzz/run-smoke.sh [SECONDS]
#
# Exit status: 0 all targets ran without a finding; 1 a target crashed or a
# property failed (the input is saved under fuzz/artifacts/<target>/);
# 3 not run, because nightly Rust or cargo-fuzz is missing (said loudly).
set -uo pipefail

seconds=${1:-30}
case $seconds in '' | *[!0-9]*)
    echo "usage: $0 [SECONDS]" >&2
    exit 2
    ;;
esac
cd "$(dirname "$0")" || exit 2

not_run() {
    {
        echo
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        echo "!!! FUZZ SMOKE RUN NOT RUN: $1"
        echo "!!! install with: $2"
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        echo
    } >&2
    exit 3
}
cargo +nightly --version >/dev/null 2>&1 ||
    not_run "no nightly Rust toolchain" "rustup toolchain install nightly"
cargo +nightly fuzz --version >/dev/null 2>&1 ||
    not_run "cargo-fuzz is not installed" "cargo install cargo-fuzz"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
targets=$(cargo +nightly fuzz list) || exit 1
status=0
summary=""
for target in $targets; do
    echo "=== fuzz $target for ${seconds}s" >&2
    mkdir -p "$scratch/$target"
    log="$scratch/$target.log"
    # --sanitizer none: the parsers are safe Rust, so AddressSanitizer finds
    # nothing a panic would not, and costs ~8x the executions (measured:
    # 725/s with it, 5,700/s without, for todo). -max_len: enough for many
    # lines and headers, small enough to stay fast.
    if cargo +nightly fuzz run --sanitizer none "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 >"$log" 2>&1; then
        result="ok"
    else
        result="FAILED"
        status=1
        # The property that failed, then where libFuzzer saved the input.
        grep -m 1 -A 6 'panicked at' "$log" >&2
        grep -A 2 -E 'Test unit written|Reproduce with' "$log" >&2 || tail -n 40 "$log" >&2
    fi
    runs=$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1)
    summary+="$(printf '%-16s %-6s %s; %s' "$target" "$result" "${runs:-no run count}" "${cov:-no coverage}")"$'\n'
done
echo "=== fuzz smoke run, ${seconds}s per target:" >&2
printf '%s' "$summary" >&2
exit $status
