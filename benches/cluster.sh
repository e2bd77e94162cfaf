#!/usr/bin/env bash
# readyloop on several hosts behind HAProxy, on one machine: network
# namespaces stand in for the hosts.
#
#   benches/cluster.sh [--quick] [--bin PATH] [--modes M1,M2,M3]
#   benches/cluster.sh --cleanup     (what a killed earlier run left)
#
# The hosts, each a namespace named rl-<pid>-NAME with an eth0 on
# 10.77.X.0/24, all plugged into one bridge that lives in a namespace of
# its own (rl-<pid>-br): the root namespace's network is never touched, and
# two runs' networks never meet (X comes from the pid only so that their
# logs seldom show the same addresses).
#
#   redis   10.77.X.1    redis-server :6379
#   lb      10.77.X.2    HAProxy, TCP mode, health checks: todo :9001,
#                        kv :6379, stats :8404
#   app1..  10.77.X.11.. readyloop serve --store redis://10.77.X.1:6379
#                        todo@:9001 kv@:6379 (one --mode each, --modes)
#   client  10.77.X.100  every client below
#
# It checks, and prints a short report (`cluster: ok ...`, `cluster: FAIL
# ...`, figures as `cluster: figure ...`):
#   1. a todo POST through the balancer reads back through each host and
#      through the balancer;
#   2. redis-benchmark (kv) and `readyloop bench` (todo, kv) through the
#      balancer, with their figures;
#   3. app2 killed with SIGKILL under load: HAProxy marks it DOWN and routes
#      around it, the writers' errors are counted, and every write that was
#      acknowledged (POST answered `submit success`, SET answered `+OK`)
#      reads back through the balancer afterwards;
#   4. app2 started again: HAProxy marks it UP, and it reads a write made
#      while it was down.
# The clients that check (plain bash over /dev/tcp) are in
# cluster-clients.sh.
#
# Exit status: 0 every check passed; 1 a check failed or a step broke; 2 bad
# usage; 77 network namespaces were refused (not root): nothing was run,
# and a banner says so. Every process, namespace (and with it every veth and
# the bridge) and the temporary directory are removed on exit, on error and
# on Ctrl-C. --quick takes well under a minute; the default run about two.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release/readyloop
QUICK=0
MODES=evloop,evloop,evloop

usage() {
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
say() { echo "cluster: $*"; }
die() { say "error: $*" >&2; exit 1; }

# Namespaces of this script: rl-<pid>-NAME.
NS_PATTERN='^rl-[0-9]+-(br|redis|lb|client|app[0-9]+)$'

# Every process in namespace $1 is one of ours: TERM, then KILL after a
# second, and wait until they are gone so the namespace can go too.
kill_namespace_pids() {
    local ns=$1 pids pid
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] || return 0
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 20); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -n "$pids" ] || return 0
        sleep 0.05
    done
    for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
    for _ in $(seq 40); do
        [ -n "$(ip netns pids "$ns" 2>/dev/null || true)" ] || return 0
        sleep 0.05
    done
    say "warning: processes still in $ns: $(ip netns pids "$ns" | tr '\n' ' ')" >&2
}

remove_namespace() {
    kill_namespace_pids "$1"
    ip netns del "$1" 2>/dev/null || true
}

# --cleanup: namespaces of the pattern whose run is over (their pid is no
# longer a cluster.sh).
cleanup_stale() {
    local ns owner dir removed=0
    for ns in $(ip netns list | awk '{print $1}' | grep -E "$NS_PATTERN" || true); do
        owner=${ns#rl-}
        owner=${owner%%-*}
        if tr '\0' ' ' <"/proc/$owner/cmdline" 2>/dev/null | grep -q 'cluster\.sh'; then
            say "keeping $ns: run $owner is still going"
            continue
        fi
        remove_namespace "$ns"
        say "removed $ns"
        removed=$((removed + 1))
    done
    for dir in "${TMPDIR:-/tmp}"/readyloop-cluster-*.*; do
        [ -d "$dir" ] || continue
        owner=${dir##*/readyloop-cluster-}
        owner=${owner%%.*}
        tr '\0' ' ' <"/proc/$owner/cmdline" 2>/dev/null | grep -q 'cluster\.sh' && continue
        rm -rf "$dir"
        say "removed $dir"
    done
    say "$removed stale namespace(s) removed"
}

while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --bin) [ $# -ge 2 ] || usage; BIN=$2; shift ;;
        --modes) [ $# -ge 2 ] || usage; MODES=$2; shift ;;
        --cleanup) cleanup_stale; exit 0 ;;
        -h | --help) usage ;;
        *) say "unknown argument $1" >&2; usage ;;
    esac
    shift
