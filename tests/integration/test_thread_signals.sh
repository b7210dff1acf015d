#!/usr/bin/env bash
# Signals per thread (tests/samples/thread_signals): workers that block every signal while
# main takes SIGTERM from another process; pthread_kill to each of 50 threads, each handler on
# its target; a blocked thread-directed signal pending for its thread only and delivered when
# it unblocks; a new thread's mask inherited, its pending set empty; sigwait taking only what
# was sent to its thread; ppoll's mask; a process signal every thread blocks staying pending;
# eight threads changing their masks at once (on every hub), then a process signal that only
# one of them accepts reaching that one; pthread_kill, 50 times each, to 100 threads as they
# exit (under coop maybe from another hub, as the signal state goes) running no handler in
# another thread; a signal handled before a call (sent while the thread ran, taken as it
# changed its mask) not interrupting the timed waits after it; a process signal pending
# as a thread's ppoll opens it, the fd ready, left pending for main's sigtimedwait; a thread-
# and a process-directed real-time signal each left where it was by such a ppoll; a sigwait
# for two signals leaving the other for the thread that unblocks it; siglongjmp out of a
# handler run in sigsuspend restoring the mask sigsetjmp saved, then pthread_exit; three faults
# and three SIGALRMs from the kernel each caught by a handler that jumps out; bursts of
# real-time signals queued to a thread or to the process past what may be queued (the default
# RLIMIT_SIGPENDING, or 64), each call 0 or EAGAIN and as many signals handled as accepted;
# siglongjmp out of a handler run in sigwait ending the wait (its set's signal then runs its
# handler, and no signalfd stays open); 100,000 real-time signals a thread queues to the
# process arriving in the order sent; a SIGCHLD from the kernel keeping its siginfo while real-time
# signals fill the queue; RLIMIT_SIGPENDING raised while the queue is full at the old limit
# letting one more in; a forked child with nothing pending, free to queue real-time signals,
# though its parent's threads had the queue full; a real-time signal from the kernel while the
# queue is full running its handler; the jump out of sigwait's handler from a sigwait run on
# an alternate signal stack above the thread's, and with setcontext; a thread canceled in
# sigwait, or exiting from a handler run in it, leaving no signalfd open; a handler run in
# sigwait, which goes on; a process signal that only a thread in a raw read accepts ending
# that read, 50 times; SIGINT sent by a SIGTERM handler whose mask blocks it running on that
# thread as the handler returns, its byte ending the restarted raw read, 50 times; SIGTERM
# from another process while workers that block nothing compute running its handler in main
# and ending main's poll, 20 times (the kernel's choice of the thread the pid names); SIGPIPE
# running its handler on the thread that wrote; a chain of 20,000 signals, each sent by the
# handler before to its own thread (a raw tgkill), none running nested in another's handler,
# the mask open again after them; handlers that unblock their signal first running nested;
# 5,000 signals from the kernel (a raw tgkill), each handled on main and followed by a switch
# to a thread that yields back;
# SIGURG that every thread blocks read from a signalfd, sent by the process itself and by
# another (PostgreSQL's latches), after 50 ms of computing that left the signalfd empty (coop
# sends no preemption signal then); that alone on one hub and on four. A handler that dies of
# its signal as Go's runtime does, with raw system calls, ending the process by that signal.
# A garbage collector's stop of the world beside threads that compute (world-stop), and beside threads
# that set up and take down signal stacks of their own (signal-stack-changes).
# The same lines natively and under coop, on every TLS mechanism.
# Then real-time signals the kernel accepted but coop's queue cannot hold (kernel-burst, on one
# hub so that they pile up): every one handled natively; under coop the rest lose their siginfo
# and run one handler while pending, with one warning. Under strace, the same burst reads
# RLIMIT_SIGPENDING a few times, not once per signal; and the chain of 20,000 signals alone
# (chain) and the 5,000 between switches (between-switches), on one hub and on two, make fewer
# than one call of rt_sigprocmask or sigaltstack per 100 signals while they run (one of each
# per signal before).
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/thread_signals" ] || fail "$SAMPLES/thread_signals is not built (make)"
HANG_GUARD_S=60

