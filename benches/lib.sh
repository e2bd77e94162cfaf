# Helpers shared by the benchmark scripts (compare.sh, kv-vs-redis.sh):
# sourced, not run. Sourcing makes a temporary directory $TMP and a trap
# that stops every process the script started (the ones in PIDS and every
# live descendant) and removes $TMP on exit, error or Ctrl-C.
# Needs ROOT set to the repository.

SCRIPT=$(basename "$0")
die() { echo "$SCRIPT: $*" >&2; exit 1; }
need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 is missing: $2"
}
[ "$(uname -s)" = Linux ] || die "Linux only: CPU and memory are read from /proc"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/readyloop-${SCRIPT%.sh}.XXXXXX")
PIDS=()
# Every live descendant of this script: the servers it started, `bench` and
# the servers bench spawned (and a forking server's children). Taken in one
# snapshot before anything is killed, so orphans are not missed.
descendants() {
    ps -e -o pid=,ppid= | awk -v root=$$ '
        { parent[$1] = $2 }
        END {
            for (p in parent) {
                for (q = parent[p]; q > 1; q = parent[q]) {
                    if (q == root) { print p; break }
                    if (!(q in parent)) break
                }
            }
        }'
}
cleanup() {
    local pid all
    all=$(descendants; printf '%s\n' "${PIDS[@]}")
    for pid in $all; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $all; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Bash runs a trap only once the foreground command ends; a command in the
# background with `wait` lets Ctrl-C or SIGTERM stop the script at once.
run() {
    "$@" &
    wait $!
}

START=$(date +%s)
log() { printf '\n== %s (%ds)\n' "$*" $(($(date +%s) - START)) >&2; }

# Waits for "listening on 127.0.0.1:PORT" in FILE and prints the port.
wait_port() {
    local file=$1 pid=$2 port
    for _ in $(seq 100); do
        port=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$file" 2>/dev/null |
            head -1 | cut -d: -f2 || true)
        [ -n "$port" ] && { echo "$port"; return; }
        kill -0 "$pid" 2>/dev/null || die "server pid $pid exited: $(tail -5 "$file")"
        sleep 0.1
    done
    die "no 'listening on' line in $file after 10 s: $(tail -5 "$file")"
}

# A free port on 127.0.0.1 (for servers that cannot be given port 0).
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 30000))
        ss -Htln "sport = :$port" | grep -q . || { echo "$port"; return; }
    done
    die "no free port found"
}

# utime + stime of PID, in clock ticks.
ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

stop() {
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}
