#!/usr/bin/env bash
# User-space instructions per request of a server, counted by callgrind:
# repeatable on a shared, noisy machine where timings are not (the count
# does not depend on what else runs). Usage:
#
#   benches/callgrind.sh BINARY WORKLOAD CONNS [SECONDS] [-- SERVER ARGS...]
#
# BINARY is a readyloop binary (its `serve` is started on a free port) or,
# after `--`, any server command with {PORT} where its port goes. Prints
# one line: requests, instructions, instructions per request.
# Example: benches/callgrind.sh target/release/readyloop echo 50
# With CALLGRIND_KEEP=DIR the profiles are kept there (DIR/cg.PID), for
# `callgrind_annotate --inclusive=yes DIR/cg.*`.
set -euo pipefail
bin=$1 workload=$2 conns=$3 seconds=${4:-5}
shift $(( $# < 4 ? $# : 4 ))
[ "${1:-}" = "--" ] && shift
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
here=$(cd "$(dirname "$0")/.." && pwd)
readyloop=${READYLOOP:-$here/target/release/readyloop}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tmp=$(mktemp -d); trap 'kill $server 2>/dev/null || true; rm -rf "$tmp"' EXIT
declare -A service=([echo]=echo [http]=http [kv]=kv [hello]=hello [upper]=upper [todo]=todo)
if [ $# -gt 0 ]; then
    cmd=("${@//\{PORT\}/$port}")
else
    cmd=("$bin" serve "${service[$workload]}@127.0.0.1:$port" -q --console off --data-dir "$tmp/data")
fi
valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.%p" "${cmd[@]}" 2>"$tmp/valgrind.log" &
server=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
"$readyloop" bench --addr "127.0.0.1:$port" --workload "$workload" --conns "$conns" \
    --duration "${seconds}s" --warmup 0ms --json "$tmp/bench.json" >/dev/null
kill -TERM $server; wait $server 2>/dev/null || true
requests=$(python3 -c "import json; print(sum(p['requests'] for p in json.load(open('$tmp/bench.json'))['points']))")
# One profile per process (several under --mode forking); each has a
# `summary:` and a `totals:` line with the same count: take one per file.
instructions=$(awk 'FNR == 1 { if (n) s += n; n = 0 } /^totals:/ { n = $2 }
    END { print s + n }' "$tmp"/cg.*)
if [ -n "${CALLGRIND_KEEP:-}" ]; then mkdir -p "$CALLGRIND_KEEP" && cp "$tmp"/cg.* "$CALLGRIND_KEEP"/; fi
echo "requests=$requests instructions=$instructions per_request=$(( instructions / (requests > 0 ? requests : 1) ))"
