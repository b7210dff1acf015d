#!/usr/bin/env bash
# A person's view of --trace and --profile: Debian's chromium, headless, opens speedscope's
# page (npm package speedscope, installed into build/web by make test) with a timeline of
# tests/samples/trace_server and a profile of a computing thread; speedscope_shot.py checks
# that each rendered (a screenshot that is not blank) without a complaint of the page's.
source "$(dirname "$0")/lib.sh"
INDEX=$ROOT/build/web/node_modules/speedscope/dist/release/index.html
[ -f "$COOP_LIBRARY" ] || skip "no library: $COOP_LIBRARY"
command -v chromium >/dev/null || skip "no chromium (Debian package chromium; make test installs it)"
[ -f "$INDEX" ] || skip "no speedscope in $ROOT/build/web (make test installs it from npm)"
chromium --headless --no-sandbox --disable-gpu --user-data-dir="$TMP/probe" --dump-dom about:blank \
    >/dev/null 2>"$TMP/probe.err" || skip "chromium cannot run here: $(grep -v dbus "$TMP/probe.err" | tail -n 1)"

"$COOPRUN" --trace "$TMP/server.json" -- "$SAMPLES/trace_server" >"$TMP/server.out" 2>"$TMP/server.err" &
server=$!
port=$(listening_port "$TMP/server.out" "$server") || exit 1
python3 - "$port" <<'PY' || fail "the client failed"
import socket, sys
f = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30).makefile("rw")
for line in ["one", "two", "quit"]:
    f.write(line + "\n"); f.flush(); f.readline()
PY
wait "$server" || fail "trace_server: status $?"
"$COOPRUN" --profile "$TMP/spin.folded" -- "$SAMPLES/diag" spin >/dev/null 2>&1 || fail "diag spin under --profile"

for file in server.json spin.folded; do
    python3 "$ROOT/tests/integration/speedscope_shot.py" "$INDEX" "$TMP/$file" "$TMP/$file.png" ||
        fail "speedscope on $file"
done
note "speedscope rendered the timeline and the profile, and said nothing against them"
