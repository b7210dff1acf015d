#!/usr/bin/env bash
# coop's diagnostics on tests/samples/diag.c, a program built without coop: the dump, the
# blocking monitor (with preemption off; with it on, what it cannot preempt and why),
# deadlock detection (two mutexes; a lost wakeup), stack overflow reports, statistics, and
# silence for a server idle in accept and for a main thread's wait alone before its first
# thread.
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/diag" ] || fail "$SAMPLES/diag is not built (make)"
[ -f "$COOP_LIBRARY" ] || skip "no library: $COOP_LIBRARY"

# Runs diag MODE under cooprun with the settings given as VAR=value before it.
run() {
    local settings=()
    while [[ $1 == *=* ]]; do settings+=("$1"); shift; done
    env "${settings[@]}" timeout 120 "$COOPRUN" -- "$SAMPLES/diag" "$@" >"$TMP/out" 2>"$TMP/err"
    status=$?
}
expect_status() { [ "$status" -eq "$1" ] || { cat "$TMP/err"; fail "$2: status $status, expected $1"; }; }
expect_text() { grep -Eq -- "$1" "$TMP/err" || { cat "$TMP/err"; fail "$2: no line matching: $1"; }; }

# The dump: every greenlet, its state, and stacks naming the sample's functions; the
# program goes on afterwards, until its stdin (a FIFO held here) ends. Each wait below is
# for something the program must do; 60 s is only the guard against a hang.
DUMP_LINES=('^coop: greenlets of [0-9]+ hubs? \(pid [0-9]+\):'
    '^  hub 0 on thread [0-9]+: '
    '^  #[0-9]+ "sleeper" sleeping, timeout in [0-9]+ ms'
    '^  #[0-9]+ "waiter" waiting: blocked on cond 0x'
    '^  #1 \(main\) waiting: joining greenlet #[0-9]+'
    '^        at sleeper\+0x' '^        at cond_waiter\+0x' '^        at main\+0x')
dump_complete() { local line; for line in "${DUMP_LINES[@]}"; do grep -Eq -- "$line" "$TMP/err" || return 1; done; }
mkfifo "$TMP/in"
COOP_DUMP_SIGNAL=USR1 "$COOPRUN" -- "$SAMPLES/diag" dump <"$TMP/in" >"$TMP/out" 2>"$TMP/err" &
pid=$!
exec {stdin}>"$TMP/in"
for _ in $(seq 600); do grep -q ready "$TMP/out" && break; sleep 0.1; done
grep -q ready "$TMP/out" || fail "dump: no 'ready' in 60 s"
kill -USR1 "$pid"
for _ in $(seq 600); do dump_complete && break; sleep 0.1; done
exec {stdin}>&-
wait "$pid"
status=$?
expect_status 0 "dump"
for line in "${DUMP_LINES[@]}"; do expect_text "$line" "dump"; done
note "dump: every greenlet with its state and stack"

# The spinning modes run on one hub, with handoff off: diag's computation ends when its
# ticker thread has ticked (proof that the computation gave way), which on a second hub it
# does at once, and on a spare too (on a busy machine the monitor may see the spinning
# hub's thread asleep in the kernel, a page fault say, and hand its other greenlets off).
run COOP_HUBS=1 COOP_HANDOFF_MS=0 COOP_MAX_BLOCKING_MS=200 COOP_PREEMPT_MS=0 spin     # computes until the report is out
expect_status 0 "monitor"
expect_text '^coop: greenlet #[0-9]+ "spinner" has kept its hub for [0-9]+ ms without yielding' "monitor"
expect_text '^        at (compute_for|spinner)\+0x' "monitor"
[ "$(grep -c 'has kept its hub' "$TMP/err")" -eq 1 ] || fail "monitor: reported more than once per episode"
grep -q 'not preempted' "$TMP/err" && fail "monitor: a reason for not preempting with preemption off"
note "monitor, preemption off: the spinning greenlet, once, with its stack"

# With preemption on (the default) the spinner is preempted, so the monitor has nothing to say.
run COOP_HUBS=1 COOP_HANDOFF_MS=0 COOP_MAX_BLOCKING_MS=200 COOP_STATS=1 spin
expect_status 0 "preempted spinner"
grep -q 'has kept its hub' "$TMP/err" && { cat "$TMP/err"; fail "preempted spinner: reported"; }
expect_text '^coop: stats: preemptions [1-9][0-9]* \(by signal [0-9]+, at a later call [0-9]+\)' "preempted spinner"
note "preempted spinner: not reported; $(grep -o 'preemptions [0-9]*' "$TMP/err")"

