#!/usr/bin/env bash
# Debian's BIND 9 named (a libuv loop per CPU, a timer thread, OpenSSL) as the authoritative
# server of a local zone: no recursion, no network. Two dig processes at once ask 200
# questions over TCP, 180 names of the zone (A records) and 20 that are not in it; every
# answer must be the zone's record, every status NOERROR or NXDOMAIN as due. SIGTERM must
# then end it with status 0.
#
# named's libraries set OpenSSL up in a constructor (libisc's), which the loader runs before
# coop's: the read-write locks it takes there must already follow coop's protocol, or named
# waits for ever at start-up for a reader that glibc's encoding made up (early_locks in
# test_threads_posix holds that by construction).
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
PATH=$PATH:/usr/sbin # named is in /usr/sbin, which a user's PATH may lack
need named bind9
need dig bind9-dnsutils
need_library

NAMES=180 MISSING=20 BATCHES=2 DIG_TIMEOUT_S=30 LIMIT_S=120 # hang guards
# A copy of the program: Debian's AppArmor profile for /usr/sbin/named, where it is enforced,
# would keep it from reading $TMP and from mapping a libcoop.so of a build directory.
cp "$(command -v named)" "$TMP/named"
# Runtime threads allowed under coop: none (a numeric listen address, a zone from a file).
ALLOWED_RUNTIME=0
ZONE=coop.test

zone_file 1 0
a_questions

# conf MODE PORT: no control channel, no recursion, files in $TMP.
conf() {
    cat <<EOF
options {
    directory "$TMP";
    listen-on port $2 { 127.0.0.1; };
    listen-on-v6 { none; };
    recursion no;
    pid-file "$TMP/named.$1.pid";
    session-keyfile "$TMP/session.$1.key";
};
controls { };
zone "$ZONE" { type primary; file "$TMP/zone"; };
EOF
}

# serve MODE [PREFIX...]: one run; sets max_threads.
serve() {
    local mode=$1 port batch
    shift
    port=$(free_port)
    conf "$mode" "$port" >"$TMP/named.$mode.conf"
    start_server "$mode" "$@" "$TMP/named" -g -c "$TMP/named.$mode.conf"
    # named listens before its zones are loaded, and answers SERVFAIL until then (70 to 190 ms
    # on a 2-CPU VM, natively and under coop alike): its "running" says it is ready.
    wait_line "$TMP/$mode.err" ' running$' "$server" "$mode: named"
    start_sampler "$server"
    for batch in $(seq 0 $((BATCHES - 1))); do
        start_dig "$mode" "$port" "$batch" +tcp
    done
    wait_digs "$mode"
    stop_sampler
    kill -0 "$server" 2>/dev/null || fail "$mode: named died: $(tail -n 20 "$TMP/$mode.err")"
    stop_server "$server" TERM
    count_answers "$mode"
    note "$mode: NOERROR $noerror, NXDOMAIN $nxdomain; at most $max_threads OS threads in $samples samples; exit status $status after SIGTERM"
    check_answers "$mode"
    [ "$status" -eq 0 ] || fail "$mode: named exited with status $status on SIGTERM: $(tail -n 5 "$TMP/$mode.err")"
    check_threads "$mode" "$max_threads"
}

native_and_coop serve
((${created:-0} >= 2)) || fail "coop: named's threads did not become greenlets (created '$created')"

matrix "named (BIND 9: a libuv loop per CPU; OpenSSL set up in a library's constructor)" "$(pkg_version bind9)" \
    "$native_threads" "$coop_threads ($created greenlets)" pass
echo "PASS: $((NAMES + MISSING)) questions answered from the zone by named natively and under coop; SIGTERM ends it both times"
