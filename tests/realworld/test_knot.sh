#!/usr/bin/env bash
# Debian's Knot DNS (knotd: UDP, TCP and background workers, each a thread; zones swapped under
# liburcu's read-copy-update, whose thread-locals ask for 128-byte alignment) as the
# authoritative server of a local zone: no network. Four dig processes at once (two over UDP,
# two over TCP) ask 200 questions, 180 names of the zone and 20 that are not in it. Then the
# zone file gets a new serial and new addresses, `knotc zone-reload` (a control socket, a
# background worker, a grace period of RCU before the old zone is freed) returns, and the same
# questions must get the new answers. SIGTERM must then end knotd with status 0.
#
# coop refused knotd at start before: glibc's static TLS area, of 128-byte alignment with
# liburcu, has a size that is no multiple of it (tls_modules in test_tls holds that now).
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
PATH=$PATH:/usr/sbin # knotd and knotc are in /usr/sbin, which a user's PATH may lack
need knotd knot
need dig bind9-dnsutils
need_library

NAMES=180 MISSING=20 BATCHES=4 DIG_TIMEOUT_S=30 LIMIT_S=120 # hang guards
WORKERS=2    # of each kind
# Runtime threads allowed under coop: none (a numeric listen address, zones from files).
ALLOWED_RUNTIME=0
ZONE=coop.test
a_questions

# conf MODE PORT: the zone from $TMP/zone, never written back; a control socket; state in $TMP.
conf() {
    cat <<EOF
server:
    listen: 127.0.0.1@$2
    rundir: $TMP/knot.$1
    udp-workers: $WORKERS
    tcp-workers: $WORKERS
    background-workers: $WORKERS
control:
    listen: $TMP/knot.$1/control.sock
database:
    storage: $TMP/knot.$1
template:
  - id: default
    storage: $TMP
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: $ZONE
    file: zone
log:
  - target: stderr
    any: info
EOF
}

# serve MODE [PREFIX...]: one run; sets max_threads.
serve() {
    local mode=$1 ports
    shift
    read -r -a ports <<<"$(dns_ports $((1 + BATCHES / 2)))"
    mkdir -p "$TMP/knot.$mode"
    conf "$mode" "${ports[0]}" >"$TMP/knot.$mode.conf"
    zone_file 1 0
    start_server "$mode" "$@" knotd -c "$TMP/knot.$mode.conf"
    # knotd listens before its zones are loaded: its log says when the zone is.
    wait_line "$TMP/$mode.err" "\[$ZONE\.\] loaded, serial none -> 1" "$server" "$mode: knotd"
    start_sampler "$server"
    ask "$mode" "${ports[@]}"
    check_answers "$mode" "serial 1"

    zone_file 2 1
    timeout "$LIMIT_S" knotc -c "$TMP/knot.$mode.conf" --blocking zone-reload "$ZONE" >"$TMP/knotc.$mode" 2>&1 ||
        fail "$mode: knotc zone-reload exited with status $?: $(cat "$TMP/knotc.$mode")"
    wait_line "$TMP/$mode.err" "\[$ZONE\.\] loaded, serial 1 -> 2" "$server" "$mode: knotd"
    ask "$mode" "${ports[@]}"
    check_answers "$mode" "after zone-reload (serial 2)"
    stop_sampler

    stop_server "$server" TERM
    note "$mode: NOERROR $noerror, NXDOMAIN $nxdomain after the reload; at most $max_threads OS threads in $samples samples; exit status $status after SIGTERM"
    [ "$status" -eq 0 ] || fail "$mode: knotd exited with status $status on SIGTERM: $(tail -n 5 "$TMP/$mode.err")"
    check_threads "$mode" "$max_threads"
}

native_and_coop serve
((${created:-0} >= 3 * WORKERS)) || fail "coop: knotd's workers did not become greenlets (created '$created')"

matrix "knotd (Knot DNS: UDP, TCP and background workers; liburcu)" "$(pkg_version knot)" \
    "$native_threads" "$coop_threads ($created greenlets)" pass
echo "PASS: $((NAMES + MISSING)) questions answered from the zone by knotd natively and under coop, and again after a zone-reload; SIGTERM ends it both times"