timeout -k 5 "$HANG_GUARD_S" "$SAMPLES/thread_signals" >"$TMP/native" || fail "native: status $?"
sed 's/^/  native: /' "$TMP/native"
[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"
for mechanism in "${TLS_MECHANISMS[@]}"; do
    COOP_TLS=$mechanism timeout -k 5 "$HANG_GUARD_S" "$COOPRUN" -- "$SAMPLES/thread_signals" >"$TMP/coop" ||
        fail "coop ($mechanism): status $?: $(cat "$TMP/coop")"
    diff -u "$TMP/native" "$TMP/coop" >&2 || fail "coop ($mechanism): the lines differ from the native ones"
done

# SIGURG alone on one hub and on four (more hubs than CPUs: some take the new mask only at
# their next switch, and one that takes the signal meanwhile must leave it to the signalfd).
timeout -k 5 "$HANG_GUARD_S" "$SAMPLES/thread_signals" sigurg >"$TMP/sigurg.native" || fail "native sigurg: status $?"
for hubs in 1 4; do
    COOP_HUBS=$hubs timeout -k 5 "$HANG_GUARD_S" "$COOPRUN" -- "$SAMPLES/thread_signals" sigurg >"$TMP/sigurg.coop" ||
        fail "coop sigurg, $hubs hubs: status $?: $(cat "$TMP/sigurg.coop")"
    diff -u "$TMP/sigurg.native" "$TMP/sigurg.coop" >&2 || fail "coop sigurg, $hubs hubs: the lines differ from the native ones"
done

# A garbage collector's stop of the world (world-stop): threads compute in loops without
# calls while main stops and restarts them 20 times with signals whose handlers wait in
# sigsuspend. As many threads as hubs, with signal stacks of their own (not preempted under
# coop) and without: main must get a CPU between their acknowledgements, and under coop a
# spare hub that took hub 0's work (main's) must be handed off in turn once its own greenlet
# computes (it hung there). Then handlers on the signal stack (SA_ONSTACK): one thread more
# than hubs with a stack of its own (a hub handed off waited for an adopter while the
# others computed: hung), and three more than hubs without, whose handlers run on the hub's
# kept stack under coop, where each waits while the next is stopped (the next one's frame
# overwrote the first's: SIGSEGV in most runs). Last, as Mono: three waiting threads
# stopped beside as many computing ones as hubs, started just before (on one hub, the
# interrupts that end the waits for the handlers waited for ever). On the hubs of this run
# and on three, five runs each.
for hubs in "$SCHED_THREADS" 3; do
    more=$((hubs + 3))
    timeout -k 5 "$HANG_GUARD_S" "$SAMPLES/thread_signals" world-stop "$hubs" "$more" >"$TMP/stop.native" ||
        fail "native world-stop $hubs $more: status $?"
    for run in 1 2 3 4 5; do
        COOP_HUBS=$hubs timeout -k 5 "$HANG_GUARD_S" "$COOPRUN" -- "$SAMPLES/thread_signals" world-stop "$hubs" "$more" \
            >"$TMP/stop.coop" 2>"$TMP/stop.err" ||
            fail "coop world-stop, $hubs hubs, run $run: status $?: $(cat "$TMP/stop.coop" "$TMP/stop.err")"
        diff -u "$TMP/stop.native" "$TMP/stop.coop" >&2 || fail "coop world-stop, $hubs hubs: the lines differ from the native ones"
    done
done

# Threads that set up a signal stack of their own and take it down again in a loop, stopped
# and restarted 300 times with handlers on the signal stack (signal-stack-changes), as many
# as the run's hubs: a stop that came between the kernel's change and coop's record of it
# ran on the new stack while coop took another for installed (SIGSEGV, rarely, in
# world-stop); with the two made together, a stop that came meanwhile landed in coop's code
# and ran nothing, again and again (hung, until the wrapper ran what was queued as it returns).
timeout -k 5 "$HANG_GUARD_S" "$SAMPLES/thread_signals" signal-stack-changes "$SCHED_THREADS" 300 >"$TMP/changes.native" ||
    fail "native signal-stack-changes: status $?"
COOP_HUBS=$SCHED_THREADS timeout -k 5 "$HANG_GUARD_S" "$COOPRUN" -- "$SAMPLES/thread_signals" signal-stack-changes \
    "$SCHED_THREADS" 300 >"$TMP/changes.coop" 2>"$TMP/changes.err" ||
    fail "coop signal-stack-changes: status $?: $(cat "$TMP/changes.coop" "$TMP/changes.err")"
diff -u "$TMP/changes.native" "$TMP/changes.coop" >&2 || fail "coop signal-stack-changes: the lines differ from the native ones"

# A storm of SIGUSR2 from another process while main raises SIGUSR1 in a loop, both handled
# on main's own signal stack with empty handler masks (storm): natively the handlers run at
# most two deep there. Under coop a signal that came as the kernel entered another handler
# unblocked that handler's own signal at its sigreturn, and the handlers nested deeper (3 of
# 8 runs of 50,000 raises on one hub) until the stack overflowed. Five runs on one hub and on
# the run's hubs.
timeout -k 5 "$HANG_GUARD_S" "$SAMPLES/thread_signals" storm 2000 >"$TMP/storm.native" || fail "native storm: status $?"
for hubs in 1 "$SCHED_THREADS"; do
    for run in 1 2 3 4 5; do
        COOP_HUBS=$hubs timeout -k 5 "$HANG_GUARD_S" "$COOPRUN" -- "$SAMPLES/thread_signals" storm 50000 >"$TMP/storm.coop" ||
            fail "coop storm, $hubs hubs, run $run: status $?: $(cat "$TMP/storm.coop")"
        diff -u "$TMP/storm.native" "$TMP/storm.coop" >&2 || fail "coop storm, $hubs hubs: the lines differ from the native ones"
    done
done

# A program that dies of SIGTERM as Go's runtime does (raw system calls: see die_as_go_does)
# ends by the signal, status 143, natively and under coop on one hub (the second SIGTERM
# pending in the kernel as the handler unblocks it) and on four.
timeout -k 5 "$HANG_GUARD_S" "$SAMPLES/thread_signals" die-as-go >/dev/null 2>&1
status=$?
((status == 128 + 15)) || fail "native die-as-go: status $status, expected 143 (SIGTERM)"
for hubs in 1 4; do
    COOP_HUBS=$hubs timeout -k 5 "$HANG_GUARD_S" "$COOPRUN" -- "$SAMPLES/thread_signals" die-as-go >/dev/null 2>"$TMP/die.err"
    status=$?
    ((status == 128 + 15)) || fail "coop die-as-go, $hubs hubs: status $status, expected 143 (SIGTERM): $(cat "$TMP/die.err")"
done

strace_runs() { command -v strace >/dev/null && strace -qq -o /dev/null true 2>/dev/null; }

# burst_counts FILE: sets accepted and handled from kernel-burst's line.
burst_counts() {
    read -r accepted handled < <(sed -n 's/^kernel-burst: accepted \([0-9]*\), handled \([0-9]*\)$/\1 \2/p' "$1")
    [ -n "$handled" ] || fail "kernel-burst printed no counts: $(cat "$1")"
}
timeout -k 5 "$HANG_GUARD_S" "$SAMPLES/thread_signals" kernel-burst >"$TMP/burst.native" || fail "native kernel-burst: status $?"
burst_counts "$TMP/burst.native"
((handled == accepted)) || fail "native kernel-burst: $(cat "$TMP/burst.native")"
COOP_HUBS=1 COOP_PREEMPT_MS=0 COOP_HANDOFF_MS=0 timeout -k 5 "$HANG_GUARD_S" "$COOPRUN" -- "$SAMPLES/thread_signals" \
    kernel-burst >"$TMP/burst.coop" 2>"$TMP/burst.err" || fail "coop kernel-burst: status $?: $(cat "$TMP/burst.err")"
burst_counts "$TMP/burst.coop"
((handled < accepted)) || fail "coop kernel-burst: expected some merged: $(cat "$TMP/burst.coop")"
warnings=$(grep -c "^coop: a real-time signal the kernel delivered lost its siginfo" "$TMP/burst.err")
((warnings == 1)) || fail "coop kernel-burst: $warnings warnings, expected 1: $(cat "$TMP/burst.err")"
# coop reads the limit again only when it would refuse a signal or holds none: here once as the
# burst starts (the queue full at the pool's size, no limit could let more in).
if strace_runs; then
    COOP_HUBS=1 COOP_PREEMPT_MS=0 COOP_HANDOFF_MS=0 timeout -k 5 "$HANG_GUARD_S" strace -f -qq -e signal=none \
        -e trace=prlimit64 -o "$TMP/strace" "$COOPRUN" -- "$SAMPLES/thread_signals" kernel-burst >/dev/null 2>&1 ||
        fail "coop kernel-burst under strace: status $?"
    reads=$(grep -c RLIMIT_SIGPENDING "$TMP/strace")
    ((reads <= 10)) || fail "coop kernel-burst: $reads reads of RLIMIT_SIGPENDING for $accepted signals, expected a few"
    note "kernel-burst under strace: $reads read(s) of RLIMIT_SIGPENDING"
else
    note "strace cannot run here: the reads of RLIMIT_SIGPENDING and the mask calls per signal are not counted"
fi
# A handler the kernel runs costs coop no system call of its own on a hub: the kernel's delivery
# blocks the handler's mask and its sigreturn sets the thread's mask again (coop writes it into
# the frame, and the hub's next switch need not set it), and the thread's alternate stack is
# the same unless the handler parked. One each per signal would let a timer every few
# microseconds take all of a thread's time where natively it leaves some. Two runs: the chain
# (20,000 signals on a lone main), and 5,000 signals each followed by a switch to a thread
# that yields back; fewer than one mask call per 100 signals, counted between the sample's
# marks (a getppid before the signals and one after). Without preemption and handoff: under
# strace every system call is slow, and the monitor would hand hubs off and preempt, which set
# masks of their own. With the fast switch: swapcontext sets a mask at every switch.
if strace_runs; then
    for run in chain:20000 between-switches:5000; do
        mode=${run%:*} signals=${run#*:}
        timeout -k 5 "$HANG_GUARD_S" "$SAMPLES/thread_signals" "$mode" >"$TMP/$mode.native" || fail "native $mode: status $?"
        for hubs in 1 2; do
            COOP_HUBS=$hubs COOP_PREEMPT_MS=0 COOP_HANDOFF_MS=0 COOP_SWITCH=fast timeout -k 5 "$HANG_GUARD_S" strace -f -qq -e signal=none \
                -e trace=rt_sigprocmask,sigaltstack,getppid -o "$TMP/strace.$mode" "$COOPRUN" -- \
                "$SAMPLES/thread_signals" "$mode" >"$TMP/$mode.coop" 2>"$TMP/$mode.err" ||
                fail "coop $mode under strace, $hubs hubs: status $?: $(cat "$TMP/$mode.err")"
            diff -u "$TMP/$mode.native" "$TMP/$mode.coop" >&2 || fail "coop $mode under strace, $hubs hubs: the lines differ"
            # The sample's two marks are the last getppid calls (cooprun's shell makes some
            # before). A call that strace interleaves with another thread's shows as two lines,
            # its start and "<... resumed>": one call.
            marks=$(grep -c 'getppid(' "$TMP/strace.$mode")
            ((marks >= 2)) || fail "coop $mode under strace, $hubs hubs: $marks marks, expected 2 at least"
            calls=$(awk '/getppid\(/ { before = seen; seen = n; next } /resumed>/ { next } { n++ } END { print seen - before }' \
                "$TMP/strace.$mode")
            ((calls < signals / 100)) ||
                fail "coop $mode, $hubs hubs: $calls calls of rt_sigprocmask and sigaltstack for $signals signals"
            note "$mode ($signals signals) under coop on $hubs hub(s): $calls calls of rt_sigprocmask and sigaltstack meanwhile"
        done
    done
fi
note "kernel-burst: natively $(sed 's/^kernel-burst: //' "$TMP/burst.native"); under coop $(sed 's/^kernel-burst: //' "$TMP/burst.coop"), one warning"
echo "PASS: signal masks, pending sets, delivery and full queues per thread, natively and under coop ($TLS_MECHANISM_LIST)"
