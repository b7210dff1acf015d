#!/usr/bin/env bash
# tests/trace_pictures.sh: makes the pictures of docs/trace.md. echo_threads (a thread per
# connection, built without coop) runs under cooprun --trace and --profile while
# build/bench/loadgen drives 4 connections for 2 s; speedscope's page, in headless chromium
# (tests/integration/speedscope_shot.py, which also checks what it rendered), draws them.
# Needs make, make test's speedscope (build/web) and chromium. Writes docs/trace/.
source "$(dirname "$0")/integration/lib.sh"
cd "$ROOT"
make --no-print-directory -s build
out=docs/trace
mkdir -p "$out"
tmp=$TMP
scripts/cooprun --trace "$tmp/echo.json" --profile "$tmp/echo.folded" --profile-hz 499 -- \
    build/samples/echo_threads -p 0 >"$tmp/server.out" &
server=$!
port=$(listening_port "$tmp/server.out" "$server") || exit 1
build/bench/loadgen -p "$port" -c 4 -s 64 -d 2 -w 0.2 >"$tmp/loadgen.out"
kill -TERM "$server"
wait "$server" || true
index=build/web/node_modules/speedscope/dist/release/index.html
# The first track of the timeline (the main thread, accepting) and the profile's flame graph.
python3 tests/integration/speedscope_shot.py "$index" "$tmp/echo.json" "$out/timeline.png" 1200 500
python3 tests/integration/speedscope_shot.py "$index" "$tmp/echo.folded" "$out/flamegraph.png" 1200 600 left-heavy
cp "$tmp/echo.folded" "$out/echo_threads.folded"
head -c 4000 "$tmp/echo.json" >"$out/echo_threads.json.head"
cat "$tmp/loadgen.out"
ls -l "$tmp" "$out"
