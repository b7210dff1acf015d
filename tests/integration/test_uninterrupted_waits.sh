#!/usr/bin/env bash
# No EINTR the program would not get natively (tests/samples/uninterrupted_waits): poll,
# select and epoll_wait on a pipe nobody writes, with short timeouts and then in loops with a
# zero timeout, beside threads that compute, with no signal sent, end with 0 every time,
# natively and under coop with a 1 ms time slice on one hub, where the monitor preempts
# often. Its signal can land in the zero-timeout call coop makes first in a wait, or in the
# program's own; neither is restarted after a handler, and coop must make it again. A wait
# lasts 0.1 to 1 ms and the window is the call's own few microseconds: that half bites on a
# busy machine (beside CPU hogs: 1 to 5 EINTRs in 3,000 waits without the retry); the loops
# are preempted about every millisecond (40 to 60 EINTRs in 90,000 calls without it).
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/uninterrupted_waits" ] || fail "$SAMPLES/uninterrupted_waits is not built (make)"

for mode in native coop; do
    prefix=()
    [ $mode = coop ] && prefix=(env COOP_HUBS=1 COOP_PREEMPT_MS=1 "$COOPRUN" --)
    timeout 120 "${prefix[@]}" "$SAMPLES/uninterrupted_waits" 1000 >"$TMP/$mode" 2>"$TMP/$mode.err" # a hang guard
    status=$?
    [ $status -eq 0 ] || fail "$mode: status $status ($(cat "$TMP/$mode") $(head -c 400 "$TMP/$mode.err"))"
    note "ok: $mode: $(cat "$TMP/$mode")"
done
