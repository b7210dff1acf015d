#!/usr/bin/env bash
# Debian's Mono 6.8 (sgen, its default hybrid suspend) running mono_world_stop.cs: two threads
# compute in loops without calls while a producer and a consumer pass items through a
# monitor, tasks allocate, and main collects 20 times. The output must be the same natively,
# under cooprun on the default hubs and on one hub.
#
# Mono gives each of its threads a signal stack, so coop preempts none of them (core/
# preempt.c): the computing ones hold their hubs' threads, and the monitor hands the hubs'
# other work to spare threads. Under coop this hung on one hub and on two: the collector
# stops thread pool workers that wait, with signals, and the interrupts that end their
# waits for the handlers are taken by a hub at its next iteration, which no hub reached,
# each computing; a hub held so was not handed off, since that work was any hub's, not its
# own. The monitor now counts such work, left untaken, as waiting for a held hub, and hands
# such hubs off one at a time (core/monitor.c).
# shellcheck source=tests/realworld/lib.sh
source "$(dirname "$0")/lib.sh"
need mono mono-runtime
need mcs mono-mcs
need_library

LIMIT_S=60
# Runtime threads allowed under coop: none (Mono's threads, its finalizer, the collector's
# worker and the thread pool's are all greenlets).
ALLOWED_RUNTIME=0
mcs -nologo -out:"$TMP/mono_world_stop.exe" "$REALWORLD/mono_world_stop.cs" >"$TMP/mcs.log" 2>&1 ||
    fail "mcs: $(head -n 5 "$TMP/mcs.log")"
expected="consumed 100000 items, allocated 18160000 ints in 8 tasks, 20 collections asked"

# run LABEL [PREFIX...]: runs the program; sets max_threads.
run() {
    local label=$1 out
    shift
    run_watched "$label" "$@" mono "$TMP/mono_world_stop.exe"
    out=$(cat "$TMP/out.$label")
    [ "$out" = "$expected" ] || fail "$label: mono printed '$out'"
    check_threads "$label" "$max_threads"
    note "$label: the expected line, at most $max_threads OS threads ($samples samples)"
}

run native
native_threads=$max_threads
COOP_STATS=1 run coop "$COOPRUN" --
coop_threads=$max_threads
created=$(coop_stat created "$TMP/err.coop")
note "$(grep '^coop: stats: ' "$TMP/err.coop" | head -n 2 | tr '\n' ' ')"
COOP_HUBS=1 run one-hub "$COOPRUN" --

matrix "mono running mono_world_stop.cs (Mono 6.8: sgen's stop of the world beside computing threads, each with a signal stack)" \
    "$(pkg_version mono-runtime)" "$native_threads" "$coop_threads ($created greenlets)" pass
echo "PASS: Mono's collector stops the world beside computing threads natively, on the default hubs and on one hub under coop"
