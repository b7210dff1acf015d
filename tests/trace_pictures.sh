#!/usr/bin/env bash
# tests/trace_pictures.sh: makes the pictures of docs/trace.md, with speedscope's page in
# headless chromium (tests/integration/speedscope_shot.py, which also checks what rendered).
# The timeline: tests/samples/trace_server under cooprun --trace, answering a few lines (its
# "acceptor" waits for the mutex "holder" keeps). The flame graph: echo_threads (a thread per
# connection) under cooprun --profile while build/bench/loadgen drives 50 connections for 3 s.
# Both programs are built without coop. Needs make test's speedscope (build/web) and
# chromium. Writes docs/trace/.
set -eu
source "$(dirname "$0")/integration/lib.sh"
cd "$ROOT"
make --no-print-directory -s build
out=docs/trace
mkdir -p "$out"
tmp=$TMP
index=build/web/node_modules/speedscope/dist/release/index.html
scripts/cooprun --trace "$tmp/trace_server.json" -- build/samples/trace_server >"$tmp/server.out" &
server=$!
port=$(listening_port "$tmp/server.out" "$server") || exit 1
python3 - "$port" <<'PY'
import socket, sys, time
f = socket.create_connection(("127.0.0.1", int(sys.argv[1]))).makefile("rw")
for line in ["one", "two", "three", "quit"]:
    f.write(line + "\n"); f.flush(); f.readline()
    time.sleep(0.1)
PY
wait "$server"
# Tracks in speedscope's order: main, hub, holder, sleeper, acceptor.
python3 tests/integration/speedscope_shot.py "$index" "$tmp/trace_server.json" "$out/timeline.png" --size 1200x400 --track 4
cp "$tmp/trace_server.json" "$out/trace_server.json"

scripts/cooprun --profile "$tmp/echo.folded" --profile-hz 250 -- build/samples/echo_threads -p 0 >"$tmp/echo.out" &
server=$!
port=$(listening_port "$tmp/echo.out" "$server") || exit 1
build/bench/loadgen -p "$port" -c 50 -s 64 -d 3 -w 0.2 >"$tmp/loadgen.out"
sleep 1.5       # the profile is rewritten every second, and echo_threads leaves by _exit
kill -TERM "$server"
wait "$server" || true
python3 tests/integration/speedscope_shot.py "$index" "$tmp/echo.folded" "$out/flamegraph.png" --size 1200x500 --view left-heavy
cp "$tmp/echo.folded" "$out/echo_threads.folded"
cat "$tmp/loadgen.out"
