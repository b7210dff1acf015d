#!/usr/bin/env bash
# CPU-bound thread pools: pigz -p 4, xz -T4, zstd -T4 and sort --parallel=4 (Debian's pigz,
# xz-utils, zstd, coreutils) each read 12 MB from a pipe and write to a pipe, natively and under
# cooprun. The output must be byte for byte the same both times (each tool's output does not
# depend on which thread finishes first; pigz -n leaves the time out of the gzip header), and
# the compressed data must decompress to the input.
# Natively each tool runs 3 to 6 OS threads; under coop the hubs' threads (one per CPU) and
# the monitor, since none of them needs coop's threadpool: the work runs on every CPU. Only
# correctness is checked here; the wall and CPU times are printed (timing is make bench's).
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need pigz pigz
need xz xz-utils
need zstd zstd
need /usr/bin/time time
need_library

RUN_LIMIT_S=40
# Runtime threads allowed under coop: none. These programs look up no names, wait for no
# children and coop does not offload their file reads (COOP_FILE_OFFLOAD is off).
ALLOWED_RUNTIME=0

# 12 MB: numbers (compress well, sort with many equal prefixes) then base64 of random bytes.
{ seq 1 1000000; head -c 4500000 /dev/urandom | base64; } | head -c 12000000 >"$TMP/input"
input_sum=$(sha256sum <"$TMP/input" | cut -d' ' -f1)
mkfifo "$TMP/in" "$TMP/out"

# run MODE NAME COMMAND...: COMMAND reads $TMP/in and writes $TMP/out, two pipes fed and drained
# by cat; sets sum (of the output), max_threads, times (wall and user+sys seconds).
run() {
    local mode=$1 name=$2 pid rc
    shift 2
    /usr/bin/time -f "%e %U %S" -o "$TMP/$name.$mode.time" "$@" <"$TMP/in" >"$TMP/out" 2>"$TMP/$name.$mode.err" &
    pid=$!
    cat "$TMP/input" >"$TMP/in" &
    cat "$TMP/out" >"$TMP/$name.$mode.out" &
    start_tree_sampler $pid     # time(1) runs the program as its child
    watchdog $pid $RUN_LIMIT_S
    wait $pid
    rc=$?
    stop_watchdog
    stop_sampler
    wait
    ((rc == 0)) || fail "$mode: $name exited with status $rc: $(head -n 5 "$TMP/$name.$mode.err")"
    sum=$(sha256sum <"$TMP/$name.$mode.out" | cut -d' ' -f1)
    times=$(awk '{ printf "%.2f s wall, %.2f s CPU", $1, $2 + $3 }' "$TMP/$name.$mode.time")
}

# check NAME DECOMPRESS COMMAND...: natively, then under coop.
results=() coop_results=()
check() {
    local name=$1 decompress=$2 native_sum native_threads
    shift 2
    run native "$name" "$@"
    native_sum=$sum native_threads=$max_threads native_times=$times
    check_threads native "$native_threads"
    run coop "$name" "$COOPRUN" -- "$@"
    note "$name: native $native_threads OS threads, coop $max_threads ($samples samples); output $(stat -c %s "$TMP/$name.coop.out") bytes"
    note "$name: native $native_times; coop $times"
    [ "$sum" = "$native_sum" ] || fail "$name: the output under coop differs from the native one"
    check_threads coop "$max_threads"
    if [ "$decompress" = sorted ]; then
        LC_ALL=C sort -C "$TMP/$name.coop.out" || fail "$name: the output under coop is not sorted"
    else
        [ "$($decompress <"$TMP/$name.coop.out" | sha256sum | cut -d' ' -f1)" = "$input_sum" ] ||
            fail "$name: the output under coop does not decompress to the input"
    fi
    results+=("${name%% *} $native_threads")
    coop_results+=("${name%% *} $max_threads")
}

check "pigz -p 4" "gzip -dc" pigz -p 4 -b 128 -n -c
check "xz -T4" "xz -dc" xz -T4 -1 -c
check "zstd -T4" "zstd -dc" zstd -T4 -3 -B1M -c
LC_ALL=C check "sort --parallel=4" sorted sort --parallel=4 -S 50M

matrix "pigz -p 4; xz -T4; zstd -T4; sort --parallel=4" \
    "$(pkg_version pigz); $(pkg_version xz-utils); $(pkg_version zstd); $(pkg_version coreutils)" \
    "$(printf '%s; ' "${results[@]}" | sed 's/; $//')" "$(printf '%s; ' "${coop_results[@]}" | sed 's/; $//') (the hubs)" pass
echo "PASS: the same output natively and under coop, on coop's hubs"