done
IFS=, read -r -a HOST_MODES <<<"$MODES"
[ "${#HOST_MODES[@]}" -ge 2 ] || die "--modes needs two or more hosts (app2 is killed)"

for tool in ip haproxy redis-server redis-benchmark curl timeout; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool is missing: apt-get install iproute2 haproxy redis-server redis-tools curl coreutils"
done
[ -x "$BIN" ] || die "$BIN is not an executable (cargo build --release, or --bin PATH)"

# Durations: quick, full.
if [ "$QUICK" = 1 ]; then
    BENCH_TIME=1s; RB_REQUESTS=20000; LOAD_SECONDS=6
else
    BENCH_TIME=5s; RB_REQUESTS=200000; LOAD_SECONDS=20
fi

PREFIX=rl-$$
NET=10.77.$(($$ % 250 + 1))
REDIS_IP=$NET.1
LB_IP=$NET.2
CLIENT_IP=$NET.100
TODO_PORT=9001
KV_PORT=6379
STATS_PORT=8404
NS_BR=$PREFIX-br

MADE_NS=()
TMP=""
cleanup() {
    local status=$? ns log
    # Once: a second Ctrl-C does not cut the cleanup short, and a second
    # call finds nothing left to do.
    trap - EXIT
    trap '' INT TERM
    if [ "$status" != 0 ] && [ -n "$TMP" ]; then
        for log in "$TMP"/*.log "$TMP"/*.out; do
            [ -s "$log" ] || continue
            say "--- the end of ${log##*/}:" >&2
            tail -n 5 "$log" | sed 's/^/    /' >&2
        done
    fi
    # Hosts first, the bridge last; each deletion takes its veths with it.
    for ((i = ${#MADE_NS[@]} - 1; i >= 0; i--)); do
        remove_namespace "${MADE_NS[i]}"
    done
    MADE_NS=()
    for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX-" || true); do
        say "warning: $ns survived cleanup" >&2
    done
    [ -z "$TMP" ] || rm -rf "$TMP"
    TMP=""
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The first namespace tells whether this machine lets us: refused for
# want of privilege is a loud skip (77); any other refusal is a failure.
if ! refusal=$(ip netns add "$NS_BR" 2>&1); then
    if [ "$(id -u)" != 0 ] || grep -qiE 'permission denied|operation not permitted' <<<"$refusal"; then
        {
            echo "######################################################################"
            echo "cluster: SKIPPED: network namespaces are refused here (uid $(id -u)):"
            echo "cluster:   $refusal"
            echo "cluster: the multi-host checks did NOT run; run as root to run them."
            echo "######################################################################"
        } >&2
        exit 77
    fi
    die "ip netns add $NS_BR failed: $refusal"
fi
MADE_NS+=("$NS_BR")
TMP=$(mktemp -d "${TMPDIR:-/tmp}/readyloop-cluster-$$.XXXXXX")
ip -n "$NS_BR" link set lo up
ip -n "$NS_BR" link add br0 type bridge
ip -n "$NS_BR" link set br0 up

# add_host NAME ADDRESS: a namespace with loopback up and an eth0 at
# ADDRESS/24, the other end of its veth on the bridge.
add_host() {
    local ns=$PREFIX-$1
    ip netns add "$ns"
    MADE_NS+=("$ns")
    ip -n "$ns" link set lo up
    ip -n "$NS_BR" link add "p-$1" type veth peer name eth0 netns "$ns"
    ip -n "$NS_BR" link set "p-$1" master br0 up
    ip -n "$ns" addr add "$2/24" dev eth0
    ip -n "$ns" link set eth0 up
}

APP_IPS=()
add_host redis "$REDIS_IP"
add_host lb "$LB_IP"
add_host client "$CLIENT_IP"
for i in "${!HOST_MODES[@]}"; do
    APP_IPS+=("$NET.$((11 + i))")
    add_host "app$((i + 1))" "${APP_IPS[i]}"
done
say "namespaces ${MADE_NS[*]} on $NET.0/24 (bridge in $NS_BR), files in $TMP"

# in_ns NAME CMD...: CMD run in host NAME's namespace.
in_ns() {
    local ns=$PREFIX-$1
    shift
    ip netns exec "$ns" "$@"
}
# start_in NAME OUT CMD...: CMD in the background in host NAME's
# namespace, its output to OUT. Not a job of this shell: the namespace's
# cleanup stops it, and its death under SIGKILL is reported here, not by
# bash.
start_in() {
    ip netns exec "$PREFIX-$1" "${@:3}" >"$2" 2>&1 &
    disown
}
# client_bash CODE ARGS...: bash CODE, with the client helpers of
# cluster-clients.sh defined and ARGS as "$@", in the client namespace.
client_bash() {
    # shellcheck disable=SC2016 # expanded by that bash
    in_ns client env TMP="$TMP" CLIENTS="$ROOT/benches/cluster-clients.sh" \
        bash -c '. "$CLIENTS"; '"$1" _ "${@:2}"
}

# wait_port HOST NAME PORT WHAT: until a connection from the client to
# HOST:PORT is accepted; fails at once if host NAME's namespace has no
# process left (WHAT exited: its log is shown on exit).
wait_port() {
    for _ in $(seq 100); do
        in_ns client timeout 1 bash -c "exec 3<>/dev/tcp/$1/$3" 2>/dev/null && return 0
        [ -n "$(ip netns pids "$PREFIX-$2")" ] || die "$4 on $2 exited before it listened on $1:$3"
        sleep 0.1
    done
    die "$4 at $1:$3 never accepted a connection"
}

start_in redis "$TMP/redis.out" redis-server --bind "$REDIS_IP" --port "$KV_PORT" --save '' \
    --appendonly no --protected-mode no --dir "$TMP" --logfile "$TMP/redis.log"
wait_port "$REDIS_IP" redis "$KV_PORT" redis-server

# start_app N: readyloop on host appN, in its --modes mode; it holds no
# data of its own.
start_app() {
    local host=app$1
    mkdir -p "$TMP/$host"
    start_in "$host" "$TMP/$host.out" "$BIN" serve --mode "${HOST_MODES[$1 - 1]}" --quiet \
        --store "redis://$REDIS_IP:$KV_PORT" \
        --upload-dir "$TMP/$host/uploads" --log-file "$TMP/$host.log" \
        "todo@0.0.0.0:$TODO_PORT" "kv@0.0.0.0:$KV_PORT"
}
for i in "${!HOST_MODES[@]}"; do
    start_app "$((i + 1))"
done
for i in "${!APP_IPS[@]}"; do
    wait_port "${APP_IPS[i]}" "app$((i + 1))" "$TODO_PORT" "readyloop todo"
    wait_port "${APP_IPS[i]}" "app$((i + 1))" "$KV_PORT" "readyloop kv"
done

# HAProxy: one frontend per service, round robin over the hosts, a health
# check every 200 ms that asks the service something (two failures: DOWN,
# two successes: UP again); a connection that fails is retried on another
# host (option redispatch).
backend_servers() {
    local i
    for i in "${!APP_IPS[@]}"; do
        echo "    server app$((i + 1)) ${APP_IPS[i]}:$1 check inter 200ms fall 2 rise 2"
    done
}
cat >"$TMP/haproxy.cfg" <<EOF
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 500ms
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch
frontend todo
    bind $LB_IP:$TODO_PORT
    default_backend todo_hosts
backend todo_hosts
    balance roundrobin
    option tcp-check
    tcp-check send "GET/task_01/x\\n"
    tcp-check expect rstring .
$(backend_servers "$TODO_PORT")
frontend kv
    bind $LB_IP:$KV_PORT
    default_backend kv_hosts
backend kv_hosts
    balance roundrobin
    option tcp-check
    tcp-check send "PING\\r\\n"
    tcp-check expect string +PONG
$(backend_servers "$KV_PORT")
listen stats
    mode http
    bind $LB_IP:$STATS_PORT
    stats enable
    stats uri /stats
EOF
haproxy -c -q -f "$TMP/haproxy.cfg" || die "haproxy rejects $TMP/haproxy.cfg"
start_in lb "$TMP/haproxy.log" haproxy -db -f "$TMP/haproxy.cfg"
wait_port "$LB_IP" lb "$TODO_PORT" haproxy
wait_port "$LB_IP" lb "$STATS_PORT" "haproxy stats"

# server_status BACKEND SERVER: HAProxy's view (UP, DOWN, ...).
server_status() {
    in_ns client curl -s --max-time 2 "http://$LB_IP:$STATS_PORT/stats;csv" |
        awk -F, -v b="$1" -v s="$2" '$1 == b && $2 == s { print $18 }'
}
wait_all_up() {
    local i
    for _ in $(seq 50); do
        for i in "${!APP_IPS[@]}"; do
            [ "$(server_status "$1" "app$((i + 1))")" = UP ] || continue 2
        done
        return 0
    done
    die "HAProxy never saw every $1 server UP"
}
wait_all_up todo_hosts
wait_all_up kv_hosts
say "up: redis-server, ${#APP_IPS[@]} readyloop hosts (${MODES}), haproxy"

FAILURES=0
ok() { say "ok   $*"; }
fail() {
    say "FAIL $*"
    FAILURES=$((FAILURES + 1))
}

# 1. One POST through the balancer, read through every host and the balancer.
probe_key=probe_$$
probe_value=written-through-the-balancer-$$
reply=$(client_bash 'tcp_ask "$@"' "$LB_IP" "$TODO_PORT" "POST/$probe_key=$probe_value/x")
if [ "$reply" = "submit success" ]; then
    wrong=0
    for ip in "${APP_IPS[@]}" "$LB_IP"; do
        got=$(client_bash 'tcp_ask "$@"' "$ip" "$TODO_PORT" "GET/$probe_key/x")
        if [ "$got" != "$probe_value" ]; then
            fail "todo GET $probe_key on $ip gave ${got@Q}, not ${probe_value@Q}"
            wrong=$((wrong + 1))
        fi
    done
    [ "$wrong" != 0 ] || ok "todo POST through the balancer reads back on ${APP_IPS[*]} and the balancer"
else
    fail "todo POST through the balancer answered ${reply@Q}"
fi

# 2. Figures through the balancer: redis-benchmark at kv (and straight at
# redis-server, for scale), `readyloop bench` at todo and kv.
redis_benchmark() { # WHAT HOST PIPELINE
    local out
    if ! out=$(in_ns client timeout 120 redis-benchmark -h "$2" -p "$KV_PORT" -c 50 \
        -n "$RB_REQUESTS" -P "$3" -t set,get --csv 2>&1); then
        fail "redis-benchmark $1 -P $3: $(tail -n 3 <<<"$out")"
        return
    fi
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...,"p99_latency_ms",...
    tr -d '"' <<<"$out" | awk -F, -v what="$1" -v p="$3" '$1 == "SET" || $1 == "GET" {
        printf "cluster: figure redis-benchmark %s -c 50 -P %s: %s %.0f req/s, p50 %s ms, p99 %s ms\n",
            what, p, $1, $2, $5, $7 }'
}
for pipeline in 1 16; do
    redis_benchmark "through haproxy to kv" "$LB_IP" "$pipeline"
    redis_benchmark "straight at redis-server" "$REDIS_IP" "$pipeline"
done
readyloop_bench() { # WORKLOAD PORT
    local out row
    if ! out=$(in_ns client timeout 120 "$BIN" bench --addr "$LB_IP:$2" --workload "$1" \
        --conns 50 --duration "$BENCH_TIME" --warmup 500ms 2>&1); then
        fail "readyloop bench --workload $1 through haproxy: $(tail -n 3 <<<"$out")"
        return
    fi
    # | target | conns | served | req/s | p50 | p99 | p99.9 | max | errors | CPU |
    row=$(awk -F' *[|] *' '$2 == "target" { printf "%s req/s, p50 %s, p99 %s, %s errors", $5, $6, $7, $10 }' <<<"$out")
    say "figure readyloop bench --workload $1 --conns 50 through haproxy: $row"
}
readyloop_bench todo "$TODO_PORT"
readyloop_bench kv "$KV_PORT"

# 3. app2 killed under load. Writers (3 todo, 3 kv) and `readyloop bench`
# at todo run through the balancer; a third of the way in, every process in
# app2's namespace gets SIGKILL.
for id in 1 2 3; do
    for service in todo kv; do
        port=$TODO_PORT
        [ "$service" = todo ] || port=$KV_PORT
        # shellcheck disable=SC2016 # expanded by that bash
        start_in client "$TMP/writer.$service.$id.out" env TMP="$TMP" \
            bash -c '. "$0"; writer "$@"' "$ROOT/benches/cluster-clients.sh" \
            "$service" "$LB_IP" "$port" "$id"
    done
done
start_in client "$TMP/load-bench.txt" "$BIN" bench --addr "$LB_IP:$TODO_PORT" --workload todo \
    --conns 50 --duration "${LOAD_SECONDS}s" --warmup 200ms
sleep "$((LOAD_SECONDS / 3))"
killed_at=$(date +%s%N)
# shellcheck disable=SC2046 # one pid a word
kill -KILL $(ip netns pids "$PREFIX-app2")
down_ms=""
for _ in $(seq 100); do
    if [ "$(server_status todo_hosts app2)" = DOWN ] && [ "$(server_status kv_hosts app2)" = DOWN ]; then
        down_ms=$((($(date +%s%N) - killed_at) / 1000000))
        break
    fi
    sleep 0.05
done
if [ -n "$down_ms" ]; then
    ok "app2 killed (SIGKILL) under load: HAProxy marked it DOWN in todo and kv after $down_ms ms"
else
    fail "app2 killed: HAProxy still does not show it DOWN after 5 s (todo $(server_status todo_hosts app2), kv $(server_status kv_hosts app2))"
fi
sleep "$((LOAD_SECONDS - LOAD_SECONDS / 3))"
touch "$TMP/stop"
# The load is over when the client namespace is empty again.
for _ in $(seq 200); do
    [ -n "$(ip netns pids "$PREFIX-client")" ] || break
    sleep 0.05
done
[ -z "$(ip netns pids "$PREFIX-client")" ] || die "the writers or bench did not stop"
row=$(awk -F' *[|] *' '$2 == "target" { printf "%s req/s, p99 %s, max %s, %s errors", $5, $7, $9, $10 }' "$TMP/load-bench.txt")
if [ -n "$row" ]; then
    say "figure readyloop bench --workload todo --conns 50 while app2 died: $row"
else
    fail "readyloop bench under the kill: $(tail -n 3 "$TMP/load-bench.txt")"
fi

# HAProxy's own count: connections it could not make, and how many it
# retried and sent to another host.
in_ns client curl -s --max-time 2 "http://$LB_IP:$STATS_PORT/stats;csv" |
    awk -F, '$2 == "BACKEND" && $1 ~ /_hosts$/ {
        printf "cluster: figure haproxy %s: %d connections, %d failed to connect, %d retried, %d redispatched\n",
            $1, $8, $14, $16, $17 }'

# Routed around: fresh connections through the balancer are all answered.
answered=0
for _ in $(seq 20); do
    got=$(client_bash 'tcp_ask "$@"' "$LB_IP" "$TODO_PORT" "GET/$probe_key/x")
    [ "$got" != "$probe_value" ] || answered=$((answered + 1))
done
if [ "$answered" = 20 ]; then
    ok "after the kill, 20 of 20 new connections through the balancer are answered"
else
    fail "after the kill, only $answered of 20 new connections through the balancer are answered"
fi

# No acknowledged write lost: each read back through the balancer.
for service in todo kv; do
    port=$TODO_PORT
    [ "$service" = todo ] || port=$KV_PORT
    cat "$TMP/acked.$service".* >"$TMP/acked.$service" 2>/dev/null || true
    cat "$TMP/errors.$service".* >"$TMP/errors.$service" 2>/dev/null || true
    acked=$(wc -l <"$TMP/acked.$service")
    errors=$(wc -l <"$TMP/errors.$service")
    client_bash 'readback "$@"' "$service" "$LB_IP" "$port" "$TMP/acked.$service" >"$TMP/lost.$service"
    lost=$(wc -l <"$TMP/lost.$service")
    say "figure $service writers: $acked writes acknowledged, $errors failed (not acknowledged) around the kill"
    if [ "$acked" -gt 0 ] && [ "$lost" = 0 ]; then
        ok "$service: all $acked acknowledged writes read back through the balancer"
    else
        fail "$service: $lost of $acked acknowledged writes did not read back: $(head -n 3 "$TMP/lost.$service" | tr '\n' ' ')"
    fi
done

# app2 started again: HAProxy takes it back (rise 2) and, holding no data
# of its own, it serves what was written while it was gone.
start_app 2
wait_port "${APP_IPS[1]}" app2 "$TODO_PORT" "readyloop todo"
back_ms=""
restarted_at=$(date +%s%N)
for _ in $(seq 100); do
    if [ "$(server_status todo_hosts app2)" = UP ] && [ "$(server_status kv_hosts app2)" = UP ]; then
        back_ms=$((($(date +%s%N) - restarted_at) / 1000000))
        break
    fi
    sleep 0.05
done
last_write=$(tail -n 1 "$TMP/acked.todo")
got=$(client_bash 'tcp_ask "$@"' "${APP_IPS[1]}" "$TODO_PORT" "GET/${last_write%% *}/x")
if [ -z "$back_ms" ]; then
    fail "app2 restarted: HAProxy does not show it UP after 5 s"
elif [ "$got" != "${last_write#* }" ]; then
    fail "app2 restarted: GET ${last_write%% *} gave ${got@Q}, not ${last_write#* }"
else
    ok "app2 restarted: UP again in HAProxy after $back_ms ms, and it reads the writes made while it was down"
fi

if [ "$FAILURES" -ne 0 ]; then
    say "$FAILURES check(s) FAILED"
    exit 1
fi
say "PASS"
