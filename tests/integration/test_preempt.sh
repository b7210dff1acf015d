#!/usr/bin/env bash
# Preemption on tests/samples/preempt.c, built without coop: threads that wait for one
# another without a blocking call (a spin on an atomic flag, the same with the setter sleeping
# first, a trylock loop, a pthread_equal loop), two threads computing side by side on one hub
# (alike shares) and one thread computing for 5 s while 100 others sleep 10 ms in a loop.
# A preemption asked for while a thread computes in libc under a mutex is never taken at
# its unlock (unlock: counted on stderr, one hub). Natively and under coop the output must
# be the same. Under coop the looping thread shares one OS thread
# with the thread it waits for on one hub (COOP_HUBS=1) with handoff off (COOP_HANDOFF_MS=0:
# on a busy machine any call that sleeps 2 ms, a write or a page fault, may hand the hub's
# work to a spare thread), so each run that ends shows a preemption by construction; with
# preemption off (--preempt 0) the spin cannot end at all.
# On the suite's hubs the output must be the same too. The sleepers' lateness is printed,
# never judged. coop preempts with SIGURG: a program with a SIGURG handler of its own keeps it
# (urg), and a chain of 100 generations, each a thread that computes just past a slice then
# execs the next, must never see a new program killed by a preemption signal left pending
# across an exec (with a real-time signal, whose default action is to terminate, every such
# chain died here). setuid must return while coop's monitor thread exists: glibc signals every
# thread it knows and waits for each to answer. A thread with a signal stack of its own and
# handlers that ask for it, which spins on a stack of its own (the BEAM's JIT does so), must
# get no signal frame pushed there: on one hub its spin can only end by the preemption signal
# that coop holds for it, pending (through three of its own SIGALRMs, mostly). A spin on a
# stack made with makecontext is preempted as any other: its unwinding ends at a return
# address without unwind information, reached through the information of the frame before.
# A thread that spins in code without unwind information cannot be preempted, even where its
# frame pointer is 0 (which libunwind takes for the end of the stack): on one hub, with
# another greenlet waiting (for a deadline, or for an fd), coop must say so on stderr unasked
# (the spin ends when it does); with handoff on, that hub's work must go to a spare thread,
# where the greenlet the spin waits for runs (the stats count the handoff).
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/preempt" ] || fail "$SAMPLES/preempt is not built (make)"

LIMIT_S=120 # a hang guard: every mode ends in well under a second natively
COMPUTE_S=5

# run_mode MODE LABEL [PREFIX...]: runs the sample; sets out (its stdout) and max_threads.
run_mode() {
    local mode=$1 label=$2
    shift 2
    run_sampled $LIMIT_S "$TMP/$mode.$label" "$@" "$SAMPLES/preempt" "$mode" $([ "$mode" = compute ] && echo $COMPUTE_S)
    [ "$status" -eq 0 ] || fail "$label $mode: status $status: $(head -5 "$TMP/$mode.$label.err")"
    out=$(cat "$TMP/$mode.$label")
}