# What cannot be preempted is reported: where it is (its stack) and why not.
run COOP_HUBS=1 COOP_HANDOFF_MS=0 COOP_MAX_BLOCKING_MS=200 spin-in-libc
expect_status 0 "spin in libc"
expect_text '^coop: greenlet #[0-9]+ "sorter" has kept its hub for [0-9]+ ms without yielding' "spin in libc"
expect_text '^        at compare_slowly\+0x' "spin in libc"
# (In a sanitizer build the frame may be ASan's interceptor of clock_gettime, guarded too.)
expect_text '^coop: greenlet #[0-9]+ was not preempted \(COOP_PREEMPT_MS=10\): a frame of its stack is in (libc\.so\.6|libasan\.so)' "spin in libc"
note "spin in libc: $(grep -oE 'a frame of its stack is in (libc|libasan)[^,]*' "$TMP/err")"

run COOP_HUBS=1 COOP_HANDOFF_MS=0 COOP_MAX_BLOCKING_MS=200 spin-holding-file
expect_status 0 "spin holding a FILE lock"
expect_text '^coop: greenlet #[0-9]+ "locker" has kept its hub' "spin holding a FILE lock"
expect_text '^coop: greenlet #[0-9]+ was not preempted \(COOP_PREEMPT_MS=10\): it holds a FILE lock \(flockfile\)$' "spin holding a FILE lock"
note "spin holding a FILE lock: reported, the lock named as the reason"

# The monitor's sample is taken by a signal handler on the hub's thread, which may have
# interrupted malloc under its lock; naming a frame makes libunwind allocate, so the monitor
# names them afterwards, on its own thread. spin-in-malloc is sampled 16 times inside
# malloc_trim, which holds the lock: it hung at its first report before (5 runs of 5).
run COOP_HUBS=1 COOP_HANDOFF_MS=0 COOP_MAX_BLOCKING_MS=20 COOP_PREEMPT_MS=0 spin-in-malloc
expect_status 0 "spin in malloc"
reports=$(grep -c '^coop: greenlet #[0-9]* "allocator" has kept its hub' "$TMP/err")
((reports == 16)) || { cat "$TMP/err"; fail "spin in malloc: $reports reports, expected 16 (one per episode)"; }
in_trim=$(grep -c '^        at malloc_trim+0x' "$TMP/err")
# Under ASan malloc is ASan's own: glibc's malloc_trim has next to nothing to trim.
[ -n "$ASAN_RUNTIME" ] || ((in_trim > 0)) ||
    { cat "$TMP/err"; fail "spin in malloc: no sample landed inside malloc_trim: the test proved nothing"; }
note "spin in malloc: 16 reports, $in_trim of them sampled inside malloc_trim"

run COOP_ON_DEADLOCK=exit deadlock
expect_status 3 "deadlock"
expect_text '^coop: all greenlets are asleep - deadlock!$' "deadlock"
expect_text '^        at lock_first_then_second\+0x' "deadlock"
expect_text '^        at lock_second_then_first\+0x' "deadlock"
note "deadlock: two mutexes, both stacks, status 3"

run COOP_ON_DEADLOCK=exit lost
expect_status 3 "lost wakeup"
expect_text '^coop: all greenlets are asleep - deadlock!$' "lost wakeup"
expect_text 'waiting: blocked on cond 0x' "lost wakeup"
expect_text '^        at cond_waiter\+0x' "lost wakeup"
note "lost wakeup: reported as a deadlock"

run alarm
expect_status 142 "alarm armed"
grep -q deadlock "$TMP/err" && { cat "$TMP/err"; fail "alarm armed: reported as a deadlock"; }
note "alarm armed: no deadlock report, SIGALRM's default action ends it as natively (status 142)"

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

# A server's main thread waits alone for its first client (1 s here, past the limit), then
# computes for a moment beside its first thread: its hold counts from when it had company.
# The limit leaves a busy machine 400 ms to preempt that computation (a 10 ms slice).
mkfifo "$TMP/first"
COOP_MAX_BLOCKING_MS=400 timeout 120 "$COOPRUN" -- "$SAMPLES/diag" company <"$TMP/first" >"$TMP/out" 2>"$TMP/err" &
pid=$!
exec {first}>"$TMP/first"
sleep 1
echo >&"$first"
exec {first}>&-
wait "$pid"
status=$?
expect_status 0 "company"
grep -q 'kept its hub' "$TMP/err" && { cat "$TMP/err"; fail "company: the wait alone was reported as a hold"; }
note "a lone wait, then company: not reported"
