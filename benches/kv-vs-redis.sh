#!/usr/bin/env bash
# kv against redis-server: redis-benchmark's whole default suite (the 20
# tests `redis-benchmark -q` runs, PING_INLINE ... MSET), one command.
#
#   bash benches/kv-vs-redis.sh [OUT_DIR]      (default: benches/results/kv)
#
# Both servers on 127.0.0.1 with the same durability: an append-only log
# written at once and fsynced every second (`readyloop serve kv --fsync
# everysec` against `redis-server --appendonly yes --appendfsync everysec
# --save ""`). Each test runs on one server then the other (the first one
# alternates), REPEAT times (the median is kept), plain and with -P 16,
# at CLIENTS connections and REQUESTS requests per test. Both servers start
# afresh for every round, so both see the same sequence of commands from an
# empty keyspace (and redis' 64 MB AOF rewrite, whose forked child's CPU
# would not be counted, never starts).
#
# Server CPU per request: the CPU time of all the server's threads
# (/proc/PID/task/*/schedstat, the same time as utime+stime in
# /proc/PID/stat but in nanoseconds instead of clock ticks, which a
# 50 ms test would need) from the test's start to its CSV line, over the
# test's requests. redis-benchmark runs on the same machine and shares its
# cores.
#
# Writes OUT_DIR/runs.csv (every run), OUT_DIR/summary.md (the medians) and,
# if redis-benchmark printed any, its error lines to OUT_DIR/errors.txt.
# Set READYLOOP to a built binary to skip the build (compare.sh does).
# Every server is stopped on exit, error or Ctrl-C. About 2 minutes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/benches/results/kv}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

REQUESTS=${REQUESTS:-20000}
CLIENTS=${CLIENTS:-50}
REPEAT=${REPEAT:-3}
PIPELINES=${PIPELINES:-1 16}
# The default suite in its order, as `-t` names; `lrange` is the LPUSH that
# fills the list and the four LRANGE tests.
TESTS=(ping_inline ping_mbulk set get incr lpush rpush lpop rpop sadd hset spop
    zadd zpopmin lrange mset)

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
need redis-server "apt-get install redis-server"
need redis-benchmark "apt-get install redis-tools"
need redis-cli "apt-get install redis-tools"
need python3 "apt-get install python3"
need stdbuf "apt-get install coreutils"
need timeout "apt-get install coreutils"

if [ -z "${READYLOOP:-}" ]; then
    need cargo "install Rust from https://rustup.rs"
    log "build"
    run cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
    READYLOOP=$ROOT/target/release/readyloop
fi
[ -x "$READYLOOP" ] || die "$READYLOOP is not an executable"

