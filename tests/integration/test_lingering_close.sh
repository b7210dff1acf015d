#!/usr/bin/env bash
# The last close of a socket with SO_LINGER waits until the peer has taken every byte
# (tests/samples/lingering_close.c): the peer's reader, another thread, starts reading only
# once the closer is about to close. Natively and under coop the same lines; under coop on
# one hub with handoff off, so only if the close went to the threadpool (shim/io.c) instead
# of holding the hub's thread until the linger time ran out. privoxy sets SO_LINGER on every
# connection it accepts.
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/lingering_close" ] || fail "$SAMPLES/lingering_close is not built (make)"
[ -f "$COOP_LIBRARY" ] || skip "no library: $COOP_LIBRARY"

# Half the pool may hold lingering closes: one thread of two (a pool of one keeps none).
export COOP_THREADPOOL_SIZE=2
same_without_handoff "$SAMPLES/lingering_close" "the lingering close"
echo "PASS: a lingering close leaves the peer's reader running, natively and under coop"
