#!/usr/bin/env bash
# Debian's mosquitto MQTT broker (single-threaded: one poll loop) and mosquitto_pub -l (two
# threads: main reads lines from a pipe and queues them, libmosquitto's network thread sends
# them). 10 publishers each send the numbers 1..2000 as QoS 1 messages on topic test/N; one
# mosquitto_sub (native) must receive all 20,000, each topic's in order. Natively, then with
# the broker and every publisher under cooprun: the broker runs as without coop (one greenlet:
# every call goes straight to libc), each publisher's network thread becomes a greenlet beside
# the one reading the pipe.
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need mosquitto mosquitto
need mosquitto_pub mosquitto-clients
need_library

PUBLISHERS=10 MESSAGES=2000 LIMIT_S=30
# Runtime threads allowed under coop: none. The publishers resolve 127.0.0.1 (a numeric
# address) before they start their network thread; the broker starts no thread.
ALLOWED_RUNTIME=0

# run MODE [PREFIX...]: sets broker_threads, pub_threads.
run() {
    local mode=$1 port sub pubs=() i rc bad
    shift
    port=$(free_port)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n' "$port" >"$TMP/broker.$mode.conf"
    start_server "broker.$mode" "$@" mosquitto -c "$TMP/broker.$mode.conf"
    wait_port "$port"
    # -d: its SUBACK says that the subscription is in place, before the first message.
    timeout $LIMIT_S stdbuf -oL mosquitto_sub -p "$port" -t 'test/#' -q 1 -v -d -C $((PUBLISHERS * MESSAGES)) \
        >"$TMP/sub.$mode" 2>"$TMP/sub.$mode.err" &
    sub=$!
    wait_line "$TMP/sub.$mode" '^Client .* received SUBACK' "$sub" "$mode: mosquitto_sub"
    for i in $(seq $PUBLISHERS); do
        seq $MESSAGES | timeout $LIMIT_S "$@" mosquitto_pub -p "$port" -t "test/$i" -l -q 1 \
            2>"$TMP/pub.$mode.$i.err" &
        pubs+=($!)
    done
    # The first publisher's threads (timeout's child: cooprun execs mosquitto_pub).
    : >"$TMP/pub_samples"
    while kill -0 "${pubs[0]}" 2>/dev/null; do
        for i in $(pgrep -P "${pubs[0]}"); do os_threads "$i" >>"$TMP/pub_samples" 2>/dev/null; done
        os_threads "$server" >>"$TMP/broker_samples" 2>/dev/null
        sleep 0.01
    done
    for i in "${!pubs[@]}"; do
        wait "${pubs[$i]}" || fail "$mode: publisher $((i + 1)) exited with status $?: $(head -n 5 "$TMP/pub.$mode.$((i + 1)).err")"
    done
    wait $sub
    rc=$?
    broker_threads=$(sort -n "$TMP/broker_samples" | tail -n 1)
    pub_threads=$(sort -n "$TMP/pub_samples" | tail -n 1)
    : >"$TMP/broker_samples"
    kill -0 "$server" 2>/dev/null || fail "$mode: mosquitto died: $(tail -n 20 "$TMP/broker.$mode.err")"
    stop_server "$server" TERM
    note "$mode: subscriber status $rc, $(grep -c '^test/' "$TMP/sub.$mode") messages; broker at most $broker_threads OS threads, a publisher ${pub_threads:-?}; broker exit status $status"
    ((rc == 0)) || fail "$mode: mosquitto_sub exited with status $rc (124: timed out): $(head -n 5 "$TMP/sub.$mode.err")"
    bad=0
    for i in $(seq $PUBLISHERS); do
        sed -n "s|^test/$i ||p" "$TMP/sub.$mode" | cmp -s - <(seq $MESSAGES) || bad=$((bad + 1))
    done
    ((bad == 0)) || fail "$mode: $bad topics did not arrive whole and in order"
    [ "$status" -eq 0 ] || fail "$mode: mosquitto exited with status $status on SIGTERM"
    [ -n "$pub_threads" ] || fail "$mode: no sample of a publisher's threads"
}

: >"$TMP/broker_samples"
run native
native_broker=$broker_threads native_pub=$pub_threads   # samples: shown, not checked

COOP_STATS=1 run coop "$COOPRUN" --
check_threads coop "$broker_threads"
check_threads coop "$pub_threads"
note "coop: a publisher's $(grep '^coop: stats: greenlets' "$TMP/pub.coop.1.err")"
created=$(coop_stat created "$TMP/pub.coop.1.err")
((created == 1)) || fail "coop: a publisher's network thread did not become a greenlet (created '$created')"

matrix "mosquitto + mosquitto_pub -l" "$(pkg_version mosquitto)" "broker $native_broker, publisher $native_pub" \
    "broker $broker_threads, publisher $pub_threads (network thread: a greenlet)" pass
echo "PASS: $((PUBLISHERS * MESSAGES)) messages in order natively and under coop"
