#!/usr/bin/env bash
# Family file: a 100 MiB file copied through open, read, write, fsync and read back with
# pread gives the same checksum natively, under coop, and under coop with COOP_FILE_OFFLOAD=1
# (every call on the threadpool, while a ticker thread keeps running). Then the cost of one
# small read of a cached file, direct and offloaded, is measured and printed: the figures
# behind COOP_FILE_OFFLOAD's default (off).
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/filecopy" ] || fail "$SAMPLES/filecopy is not built (make)"
[ -f "$COOP_LIBRARY" ] || skip "$COOP_LIBRARY not built"
export COOP_THREADPOOL_SIZE=${COOP_THREADPOOL_SIZE:-10}
RUNTIME_THREADS=${COOP_RUNTIME_THREADS:-$COOP_THREADPOOL_SIZE}
SIZE_MIB=100

head -c $((SIZE_MIB << 20)) /dev/urandom >"$TMP/src" || fail "cannot write a $SIZE_MIB MiB file in $TMP"
want=$(sha256sum <"$TMP/src" | cut -d' ' -f1)

# copy LABEL COMMAND-PREFIX...: copies src to dst under the prefix and checks the checksum.
copy() {
    local label=$1 pid n got
    shift
    rm -f "$TMP/dst"
    "$@" "$SAMPLES/filecopy" copy "$TMP/src" "$TMP/dst" >"$TMP/out" 2>"$TMP/err" &
    pid=$!
    max_threads=0
    while kill -0 $pid 2>/dev/null; do
        n=$(os_threads $pid 2>/dev/null)
        ((n > max_threads)) && max_threads=$n
        sleep 0.02
    done
    wait $pid || fail "$label: status $?: $(cat "$TMP/out" "$TMP/err")"
    got=$(sha256sum <"$TMP/dst" | cut -d' ' -f1)
    [ "$got" = "$want" ] || fail "$label: the copy's checksum differs"
    grep -q "^copied $((SIZE_MIB << 20)) bytes; $((SIZE_MIB << 20)) bytes read back identical; fortified calls ok" "$TMP/out" ||
        fail "$label: $(cat "$TMP/out")"
    note "$label: checksum equal; $(cat "$TMP/err"); $max_threads OS threads"
}

copy native
copy "coop, offload off" "$COOPRUN" --
# The copy's writes block their hub now and then: spares take its other work meanwhile.
((max_threads <= 1 + SCHED_THREADS + SPARE_THREADS)) ||
    fail "coop, offload off: $max_threads OS threads, expected 1 (+ $SCHED_THREADS scheduler and $SPARE_THREADS spare threads)"
COOP_FILE_OFFLOAD=1 copy "coop, offload on" "$COOPRUN" --
((max_threads <= 1 + SCHED_THREADS + SPARE_THREADS + RUNTIME_THREADS)) ||
    fail "coop, offload on: $max_threads OS threads, expected 1 (+ $SCHED_THREADS scheduler, $SPARE_THREADS spare and $RUNTIME_THREADS runtime threads)"
# One tick proves the ticker ran while the copy's calls were on the pool (every one of them
# parks the copy; a rate would measure the machine's load).
ticks=$(sed -n 's/^ticker: \([0-9]*\) ticks.*/\1/p' "$TMP/err")
((ticks >= 1)) || fail "coop, offload on: the ticker stood still during the copy ($ticks ticks)"

# The measurement: 64-byte reads of a cached 1 MiB file.
head -c 1M "$TMP/src" >"$TMP/small"
"$SAMPLES/filecopy" bench "$TMP/small" 100000 64 >"$TMP/bench.native" 2>/dev/null || fail "bench native"
"$COOPRUN" -- "$SAMPLES/filecopy" bench "$TMP/small" 100000 64 >"$TMP/bench.direct" 2>/dev/null ||
    fail "bench coop"
COOP_FILE_OFFLOAD=1 "$COOPRUN" -- "$SAMPLES/filecopy" bench "$TMP/small" 20000 64 >"$TMP/bench.offload" 2>/dev/null ||
    fail "bench coop offload"
for f in native direct offload; do note "small cached reads, $f: $(tr '\n' ';' <"$TMP/bench.$f")"; done
echo "PASS: a $SIZE_MIB MiB copy keeps its checksum natively and under coop, with and without file offload"
