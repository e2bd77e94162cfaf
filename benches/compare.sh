#!/usr/bin/env bash
# Event loop vs threads, and readyloop vs tokio and nginx: one command.
#
#   bash benches/compare.sh [OUT_DIR]        (default: benches/results)
#
# Builds readyloop and benches/tokio-echo in release mode, then measures on
# 127.0.0.1 only:
#   echo/      every mode, echo, 1/50/1000 connections, median of 3
#   http/      every mode, http, 50 connections, median of 3
#   http-1000/ evloop and uring (readiness vs completion), http, 1000 connections
#   idle/      every mode, 10,000 idle connections (memory per connection)
#   tokio-echo/  the echo series against a tokio current-thread server
#   nginx-http/  the http series against nginx (1 worker)
#   wrk.md     wrk -t1 -c50 -d10s against readyloop evloop http and nginx
#   kv/        kv against redis-server, redis-benchmark's default suite
#              (benches/kv-vs-redis.sh, which also runs alone)
# Each directory holds results.json, report.md and chart.svg; summary.md has
# every table and the comparisons, and is printed at the end. Every server
# the script starts is stopped on exit, error or Ctrl-C. About 9 minutes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/benches/results}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# Per point: warm-up, measured window, runs (the median is kept).
DURATION=${DURATION:-3s}
WARMUP=${WARMUP:-1s}
REPEAT=${REPEAT:-3}
IDLE_CONNS=${IDLE_CONNS:-10000}
WRK_SECONDS=${WRK_SECONDS:-10}
MODES=evloop,uring,threaded,blocking,forking

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
need cargo "install Rust from https://rustup.rs"
need wrk "apt-get install wrk nginx-light"
need jq "apt-get install jq"
need timeout "apt-get install coreutils"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "nginx is missing: apt-get install wrk nginx-light"
need redis-server "apt-get install redis-server"
need redis-benchmark "apt-get install redis-tools"

log "build"
run cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
run cargo build --release --quiet --manifest-path "$ROOT/benches/tokio-echo/Cargo.toml"
RL=$ROOT/target/release/readyloop
TOKIO=$ROOT/benches/tokio-echo/target/release/tokio-echo
CLK_TCK=$(getconf CLK_TCK)

# The open-file limit is shared out: bench needs one per connection, and so
# does the server it loads.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((IDLE_CONNS + 200)) ] ||
    die "ulimit -n is $(ulimit -n): $IDLE_CONNS idle connections need more (or set IDLE_CONNS)"

# bench with a hard bound on its run time.
bench() {
    local limit=$1
    shift
    run timeout -k 10 "$limit" "$RL" bench --duration "$DURATION" --warmup "$WARMUP" "$@" \
        >/dev/null || die "bench $* failed or timed out after $limit"
}

log "(a) echo, every mode, 1/50/1000 connections"
bench 900 --spawn "$MODES" --workload echo --conns 1,50,1000 --repeat "$REPEAT" --out "$OUT/echo"

log "(b) http, every mode, 50 connections"
bench 300 --spawn "$MODES" --workload http --conns 50 --repeat "$REPEAT" --out "$OUT/http"

log "(b2) http, evloop and uring, 1000 connections"
bench 300 --spawn evloop,uring --workload http --conns 1000 --repeat "$REPEAT" --out "$OUT/http-1000"

log "(c) idle, every mode, $IDLE_CONNS connections"
bench 600 --spawn "$MODES" --workload idle --conns "$IDLE_CONNS" --repeat 1 --out "$OUT/idle"

log "(d) echo against tokio (current_thread)"
"$TOKIO" 0 >"$TMP/tokio.log" 2>&1 &
TOKIO_PID=$!
PIDS+=("$TOKIO_PID")
TOKIO_PORT=$(wait_port "$TMP/tokio.log" "$TOKIO_PID")
bench 300 --addr "127.0.0.1:$TOKIO_PORT" --server-pid "$TOKIO_PID" --workload echo \
    --conns 1,50,1000 --repeat "$REPEAT" --out "$OUT/tokio-echo"