for mode in spin wake trylock unlock equal urg setuid exec compute altstack ucontext unwindless unwindless-fd unwindless-end; do
    run_mode $mode native
    native=$out
    [ $mode = wake ] && native_wake=$out
    [ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"
    # One hub, no handoff: the looping thread and the one it waits for share one OS thread.
    COOP_HUBS=1 COOP_HANDOFF_MS=0 COOP_STATS=1 run_mode $mode coop "$COOPRUN" --
    [ "$out" = "$native" ] || fail "$mode: coop printed '$out', natively '$native'"
    ((max_threads == 1)) ||
        fail "$mode: $max_threads OS threads under coop, expected 1: $(grep 'coop: stats: hubs' "$TMP/$mode.coop.err")"
    note "$mode: '$out' natively and under coop; $(grep -o 'preemptions [0-9]* ([^)]*)' "$TMP/$mode.coop.err")"
    # The hubs the suite runs with (COOP_HUBS, or one per CPU): the same output.
    run_mode $mode hubs "$COOPRUN" --
    [ "$out" = "$native" ] || fail "$mode: coop on ${COOP_HUBS:-the default} hubs printed '$out', natively '$native'"
done
grep -qx 'compute: every sleeper woke while one thread computed' "$TMP/compute.coop" ||
    fail "compute: $(cat "$TMP/compute.coop")"
grep -qx 'altstack: the spin ended by a SIGURG held pending for this thread' "$TMP/altstack.coop.err" ||
    fail "altstack: on one hub the spin ended otherwise: $(grep '^altstack' "$TMP/altstack.coop.err")"
for mode in unwindless unwindless-fd unwindless-end; do
    grep -q 'has kept hub 0 for [0-9]* ms while others wait for it, and cannot be preempted: its stack cannot be unwound' \
        "$TMP/$mode.coop.err" || fail "$mode: no warning on one hub: $(head -5 "$TMP/$mode.coop.err")"
    # With handoff on: the hub's work goes to a spare thread, where the writer runs, unwarned.
    COOP_HUBS=1 COOP_STATS=1 run_mode $mode handoff "$COOPRUN" --
    [ "$out" = "$(cat "$TMP/$mode.native")" ] || fail "$mode with handoff: coop printed '$out'"
    grep -q 'handoffs [1-9]' "$TMP/$mode.handoff.err" && ! grep -q 'and cannot be preempted:' "$TMP/$mode.handoff.err" ||
        fail "$mode: no handoff on one hub: $(grep -m2 'handoffs\|cannot be preempted' "$TMP/$mode.handoff.err")"
done
note "unwindless: on one hub, a warning without handoff; a spare thread takes the hub's work with it"

# The sleepers' lateness, for information: each sleeper's worst, summarized.
summarize_lateness() {
    sed -n 's/^lateness: sleeper .* worst \([0-9.]*\) ms late$/\1/p' "$1" | sort -n |
        awk '{ v[NR] = $1 } END { printf "worst lateness of 100 sleepers: median %.1f ms, max %.1f ms", v[int((NR + 1) / 2)], v[NR] }'
}
note "native: $(summarize_lateness "$TMP/compute.native.err")"
note "coop:   $(summarize_lateness "$TMP/compute.coop.err")"

# Two computing threads on one hub: coop's slices alone decide their shares (on more hubs, or
# natively, the kernel's scheduler does, which a loaded machine may skew past the bound).
COOP_HUBS=1 COOP_HANDOFF_MS=0 run_mode share coop "$COOPRUN" --
[ "$out" = "share: two computing threads got alike shares" ] || fail "share on one hub: $out ($(grep '^share: counts' "$TMP/share.coop.err"))"
note "share: $(grep '^share: counts' "$TMP/share.coop.err") on one hub"

# A preemption asked for while a thread computes in libc under a mutex (where it cannot be
# taken) waits for an interposed call, but never for the unlock: the code right after an
# unlock finishes what the lock guarded (Guile's VM publishes its stack's new pointer there;
# its collector, run by the next thread, zeroed live memory). A slice of 1 ms, so that each
# round of the holder's work outlasts it.
COOP_HUBS=1 COOP_HANDOFF_MS=0 COOP_PREEMPT_MS=1 COOP_STATS=1 run_mode unlock short-slice "$COOPRUN" --
line=$(grep '^unlock: the other thread ran' "$TMP/unlock.short-slice.err")
[[ $line =~ ran\ ([0-9]+)\ times.*,\ ([0-9]+)\ of\ them ]] || fail "unlock: no count: $(head -3 "$TMP/unlock.short-slice.err")"
((BASH_REMATCH[1] > 0 && BASH_REMATCH[2] == 0)) || fail "unlock on one hub: $line"
# The path under test: preemptions refused in memset and taken at a later call.
grep -q 'at a later call [1-9]' "$TMP/unlock.short-slice.err" ||
    fail "unlock: no preemption waited for a call: $(grep -o 'preemptions [0-9]* ([^)]*)' "$TMP/unlock.short-slice.err")"
note "unlock: $line; $(grep -o 'preemptions [0-9]* ([^)]*)' "$TMP/unlock.short-slice.err")"

# A slice longer than the test: a spinner leaves only because the sleeper's deadline passed
# (the monitor then asks after 1 ms, as the kernel lets a thread whose sleep ended preempt),
# and the sleeper runs next, before the other spinner (Go's runnext; sched.c).
COOP_HUBS=1 COOP_HANDOFF_MS=0 COOP_PREEMPT_MS=600000 run_mode wake long-slice "$COOPRUN" --
[ "$out" = "$native_wake" ] || fail "wake with a 600 s slice: coop printed '$out', natively '$native_wake'"
note "wake: with a 600 s slice, the sleeper's passed deadlines preempted a spinner and it ran next"

# Without preemption the spinner keeps the only OS thread, so the setter never runs.
COOP_HUBS=1 COOP_HANDOFF_MS=0 COOP_PREEMPT_MS=0 timeout 3 "$COOPRUN" -- "$SAMPLES/preempt" spin >"$TMP/off" 2>&1
status=$?
[ $status -eq 124 ] || fail "--preempt 0: the spin ended (status $status): $(cat "$TMP/off")"
note "--preempt 0: the spin cannot end; killed after 3 s, as expected"
echo "PASS: spin, trylock, pthread_equal and SIGURG-handler loops, 100 compute-then-exec generations, a 5 s computation beside 100 sleepers and a spin on a JIT's stack, natively and under coop, one OS thread"
