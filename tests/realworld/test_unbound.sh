#!/usr/bin/env bash
# Debian's unbound with `num-threads: 4` (the main thread runs worker 0 and handles the signals;
# workers 1 to 3 block every signal with pthread_sigmask, each in its own event loop on its own
# SO_REUSEPORT sockets) as an authoritative server for a local zone: no root, no network.
# Eight dig processes at once (four over UDP, four over TCP) ask 200 questions: 180 names of
# the zone (A, AAAA or TXT records) and 20 that are not in it. Every answer must be the
# configured record, every status NOERROR or NXDOMAIN as due, and unbound's own per-thread
# statistics must count 200 queries over its 4 threads. SIGTERM must then end it with status 0.
# Natively unbound has 4 OS threads; under cooprun one.
#
# Under coop, the greenlets' masks are their own: the hub's OS thread must keep SIGTERM
# unblocked for main (before signals were per greenlet, the workers' pthread_sigmask blocked it
# for the whole hub and unbound ignored SIGTERM), and coop's dump signal must still reach the
# hub whatever the workers block: it must list unbound's 4 greenlets.
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
PATH=$PATH:/usr/sbin # unbound is in /usr/sbin, which a user's PATH may lack
need unbound unbound
need dig bind9-dnsutils
need_library

THREADS=4 NAMES=180 MISSING=20 BATCHES=8 DIG_TIMEOUT_S=30 LIMIT_S=120 # hang guards
QUERIES=$((NAMES + MISSING))
# Runtime threads allowed under coop: none. unbound opens its numeric interface before it
# starts its threads, and a local zone needs no lookup.
ALLOWED_RUNTIME=0
ZONE=coop.test

# record N: name N's record (a type of three, by N), as dig prints it with +noall +answer
# once blanks are squeezed.
record() {
    local n=$1 name="host-$1.$ZONE."
    case $((n % 3)) in
    0) echo "$name 300 IN A 10.0.$((n / 256)).$((n % 256))" ;;
    1) echo "$name 300 IN AAAA fd00::$n" ;;
    2) echo "$name 300 IN TXT \"coop answer $n\"" ;;
    esac
}

# The zone, the questions in BATCHES files (round robin, so every file has every type) and
# the answers due.
: >"$TMP/zone.conf"
: >"$TMP/expected"
for n in $(seq $NAMES); do
    line=$(record "$n")
    echo "    local-data: '$line'" >>"$TMP/zone.conf"
    echo "$line" >>"$TMP/expected"
    read -r name _ _ type _ <<<"$line"
    echo "$name $type" >>"$TMP/questions.$((n % BATCHES))"
done
for n in $(seq $MISSING); do
    echo "missing-$n.$ZONE. A" >>"$TMP/questions.$((n % BATCHES))"
done
sort "$TMP/expected" >"$TMP/expected.sorted"

# dump_greenlets PID: sends coop's dump signal (COOP_DUMP_SIGNAL=USR2) and waits (at most
# HANG_GUARD_S) for a report of THREADS greenlets; sets dumped (the greenlets it listed).
dump_greenlets() {
    local _
    kill -USR2 "$1"
    for _ in $(seq $((HANG_GUARD_S * 10))); do
        dumped=$(grep -c '^  #[0-9]' "$TMP/coop.err")
        ((dumped >= THREADS)) && break
        sleep 0.1
    done
}

# run MODE [PREFIX...]: sets max_threads, served_threads.
run() {
    local mode=$1 port ports queries
    shift
    read -r -a ports <<<"$(dns_ports $((1 + BATCHES / 2)))"
    port=${ports[0]}
    cat >"$TMP/unbound.$mode.conf" <<EOF
server:
    num-threads: $THREADS
    interface: 127.0.0.1@$port
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    access-control: 127.0.0.0/8 allow
    username: ""
    chroot: ""
    directory: "$TMP"
    pidfile: "$TMP/unbound.$mode.pid"
    do-daemonize: no
    use-syslog: no
    logfile: ""
    verbosity: 1
    module-config: "iterator"
    auto-trust-anchor-file: ""
    local-zone: "$ZONE." static
$(cat "$TMP/zone.conf")
remote-control:
    control-enable: no
EOF
    start_server "$mode" "$@" unbound -d -c "$TMP/unbound.$mode.conf"
    wait_port "$port"
    start_sampler "$server"
    ask "$mode" "${ports[@]}"
    stop_sampler
    kill -0 "$server" 2>/dev/null || fail "$mode: unbound died: $(tail -n 20 "$TMP/$mode.err")"
    [ "$mode" = coop ] && dump_greenlets "$server"
    stop_server "$server" TERM
    count_answers "$mode"
    # "server stats for thread 2: 25 queries, 25 answers from cache, ..." for each thread.
    queries=$(sed -n 's/.*server stats for thread [0-9]*: \([0-9]*\) queries.*/\1/p' "$TMP/$mode.err" | awk '{ n += $1 } END { print n }')
    served_threads=$(grep -c 'server stats for thread [0-9]*: [1-9][0-9]* queries' "$TMP/$mode.err")
    note "$mode: $(grep -c . "$TMP/answers.$mode") answers, NOERROR $noerror, NXDOMAIN $nxdomain; unbound counted ${queries:-?} queries, $served_threads of its $THREADS threads served some"
    note "$mode: at most $max_threads OS threads in $samples samples; exit status $status after SIGTERM"
    check_answers "$mode"
    [ "$status" -eq 0 ] || fail "$mode: unbound exited with status $status on SIGTERM: $(tail -n 5 "$TMP/$mode.err")"
    [ "$queries" = "$QUERIES" ] || fail "$mode: unbound's statistics count '$queries' queries, expected $QUERIES"
    (($(grep -c 'server stats for thread' "$TMP/$mode.err") == 2 * THREADS)) ||
        fail "$mode: unbound did not report statistics for its $THREADS threads"
    check_threads "$mode" "$max_threads"
}

run native
native_threads=$max_threads

COOP_STATS=1 COOP_DUMP_SIGNAL=USR2 run coop "$COOPRUN" --
coop_threads=$max_threads
created=$(coop_stat created "$TMP/coop.err")
alive=$(coop_stat "peak alive" "$TMP/coop.err")
note "coop: $(grep '^coop: stats: greenlets' "$TMP/coop.err"); the dump signal listed $dumped greenlets"
((created >= THREADS - 1)) || fail "coop: unbound's threads did not become greenlets (created '$created')"
((dumped == THREADS)) || fail "coop: the dump signal listed $dumped greenlets, expected $THREADS: $(grep -A 30 '^coop: greenlets' "$TMP/coop.err" | head -n 30)"

matrix "unbound (num-threads $THREADS)" "$(pkg_version unbound)" "$native_threads" \
    "$coop_threads ($alive greenlets)" pass
echo "PASS: $QUERIES DNS answers from unbound checked natively and under coop; SIGTERM ends it with status 0 both times"