stop "$TOKIO_PID"

log "(e) http against nginx (1 worker)"
NGINX_PORT=$(free_port)
sed -e "s|@PORT@|$NGINX_PORT|g" -e "s|@TMP@|$TMP|g" "$ROOT/benches/nginx.conf" >"$TMP/nginx.conf"
"$NGINX" -p "$TMP" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log" 2>"$TMP/nginx.stderr" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
WORKER=
for _ in $(seq 100); do
    WORKER=$(pgrep -P "$NGINX_PID" | head -1 || true)
    [ -n "$WORKER" ] && ss -Htln "sport = :$NGINX_PORT" | grep -q . && break
    kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited: $(cat "$TMP/nginx.stderr" "$TMP/nginx-error.log" 2>/dev/null)"
    sleep 0.1
done
[ -n "$WORKER" ] || die "nginx started no worker within 10 s"
bench 300 --addr "127.0.0.1:$NGINX_PORT" --server-pid "$WORKER" --workload http \
    --conns 50 --repeat "$REPEAT" --out "$OUT/nginx-http"

log "(f) wrk -t1 -c50 -d${WRK_SECONDS}s: readyloop evloop vs nginx"
"$RL" serve --mode evloop http@127.0.0.1:0 >"$TMP/readyloop.log" 2>&1 &
RL_PID=$!
PIDS+=("$RL_PID")
RL_PORT=$(wait_port "$TMP/readyloop.log" "$RL_PID")
# Prints "req/s | CPU µs/req | p99" for one wrk run against PID's port.
wrk_row() {
    local port=$1 pid=$2 before after requests seconds
    before=$(ticks "$pid")
    run timeout -k 5 $((WRK_SECONDS + 30)) wrk -t1 -c50 -d"${WRK_SECONDS}s" --latency \
        "http://127.0.0.1:$port/" >"$TMP/wrk.out" || die "wrk failed against port $port"
    after=$(ticks "$pid")
    cat "$TMP/wrk.out" >>"$OUT/wrk.txt"
    requests=$(awk '/requests in/ { print $1 }' "$TMP/wrk.out")
    seconds=$(awk '/requests in/ { sub(/s,$/, "", $4); print $4 }' "$TMP/wrk.out")
    awk -v r="$requests" -v s="$seconds" -v t=$((after - before)) -v hz="$CLK_TCK" \
        -v p99="$(awk '$1 == "99%" { print $2 }' "$TMP/wrk.out")" \
        'BEGIN { printf "%.0f | %.1f | %s", r / s, t / hz * 1e6 / r, p99 }'
}
: >"$OUT/wrk.txt"
wrk_row "$RL_PORT" "$RL_PID" >"$TMP/wrk-readyloop"
wrk_row "$NGINX_PORT" "$WORKER" >"$TMP/wrk-nginx"
{
    echo "wrk -t1 -c50 -d${WRK_SECONDS}s, one run each; server CPU from /proc/PID/stat utime+stime (CLK_TCK $CLK_TCK), the whole run"
    echo
    echo "| server | req/s | CPU µs/req | p99 |"
    echo "|---|--:|--:|--:|"
    echo "| readyloop evloop | $(cat "$TMP/wrk-readyloop") |"
    echo "| nginx (1 worker) | $(cat "$TMP/wrk-nginx") |"
} >"$OUT/wrk.md"
stop "$RL_PID"
stop "$NGINX_PID"

log "(g) kv against redis-server, redis-benchmark's default suite"
run env READYLOOP="$RL" bash "$ROOT/benches/kv-vs-redis.sh" "$OUT/kv" >/dev/null

