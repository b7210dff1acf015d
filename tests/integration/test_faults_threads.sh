#!/usr/bin/env bash
# Thread creation when stacks or mappings run out (tests/samples/thread_limits), natively and
# under coop, with the same output both times. The sample creates threads until
# pthread_create fails, checks that it fails with EAGAIN (again on a second try) and that
# every thread it made runs, then joins them all and creates one more:
# - 1 GiB stacks (pthread_attr_setstacksize) in 4 GiB of address space (ulimit -v): a few
#   threads, then EAGAIN; meanwhile it forks and waits for a child, and resolves localhost;
# - default stacks in 1 GiB of address space: many threads, then EAGAIN; meanwhile it forks
#   and waits for a child;
# - the same, and meanwhile it resolves localhost (getaddrinfo, from /etc/hosts) in 1 MiB it
#   kept back until then (no thread can start for the lookup);
# - 1000 threads of 1 GiB stacks with no limit: all are created.
# Nothing may crash, and each run exits 0.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/thread_limits" ] || fail "$SAMPLES/thread_limits is not built (make)"
ulimit -c 0

# Each case: "ULIMIT_V_KIB ARGS..."
CASES=(
    "4194304 -s 1024 -w -d"
    "1048576 -w"
    "1048576 -d"
    "unlimited -s 1024 -m 1000"
)
# ASan reserves terabytes of shadow memory at start-up: no limit on address space leaves it
# room, so a sanitizer build (make test-asan) runs the case without one.
[ -z "$ASAN_RUNTIME" ] || CASES=("${CASES[3]}")

# run_case MODE INDEX [PREFIX...]: the output goes to $TMP/MODE.INDEX; sets status.
run_case() {
    local mode=$1 index=$2 limit args
    shift 2
    read -r limit args <<<"${CASES[$index]}"
    # shellcheck disable=SC2086 # args are words
    { (ulimit -v "$limit" && exec timeout -k 5 50 "$@" "$SAMPLES/thread_limits" $args) \
        >"$TMP/$mode.$index" 2>"$TMP/$mode.$index.err"; } 2>>"$TMP/$mode.$index.err"
    status=$?
    sed "s/^/  $mode: ulimit -v $limit, thread_limits $args: /" "$TMP/$mode.$index.err"
}

failed=""
for index in "${!CASES[@]}"; do
    run_case native "$index"
    [ $status -eq 0 ] || fail "native: case '${CASES[$index]}': status $status: $(cat "$TMP/native.$index")"
done
[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built yet: only the native half ran (and passed)"
for index in "${!CASES[@]}"; do
    run_case coop "$index" "$COOPRUN" --
    what="ulimit -v ${CASES[$index]%% *}, thread_limits ${CASES[$index]#* }"
    if [ $status -ne 0 ]; then
        note "coop: $what: status $status (natively 0); output:"
        sed 's/^/      /' "$TMP/coop.$index"
        failed="$failed; $what: status $status"
    elif ! diff -u "$TMP/native.$index" "$TMP/coop.$index" >&2; then
        failed="$failed; $what: output differs"
    else
        note "ok: $what"
    fi
done
[ -z "$failed" ] || fail "under coop${failed}"
echo "PASS: pthread_create fails with EAGAIN when stacks run out, natively and under coop; nothing crashes, every thread is joined"
