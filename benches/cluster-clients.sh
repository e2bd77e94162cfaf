# shellcheck shell=bash
# The clients of benches/cluster.sh, sourced (not run) by the bash it
# starts in the client namespace: one request and its reply, the writers
# that record every acknowledged write, and the read-back of those writes.
# Plain bash over /dev/tcp, so the checks need no client but bash; each
# request is built whole and written with one write() (printf writes a
# format line by line, and small writes in a row meet Nagle's delay).
# Needs TMP (the run's directory) in the environment.

# tcp_ask HOST PORT LINE: LINE and a \n on a fresh connection; prints the
# first reply line without its \r (empty on error).
tcp_ask() {
    local reply=""
    trap '' PIPE
    exec 3<>"/dev/tcp/$1/$2" || return 1
    if printf '%s\n' "$3" >&3; then read -r -t 2 reply <&3 || true; fi
    exec 3<&- 3>&-
    printf '%s\n' "${reply%$'\r'}"
}

# writer todo|kv HOST PORT ID: writes key <todo|kv>ID_<n> = v<n> (todo
# POST, kv SET), a new connection every 20 requests, until $TMP/stop
# appears. A write answered `submit success` (`+OK`) goes to
# $TMP/acked.<todo|kv>.ID as "key value"; any other outcome (refused,
# reset, timed out, an error reply) to $TMP/errors.<todo|kv>.ID, and the
# next write opens a new connection. Run in the client namespace.
writer() {
    local n=0 reply request key acked=$TMP/acked.$1.$4 errors=$TMP/errors.$1.$4 want=+OK
    [ "$1" = kv ] || want="submit success"
    trap '' PIPE
    while [ ! -e "$TMP/stop" ]; do
        if ! exec 3<>"/dev/tcp/$2/$3"; then
            echo "$1$4_$n connect refused" >>"$errors"
            sleep 0.05
            continue
        fi 2>/dev/null
        for _ in $(seq 20); do
            n=$((n + 1))
            key=$1$4_$n
            reply=""
            if [ "$1" = todo ]; then
                printf -v request 'POST/%s=v%s/x\n' "$key" "$n"
            else
                # shellcheck disable=SC2016 # RESP's `$`, not an expansion
                printf -v request '*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\nv%s\r\n' \
                    "${#key}" "$key" "$((${#n} + 1))" "$n"
            fi
            if printf '%s' "$request" >&3 2>/dev/null; then
                read -r -t 2 reply <&3 || true
            fi
            if [ "${reply%$'\r'}" = "$want" ]; then
                echo "$key v$n" >>"$acked"
            else
                echo "$key ${reply@Q}" >>"$errors"
                break
            fi
        done
        exec 3<&- 3>&-
    done
}

# readback todo|kv HOST PORT FILE: every "key value" line of FILE read
# back on one connection, GETs pipelined 100 at a time; prints each key
# whose value is not there, as "key what-came-instead".
readback() {
    local lines=() start i key value got request batch
    mapfile -t lines <"$4"
    exec 3<>"/dev/tcp/$2/$3" || { echo "connect to $2:$3 failed"; return; }
    for ((start = 0; start < ${#lines[@]}; start += 100)); do
        batch=""
        for ((i = start; i < start + 100 && i < ${#lines[@]}; i++)); do
            key=${lines[i]%% *}
            if [ "$1" = todo ]; then
                printf -v request 'GET/%s/x\n' "$key"
            else
                # shellcheck disable=SC2016 # RESP's `$`, not an expansion
                printf -v request '*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n' "${#key}" "$key"
            fi
            batch+=$request
        done
        printf '%s' "$batch" >&3
        for ((i = start; i < start + 100 && i < ${#lines[@]}; i++)); do
            key=${lines[i]%% *} value=${lines[i]#* } got=""
            read -r -t 5 got <&3 || true
            # kv: a bulk reply, `$<length>` then the value.
            if [ "$1" = kv ] && [ "${got%$'\r'}" = "\$${#value}" ]; then
                read -r -t 5 got <&3 || true
            fi
            [ "${got%$'\r'}" = "$value" ] || echo "$key ${got@Q}"
        done
    done
    exec 3<&- 3>&-
}
