#!/usr/bin/env bash
# System calls per request of a server, counted by `strace -c -f` (every
# thread) while `readyloop bench` loads it: the kernel-side twin of
# callgrind.sh, as repeatable on a shared, noisy machine. Usage:
#
#   benches/syscalls.sh BINARY WORKLOAD CONNS [SECONDS] [-- SERVER ARGS...]
#
# BINARY is a readyloop binary (its `serve` is started on a free port) or,
# after `--`, any server command with {PORT} where its port goes. Prints
# the requests, then one line per system call: calls, calls per request.
# Example: benches/syscalls.sh target/release/readyloop echo 50
#          benches/syscalls.sh - echo 50 5 -- benches/tokio-echo/target/release/tokio-echo {PORT}
set -euo pipefail
bin=$1 workload=$2 conns=$3 seconds=${4:-3}
shift $(( $# < 4 ? $# : 4 ))
[ "${1:-}" = "--" ] && shift
command -v strace >/dev/null || { echo "strace is missing: apt-get install strace" >&2; exit 1; }
here=$(cd "$(dirname "$0")/.." && pwd)
readyloop=${READYLOOP:-$here/target/release/readyloop}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tmp=$(mktemp -d)
server= tracer=
trap 'kill $tracer $server 2>/dev/null || true; rm -rf "$tmp"' EXIT
declare -A service=([echo]=echo [http]=http [kv]=kv [hello]=hello [upper]=upper [todo]=todo)
if [ $# -gt 0 ]; then
    cmd=("${@//\{PORT\}/$port}")
else
    cmd=("$bin" serve "${service[$workload]}@127.0.0.1:$port" -q --console off --data-dir "$tmp/data")
fi
"${cmd[@]}" >"$tmp/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
# Attached after start-up, detached before shutdown: only the load is counted.
strace -c -f -p "$server" -o "$tmp/strace" 2>/dev/null &
tracer=$!
sleep 0.5
"$readyloop" bench --addr "127.0.0.1:$port" --workload "$workload" --conns "$conns" \
    --duration "${seconds}s" --warmup 0ms --json "$tmp/bench.json" >/dev/null
kill -INT $tracer; wait $tracer 2>/dev/null || true
requests=$(python3 -c "import json; print(sum(p['requests'] for p in json.load(open('$tmp/bench.json'))['points']))")
echo "requests=$requests"
# strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall.
awk -v r="$requests" '$1 ~ /^[0-9.]+$/ && NF >= 5 {
        printf "%-16s calls=%-9d per_request=%.3f\n", $NF, $4, $4 / (r > 0 ? r : 1)
    }' "$tmp/strace"