log "summary"
point() { # FILE MODE CONNS FIELD
    jq -r --arg m "$2" --argjson c "$3" \
        "[.points[] | select(.mode == \$m and .conns == \$c) | .$4][0] // empty" "$1"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "–" }'; }
{
    echo "# readyloop: event loop vs threads, and vs tokio and nginx"
    echo
    echo "\`bash benches/compare.sh\`, $(date -u +%Y-%m-%d), $(nproc) CPUs ($(jq -r .machine.cpu "$OUT/echo/results.json")), Linux $(uname -r)."
    echo "Server CPU per request is utime+stime of the server (and its child processes) over the measured window."
    for part in echo http http-1000 idle tokio-echo nginx-http; do
        echo
        echo "## $part"
        echo
        cat "$OUT/$part/report.md"
    done
    echo
    echo "## readyloop evloop vs tokio current_thread, echo"
    echo
    echo "| conns | evloop req/s | tokio req/s | evloop CPU µs/req | tokio CPU µs/req | CPU ratio evloop/tokio |"
    echo "|--:|--:|--:|--:|--:|--:|"
    for c in 1 50 1000; do
        e=$(point "$OUT/echo/results.json" evloop "$c" throughput)
        t=$(point "$OUT/tokio-echo/results.json" target "$c" throughput)
        ec=$(point "$OUT/echo/results.json" evloop "$c" cpu_us_per_req)
        tc=$(point "$OUT/tokio-echo/results.json" target "$c" cpu_us_per_req)
        printf '| %s | %.0f | %.0f | %.1f | %.1f | %s |\n' "$c" "$e" "$t" "$ec" "$tc" "$(ratio "$ec" "$tc")"
    done
    echo
    echo "## readiness vs completion: evloop vs uring"
    echo
    echo "| workload | conns | evloop req/s | uring req/s | req/s ratio uring/evloop | evloop CPU µs/req | uring CPU µs/req | CPU ratio uring/evloop |"
    echo "|---|--:|--:|--:|--:|--:|--:|--:|"
    for row in "echo echo 1" "echo echo 50" "echo echo 1000" "http http 50" "http http-1000 1000"; do
        read -r workload part c <<<"$row"
        e=$(point "$OUT/$part/results.json" evloop "$c" throughput)
        u=$(point "$OUT/$part/results.json" uring "$c" throughput)
        ec=$(point "$OUT/$part/results.json" evloop "$c" cpu_us_per_req)
        uc=$(point "$OUT/$part/results.json" uring "$c" cpu_us_per_req)
        printf '| %s | %s | %.0f | %.0f | %s | %.1f | %.1f | %s |\n' "$workload" "$c" "$e" "$u" \
            "$(ratio "$u" "$e")" "$ec" "$uc" "$(ratio "$uc" "$ec")"
    done
    echo
    echo "## readyloop evloop vs nginx, http, 50 connections"
    echo
    echo "| load generator | server | req/s | CPU µs/req |"
    echo "|---|---|--:|--:|"
    printf '| bench | readyloop evloop | %.0f | %.1f |\n' \
        "$(point "$OUT/http/results.json" evloop 50 throughput)" \
        "$(point "$OUT/http/results.json" evloop 50 cpu_us_per_req)"
    printf '| bench | nginx | %.0f | %.1f |\n' \
        "$(point "$OUT/nginx-http/results.json" target 50 throughput)" \
        "$(point "$OUT/nginx-http/results.json" target 50 cpu_us_per_req)"
    tail -n 2 "$OUT/wrk.md" | awk -F'|' '{ printf "| wrk |%s|%s|%s|\n", $2, $3, $4 }'
    echo
    echo "## wrk"
    echo
    cat "$OUT/wrk.md"
    echo
    echo "## kv vs redis-server"
    tail -n +2 "$OUT/kv/summary.md"
    echo
    echo "Total script time: $(($(date +%s) - START)) s."
} >"$OUT/summary.md"
cat "$OUT/summary.md"
