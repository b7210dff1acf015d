#!/usr/bin/env bash
# Family dns, natively and under coop, with the same output both times. In a private mount
# namespace (unshare -m; the tests run as root), /etc/hosts, /etc/resolv.conf and
# /etc/nsswitch.conf are bind-mounted from test files, with a DNS responder on a loopback
# address (tests/samples/dns_responder.py):
# - every lookup function on names from the hosts file (and one that is nowhere) gives the
#   same answers, error codes and h_errno;
# - 20 threads look up names at once while an echo server thread answers a client thread.
#   The responder holds every answer until as many lookups wait at once as the threadpool
#   has threads (so they run side by side) and the program, whose echo client made 10 round
#   trips while all lookups were pending, and a numeric getaddrinfo and getnameinfo were
#   answered (no NSS, no network: coop makes those on the caller, not behind the pool's
#   busy threads), says "go" (so the echo went on meanwhile): all resolve, or fail at the
#   resolver's 30 s time-out. Under coop the program has one OS thread plus the threadpool's.
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/lookup" ] || fail "$SAMPLES/lookup is not built (make)"
[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built"
command -v unshare >/dev/null && command -v python3 >/dev/null || skip "needs unshare and python3"
[ "$(id -u)" = 0 ] || skip "needs root for a private mount namespace"

LOOKUPS=20
export COOP_THREADPOOL_SIZE=${COOP_THREADPOOL_SIZE:-10}
# The lookups that must wait at once: a pool of N threads resolves N at a time.
GATHER=$((LOOKUPS < COOP_THREADPOOL_SIZE ? LOOKUPS : COOP_THREADPOOL_SIZE))
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-$COOP_THREADPOOL_SIZE}
# A loopback address of its own, so that nothing else on port 53 is in the way.
NS=127.77.$((RANDOM % 250 + 1)).$((RANDOM % 250 + 1))

cat >"$TMP/hosts" <<'HOSTS'
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
10.20.30.40 alpha.coop.test alpha
10.20.30.41 beta.coop.test beta b2
10.20.30.41 beta-again.coop.test
fd00::5 gamma.coop.test
HOSTS
printf 'nameserver %s\noptions timeout:30 attempts:1\n' "$NS" >"$TMP/resolv.conf"  # a hang guard
printf 'hosts: files dns\n' >"$TMP/nsswitch.conf"
NAMES="localhost alpha beta.coop.test beta-again.coop.test gamma.coop.test 10.20.30.40 ::1 nowhere.coop.test"

# The inner script, run in the private namespace; its stdout is the test's report.
cat >"$TMP/inner.sh" <<INNER
set -u
mount --bind "$TMP/hosts" /etc/hosts && mount --bind "$TMP/resolv.conf" /etc/resolv.conf &&
    mount --bind "$TMP/nsswitch.conf" /etc/nsswitch.conf || { echo "SKIP: bind mounts refused"; exit 77; }
python3 "$ROOT/tests/samples/dns_responder.py" $NS $GATHER >"$TMP/responder.out" 2>&1 &
responder=\$!
trap 'kill \$responder 2>/dev/null' EXIT
for i in \$(seq 600); do grep -q ready "$TMP/responder.out" && break; sleep 0.1; done
grep -q ready "$TMP/responder.out" || { echo "FAIL: responder: \$(cat "$TMP/responder.out")"; exit 1; }

"$SAMPLES/lookup" names $NAMES >"$TMP/names.native" 2>&1 || echo "FAIL: native names: status \$?"
"$COOPRUN" -- "$SAMPLES/lookup" names $NAMES >"$TMP/names.coop" 2>&1 || echo "FAIL: coop names: status \$?"

"$SAMPLES/lookup" slow $LOOKUPS delay.test $NS >"$TMP/slow.native" 2>"$TMP/slow.native.err" ||
    echo "FAIL: native slow: status \$?: \$(cat "$TMP/slow.native.err")"
"$COOPRUN" -- "$SAMPLES/lookup" slow $LOOKUPS delay.test $NS >"$TMP/slow.coop" 2>"$TMP/slow.coop.err" &
pid=\$!
max=0
while kill -0 \$pid 2>/dev/null; do
    n=\$(cat /proc/\$pid/task/*/comm 2>/dev/null | grep -cvx coop-monitor)
    ((n > max)) && max=\$n
    sleep 0.02
done
wait \$pid || echo "FAIL: coop slow: status \$?: \$(cat "$TMP/slow.coop.err")"
echo "max_threads=\$max"
INNER

report=$(timeout 250 unshare -m bash "$TMP/inner.sh")  # a hang guard
status=$?
[ $status -eq 77 ] && skip "$report"
[ $status -eq 0 ] || fail "the namespace script ended with status $status: $report"
grep '^FAIL' <<<"$report" && fail "$(grep '^FAIL' <<<"$report" | head -1)"

diff -u "$TMP/names.native" "$TMP/names.coop" >&2 || fail "names: coop's answers differ from the native ones"
grep -q 'getaddrinfo: canonname alpha.coop.test \[2 10.20.30.40 80\]' "$TMP/names.coop" ||
    fail "names: the hosts file was not used: $(head -5 "$TMP/names.coop")"
note "names: $(grep -c . "$TMP/names.coop") lines of answers, the same natively and under coop"

for f in native coop; do grep -v '^listening on' "$TMP/slow.$f" >"$TMP/slow.$f.cmp"; done
diff -u "$TMP/slow.native.cmp" "$TMP/slow.coop.cmp" >&2 || fail "slow: coop's output differs from the native one"
grep -q "^$LOOKUPS of $LOOKUPS slow lookups resolved" "$TMP/slow.coop" || fail "slow: $(head -2 "$TMP/slow.coop")"
grep -q '^echo while every lookup was pending: 10 round trips' "$TMP/slow.coop" || fail "slow: the echo stalled"
grep -q '^numeric getaddrinfo and getnameinfo while every lookup was pending: answered' "$TMP/slow.coop" ||
    fail "slow: numeric lookups waited for the pool"
note "slow native: $(cat "$TMP/slow.native.err")"
note "slow coop: $(cat "$TMP/slow.coop.err")"
max_threads=$(sed -n 's/^max_threads=//p' <<<"$report")
((max_threads <= 1 + SCHED_THREADS + SPARE_THREADS + RUNTIME_THREADS)) ||
    fail "coop: $max_threads OS threads, expected 1 (+ $SCHED_THREADS scheduler, $SPARE_THREADS spare and $RUNTIME_THREADS runtime threads)"
note "coop: at most $max_threads OS threads (1 + a pool of $COOP_THREADPOOL_SIZE)"
echo "PASS: lookups from the hosts file and $LOOKUPS DNS lookups at once with a live echo, natively and under coop"
