#!/usr/bin/env bash
# Family proc, natively and under coop, with the same output both times:
# - 50 threads each run a child through system(), then popen + pclose, then posix_spawnp +
#   waitpid; each child's shell waits until all 50 have started (a rendezvous on a FIFO, see
#   spawner.c), so the run can end only if the children overlap; under coop the program has
#   its hubs' OS threads (lib.sh; posix_spawn's pool threads are counted separately);
# - every wait call: statuses, WNOHANG, ECHILD, EINTR and SA_RESTART;
# - vfork: a lone thread's vfork child changes its own fds and handlers, the parent's stay;
# - a thread forks while others serve TCP connections: the child's threads, sockets, pipes
#   and sleeps work, the parent keeps serving, and waitpid collects status 42; the forking
#   thread ends first, and a grandchild's raise(SIGTERM) kills it;
# - a thread that execs hands the new program its signal mask, its pending signals (its own
#   and the process's), its CPU affinity and its scheduling policy, by every exec function,
#   from main and from another thread, and keeps them all when an exec fails, with 300
#   signals queued at it by three threads meanwhile, each taken once; the children of
#   system(), popen(), posix_spawn and fork get its affinity and policy, a forked child its
#   mask too (exec_inherit.c);
# - exec'd programs inherit coop, unless cooprun --no-inherit.
source "$(dirname "$0")/lib.sh"
for program in spawner forker exec_inherit; do
    [ -x "$SAMPLES/$program" ] || fail "$SAMPLES/$program is not built (make)"
done
[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built"

THREADS=50
RUN_LIMIT_S=120      # a hang guard: a run that stops overlapping its children never ends
# posix_spawn runs on the threadpool: its threads are runtime threads.
export COOP_THREADPOOL_SIZE=${COOP_THREADPOOL_SIZE:-10}
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-$COOP_THREADPOOL_SIZE}

# run LABEL OUTFILE COMMAND...: sets status and max_threads (sampled: an upper bound under
# coop); fails on a non-zero status.
run() {
    local label=$1 outfile=$2
    shift 2
    run_sampled $RUN_LIMIT_S "$outfile" "$@"
    [ $status -eq 0 ] || fail "$label: exit status $status: $(head -5 "$outfile.err")"
}

for mode in system popen spawn; do
    run "native $mode" "$TMP/native.$mode" "$SAMPLES/spawner" $mode $THREADS
    run "coop $mode" "$TMP/coop.$mode" "$COOPRUN" -- "$SAMPLES/spawner" $mode $THREADS
    note "coop $mode: $(head -1 "$TMP/coop.$mode"), at most $max_threads OS threads"
    diff -u "$TMP/native.$mode" "$TMP/coop.$mode" >&2 || fail "$mode: coop's output differs from the native one"
    ((max_threads <= 1 + SCHED_THREADS + SPARE_THREADS + RUNTIME_THREADS)) ||
        fail "coop $mode: $max_threads OS threads, expected 1 (+ $SCHED_THREADS scheduler, $SPARE_THREADS spare and $RUNTIME_THREADS runtime threads)"
done

for mode in waits vfork; do
    run "native $mode" "$TMP/native.$mode" "$SAMPLES/spawner" $mode 1
    run "coop $mode" "$TMP/coop.$mode" "$COOPRUN" -- "$SAMPLES/spawner" $mode 1
    diff -u "$TMP/native.$mode" "$TMP/coop.$mode" >&2 || fail "$mode: coop's output differs from the native one"
    note "$mode: $(head -1 "$TMP/coop.$mode")"
done

run "native fork" "$TMP/native.fork" "$SAMPLES/forker"
run "coop fork" "$TMP/coop.fork" "$COOPRUN" -- "$SAMPLES/forker"
for f in native coop; do grep -v '^listening on' "$TMP/$f.fork" >"$TMP/$f.fork.cmp"; done
diff -u "$TMP/native.fork.cmp" "$TMP/coop.fork.cmp" >&2 || fail "fork: coop's output differs from the native one"
grep -q 'exited with status 42' "$TMP/coop.fork" || fail "fork: no status 42"
note "fork: $(tr '\n' ';' <"$TMP/coop.fork.cmp") ($(cat "$TMP/coop.fork.err"))"

for form in execve execv execvp execvpe execl execle execlp fexecve execveat main-execl main-execveat \
    system popen spawn fork stress; do
    run "native $form" "$TMP/native.$form" "$SAMPLES/exec_inherit" $form
    run "coop $form" "$TMP/coop.$form" "$COOPRUN" -- "$SAMPLES/exec_inherit" $form
    diff -u "$TMP/native.$form" "$TMP/coop.$form" >&2 || fail "$form: coop's output differs from the native one"
done
note "exec_inherit: $(grep -m1 '^inherited' "$TMP/coop.execl") (execl from a thread)"

# exec: LD_PRELOAD passes coop on; --no-inherit takes it out for the programs the program
# runs, leaving the other entries.
maps='grep -c libcoop.so /proc/self/maps'
inherited=$("$COOPRUN" -- /bin/sh -c "$maps")
[ "$inherited" -ge 1 ] || fail "exec: the exec'd program has no libcoop.so mapped"
not_inherited=$("$COOPRUN" --no-inherit -- /bin/sh -c "$maps")
[ "$not_inherited" = 0 ] || fail "exec with --no-inherit: libcoop.so is still mapped"
self_mapped=$("$COOPRUN" --no-inherit -- /bin/sh -c 'grep -c libcoop.so /proc/$$/maps')
[ "$self_mapped" -ge 1 ] || fail "--no-inherit: the program itself runs without coop"
other=$(LD_PRELOAD=libm.so.6 "$COOPRUN" --no-inherit -- /bin/sh -c 'echo "$LD_PRELOAD"')
# (ASan's runtime, which a sanitizer build of coop needs behind it, stays.)
[ "$other" = "${ASAN_RUNTIME:+$ASAN_RUNTIME:}libm.so.6" ] ||
    fail "--no-inherit: LD_PRELOAD became '$other', expected libm.so.6"
note "exec: coop inherited by default, not with --no-inherit (other LD_PRELOAD entries kept)"

echo "PASS: system, popen and posix_spawn from $THREADS threads at once, every wait call, vfork, fork among serving threads, what exec and children inherit, and exec, natively and under coop"
