#!/usr/bin/env bash
# Family proc, natively and under coop, with the same output both times:
# - 50 threads each run system("sleep 0.2"), then the same with popen + pclose and with
#   posix_spawnp + waitpid: all finish in about 0.2 s, and under coop the program has one OS
#   thread (the threadpool's threads, which spawn the children, are counted separately);
# - every wait call: statuses, WNOHANG, ECHILD, EINTR and SA_RESTART;
# - a thread forks while others serve TCP connections: the child's threads, sockets, pipes
#   and sleeps work, the parent keeps serving, and waitpid collects status 42;
# - exec'd programs inherit coop, unless cooprun --no-inherit.
source "$(dirname "$0")/lib.sh"
for program in spawner forker; do
    [ -x "$SAMPLES/$program" ] || fail "$SAMPLES/$program is not built (make)"
done
[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built"

THREADS=50
MAX_ELAPSED_MS=1500  # 0.2 s of sleep plus the shells' start-up, on a noisy 2-core machine
SLOW_ELAPSED_MS=700  # past this it passes, with a note
# The threadpool spawns the children: its threads are runtime threads.
export COOP_THREADPOOL_SIZE=${COOP_THREADPOOL_SIZE:-10}
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-$COOP_THREADPOOL_SIZE}

# run LABEL OUTFILE COMMAND...: sets status, max_threads and elapsed (the elapsed_ms= line
# of its stderr); fails on a non-zero status.
run() {
    local label=$1 outfile=$2
    shift 2
    run_sampled 50 "$outfile" "$@"
    elapsed=$(sed -n 's/^elapsed_ms=//p' "$outfile.err")
    [ $status -eq 0 ] || fail "$label: exit status $status: $(grep -v elapsed_ms "$outfile.err" | head -5)"
}

for mode in system popen spawn; do
    run "native $mode" "$TMP/native.$mode" "$SAMPLES/spawner" $mode $THREADS
    note "native $mode: $(head -1 "$TMP/native.$mode") in $elapsed ms, $max_threads OS threads"
    run "coop $mode" "$TMP/coop.$mode" "$COOPRUN" -- "$SAMPLES/spawner" $mode $THREADS
    note "coop $mode: $(head -1 "$TMP/coop.$mode") in $elapsed ms, $max_threads OS threads"
    diff -u "$TMP/native.$mode" "$TMP/coop.$mode" >&2 || fail "$mode: coop's output differs from the native one"
    ((elapsed <= MAX_ELAPSED_MS)) || fail "coop $mode: $elapsed ms: the children did not overlap"
    ((elapsed <= SLOW_ELAPSED_MS)) || note "coop $mode: slow ($elapsed ms)"
    ((max_threads <= 1 + SCHED_THREADS + SPARE_THREADS + RUNTIME_THREADS)) ||
        fail "coop $mode: $max_threads OS threads, expected 1 (+ $SCHED_THREADS scheduler, $SPARE_THREADS spare and $RUNTIME_THREADS runtime threads)"
done

run "native waits" "$TMP/native.waits" "$SAMPLES/spawner" waits 1
run "coop waits" "$TMP/coop.waits" "$COOPRUN" -- "$SAMPLES/spawner" waits 1
diff -u "$TMP/native.waits" "$TMP/coop.waits" >&2 || fail "waits: coop's output differs from the native one"
note "waits: $(head -1 "$TMP/coop.waits")"

run "native fork" "$TMP/native.fork" "$SAMPLES/forker"
run "coop fork" "$TMP/coop.fork" "$COOPRUN" -- "$SAMPLES/forker"
for f in native coop; do grep -v '^listening on' "$TMP/$f.fork" >"$TMP/$f.fork.cmp"; done
diff -u "$TMP/native.fork.cmp" "$TMP/coop.fork.cmp" >&2 || fail "fork: coop's output differs from the native one"
grep -q 'exited with status 42' "$TMP/coop.fork" || fail "fork: no status 42"
note "fork: $(tr '\n' ';' <"$TMP/coop.fork.cmp") ($(cat "$TMP/coop.fork.err"))"

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

echo "PASS: system, popen and posix_spawn from $THREADS threads at once, every wait call, fork among serving threads and exec, natively and under coop"
