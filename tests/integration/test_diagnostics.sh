#!/usr/bin/env bash
# coop's diagnostics on tests/samples/diag.c, a program built without coop: the dump, the
# blocking monitor, deadlock detection (two mutexes; a lost wakeup), stack overflow reports,
# statistics, and silence for a server idle in accept.
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/diag" ] || fail "$SAMPLES/diag is not built (make)"
[ -f "$COOP_LIBRARY" ] || skip "no library: $COOP_LIBRARY"

# Runs diag MODE under cooprun with the settings given as VAR=value before it.
run() {
    local settings=()
    while [[ $1 == *=* ]]; do settings+=("$1"); shift; done
    env "${settings[@]}" timeout 30 "$COOPRUN" -- "$SAMPLES/diag" "$@" >"$TMP/out" 2>"$TMP/err"
    status=$?
}
expect_status() { [ "$status" -eq "$1" ] || { cat "$TMP/err"; fail "$2: status $status, expected $1"; }; }
expect_text() { grep -Eq -- "$1" "$TMP/err" || { cat "$TMP/err"; fail "$2: no line matching: $1"; }; }

# The dump: every greenlet, its state, and stacks naming the sample's functions; the
# program goes on afterwards.
COOP_DUMP_SIGNAL=USR1 "$COOPRUN" -- "$SAMPLES/diag" dump >"$TMP/out" 2>"$TMP/err" &
pid=$!
for _ in $(seq 100); do grep -q ready "$TMP/out" && break; sleep 0.05; done
kill -USR1 "$pid"
wait "$pid"
status=$?
expect_status 0 "dump"
expect_text '^coop: greenlets of [0-9]+ hubs? \(pid [0-9]+\):' "dump"
expect_text '^  hub 0 on thread [0-9]+: ' "dump"
expect_text '^  #[0-9]+ "sleeper" sleeping, timeout in [0-9]+ ms' "dump"
expect_text '^  #[0-9]+ "waiter" waiting: blocked on cond 0x' "dump"
expect_text '^  #1 \(main\) waiting: joining greenlet #[0-9]+' "dump"
expect_text '^        at sleeper\+0x' "dump"
expect_text '^        at cond_waiter\+0x' "dump"
expect_text '^        at main\+0x' "dump"
note "dump: every greenlet with its state and stack"

run COOP_MAX_BLOCKING_MS=200 spin
expect_status 0 "monitor"
expect_text '^coop: greenlet #[0-9]+ "spinner" has kept its hub for [0-9]+ ms without yielding' "monitor"
expect_text '^        at spinner\+0x' "monitor"
[ "$(grep -c 'has kept its hub' "$TMP/err")" -eq 1 ] || fail "monitor: reported more than once per episode"
note "monitor: the spinning greenlet, once, with its stack"

run deadlock
expect_status 3 "deadlock"
expect_text '^coop: all greenlets are asleep - deadlock!$' "deadlock"
expect_text '^        at lock_first_then_second\+0x' "deadlock"
expect_text '^        at lock_second_then_first\+0x' "deadlock"
note "deadlock: two mutexes, both stacks, status 3"

run lost
expect_status 3 "lost wakeup"
expect_text '^coop: all greenlets are asleep - deadlock!$' "lost wakeup"
expect_text 'waiting: blocked on cond 0x' "lost wakeup"
expect_text '^        at cond_waiter\+0x' "lost wakeup"
note "lost wakeup: reported as a deadlock"

run overflow
expect_status 139 "overflow"
expect_text '^coop: greenlet #[0-9]+ "deep" overflowed its [0-9]+ KiB stack$' "overflow"
expect_text '^        at recurse\+0x' "overflow"
expect_text 'raise COOP_STACK_SIZE' "overflow"
note "overflow: reported, then death by SIGSEGV"

run COOP_MAX_BLOCKING_MS=100 COOP_STATS=1 idle
expect_status 0 "idle server"
grep -Eq 'deadlock|kept its hub' "$TMP/err" && { cat "$TMP/err"; fail "idle server: reported"; }
expect_text '^coop: stats: greenlets created 2, peak alive 3' "stats"
expect_text '^coop: stats: longest run without yielding' "stats"
note "idle in accept: never reported; statistics at exit"