# CPU time of every thread of PID so far, in nanoseconds.
cpu_ns() { cat "/proc/$1/task/"*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'; }

# Waits until a Redis client gets PONG on PORT from PID.
wait_pong() {
    local port=$1 pid=$2 log=$3
    for _ in $(seq 100); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && return
        kill -0 "$pid" 2>/dev/null || die "server pid $pid exited: $(tail -5 "$log")"
        sleep 0.1
    done
    die "no PONG on port $port after 10 s: $(tail -5 "$log")"
}

# Starts both servers with empty data directories; sets KV_PORT, KV_PID,
# REDIS_PORT, REDIS_PID.
start_servers() {
    rm -rf "$TMP/kv" "$TMP/redis"
    mkdir -p "$TMP/kv" "$TMP/redis"
    "$READYLOOP" serve "kv@127.0.0.1:0" --fsync everysec --data-dir "$TMP/kv" \
        --console off >"$TMP/kv.log" 2>&1 &
    KV_PID=$!
    PIDS+=("$KV_PID")
    KV_PORT=$(wait_port "$TMP/kv.log" "$KV_PID")
    wait_pong "$KV_PORT" "$KV_PID" "$TMP/kv.log"
    REDIS_PORT=$(free_port)
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$TMP/redis" \
        --appendonly yes --appendfsync everysec --save "" \
        >"$TMP/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    wait_pong "$REDIS_PORT" "$REDIS_PID" "$TMP/redis.log"
}

stop_servers() {
    stop "$KV_PID"
    stop "$REDIS_PID"
    PIDS=()
}

# Runs one `-t` test against SERVER (kv or redis) and appends a row to
# runs.csv per CSV line redis-benchmark prints, with the server's CPU
# since the previous line.
measure() {
    local pipeline=$1 round=$2 server=$3 test=$4 port pid before now line name rest
    if [ "$server" = kv ]; then port=$KV_PORT pid=$KV_PID; else port=$REDIS_PORT pid=$REDIS_PID; fi
    before=$(cpu_ns "$pid")
    # stdbuf: redis-benchmark's stdout is a pipe, and each line must come
    # when its test ends, not at exit.
    stdbuf -oL timeout -k 5 120 redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" \
        -n "$REQUESTS" -P "$pipeline" -t "$test" --csv 2>>"$OUT/errors.txt" |
        while IFS= read -r line; do
            now=$(cpu_ns "$pid")
            line=${line//\"/}
            name=${line%%,*}
            rest=${line#*,}
            case $name in
            test) ;; # the header: printed with the first result, not before

            [A-Z]*)
                # name, rps, avg, min, p50, p95, p99, max -> runs.csv
                IFS=, read -r rps avg _ p50 _ p99 _ <<<"$rest"
                printf '%s,%s,%s,"%s",%s,%s,%s,%s,%s,%s\n' "$pipeline" "$round" "$server" \
                    "$name" "$rps" "$avg" "$p50" "$p99" $((now - before)) "$REQUESTS" \
                    >>"$OUT/runs.csv"
                before=$now
                ;;
            *) printf '%s %s -P %s: %q\n' "$server" "$test" "$pipeline" "$line" >>"$OUT/errors.txt" ;;
            esac
        done || die "redis-benchmark -t $test -P $pipeline against $server failed: $(tail -3 "$OUT/errors.txt")"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo 'pipeline,round,server,test,rps,avg_ms,p50_ms,p99_ms,cpu_ns,requests' >"$OUT/runs.csv"
: >"$OUT/errors.txt"
for pipeline in $PIPELINES; do
    for round in $(seq "$REPEAT"); do
        log "-P $pipeline, round $round of $REPEAT"
        start_servers
        i=0
        for test in "${TESTS[@]}"; do
            if (((round + i) % 2)); then order="redis kv"; else order="kv redis"; fi
            for server in $order; do
                run measure "$pipeline" "$round" "$server" "$test"
            done
            i=$((i + 1))
        done
        stop_servers
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

log "summary"
python3 - "$OUT/runs.csv" >"$TMP/tables.md" <<'EOF'
import csv, statistics, sys
runs = {}
order = []
for row in csv.DictReader(open(sys.argv[1])):
    key = (int(row["pipeline"]), row["test"])
    if key not in runs:
        runs[key] = {"kv": [], "redis": []}
        order.append(key)
    cpu_us = int(row["cpu_ns"]) / 1000 / int(row["requests"])
    runs[key][row["server"]].append((float(row["rps"]), cpu_us))
med = lambda xs: statistics.median(xs) if xs else float("nan")
for pipeline in sorted({p for p, _ in order}):
    print(f"\n### {'plain' if pipeline == 1 else f'-P {pipeline}'}\n")
    print("| test | kv req/s | redis req/s | ratio | kv CPU µs/req | redis CPU µs/req |")
    print("|---|--:|--:|--:|--:|--:|")
    for p, test in order:
        if p != pipeline:
            continue
        kv, redis = runs[(p, test)]["kv"], runs[(p, test)]["redis"]
        kv_rps, redis_rps = med([r for r, _ in kv]), med([r for r, _ in redis])
        print(f"| {test} | {kv_rps:.0f} | {redis_rps:.0f} | {kv_rps / redis_rps:.2f} "
              f"| {med([c for _, c in kv]):.2f} | {med([c for _, c in redis]):.2f} |")
EOF
{
    echo "# kv vs redis-server: redis-benchmark's default suite"
    echo
    echo "\`bash benches/kv-vs-redis.sh\`, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs" \
        "($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), Linux $(uname -r)," \
        "$(redis-server --version | cut -d' ' -f1-3), load average $LOAD_BEFORE before, $LOAD_AFTER after."
    echo
    echo "\`redis-benchmark -c $CLIENTS -n $REQUESTS [-P 16] -t TEST\` against" \
        "\`readyloop serve kv --fsync everysec\` and" \
        "\`redis-server --appendonly yes --appendfsync everysec --save \"\"\`," \
        "interleaved test by test, median of $REPEAT. Ratio: kv req/s over redis req/s." \
        "CPU: the server's threads' CPU time over the test, per request." \
        "redis-benchmark shares the machine's cores with the server."
    cat "$TMP/tables.md"
    if [ -s "$OUT/errors.txt" ]; then
        echo
        echo "redis-benchmark reported $(wc -l <"$OUT/errors.txt") error lines: see errors.txt."
    fi
} >"$OUT/summary.md"
[ -s "$OUT/errors.txt" ] || rm "$OUT/errors.txt"
cat "$OUT/summary.md"
