#!/usr/bin/env bash
# cooprun --trace and --profile on tests/samples/trace_server.c, a server built without coop
# with three named threads, a mutex hand-off and a sleep: the timeline is valid JSON with
# its tracks, names, the mutex wait with its address, the hand-off arrow and the sleep's
# length, after a normal exit, after SIGTERM (flushed) and under a size limit; the
# profile of a computing thread names it and its function (trace_check.py checks).
source "$(dirname "$0")/lib.sh"
[ -x "$SAMPLES/trace_server" ] || fail "$SAMPLES/trace_server is not built (make)"
[ -f "$COOP_LIBRARY" ] || skip "no library: $COOP_LIBRARY"
CHECK=$ROOT/tests/integration/trace_check.py

# start_traced [COOPRUN OPTION...] [-- ARG]: starts trace_server under cooprun; sets
# server, port, mutex.
start_traced() {
    : >"$TMP/server.out"     # emptied first: the previous server's port must not be read
    local options=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do options+=("$1"); shift; done
    [ $# -eq 0 ] || shift
    "$COOPRUN" "${options[@]}" -- "$SAMPLES/trace_server" "$@" >"$TMP/server.out" 2>"$TMP/server.err" &
    server=$!
    port=$(listening_port "$TMP/server.out" "$server") || exit 1
    mutex=$(sed -n 's/^mutex //p' "$TMP/server.out")
}

# send_lines COUNT [quit]: COUNT lines on one connection, each answered, then "quit" if asked.
send_lines() {
    python3 - "$port" "$@" <<'PY' || fail "the client failed"
import socket, sys
port, count, quit = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:] == ["quit"]
s = socket.create_connection(("127.0.0.1", port), timeout=30)
f = s.makefile("rw")
for i in range(count):
    f.write("line %d\n" % i); f.flush()
    assert f.readline() == "ok %d\n" % (i + 1)
if quit:
    f.write("quit\n"); f.flush()
    f.readline()
PY
}

wait_server() { # wait_server EXPECTED_STATUS LABEL
    local status
    wait "$server"
    status=$?
    [ "$status" -eq "$1" ] || fail "$2: status $status, expected $1: $(cat "$TMP/server.err")"
    [ ! -s "$TMP/server.err" ] || fail "$2: coop said: $(cat "$TMP/server.err")"
}

# A relative file name, and a server that moves to / first, as daemons do: the file is where
# the name pointed when the program started.
cd "$TMP" || fail "no $TMP"
start_traced --trace exit.json -- chdir
cd "$ROOT" || fail "no $ROOT"
send_lines 2 quit
wait_server 0 "exit"
python3 "$CHECK" "$TMP/exit.json" "$mutex" exit || fail "the timeline after a normal exit"
note "normal exit (relative name, program in /): valid, every track named, mutex wait, hand-off arrow, sleep"

start_traced --trace "$TMP/term.json"
send_lines 1
kill -TERM "$server"
wait_server 143 "SIGTERM"
python3 "$CHECK" "$TMP/term.json" "$mutex" sigterm || fail "the timeline after SIGTERM"
note "SIGTERM: valid, flushed, and the program still dies of the signal"

start_traced --trace "$TMP/limited.json" --trace-max 64k
send_lines 3000 quit
wait_server 0 "limited"
size=$(stat -c %s "$TMP/limited.json")
# The limit, plus the header, footer and the metadata repeated at a segment's start.
((size <= 64 * 1024 + 4096)) || fail "limited: the file has $size bytes, over its 64 KiB"
python3 "$CHECK" "$TMP/limited.json" "$mutex" limited || fail "the timeline under COOP_TRACE_MAX"
note "COOP_TRACE_MAX=64k: $size bytes, valid, the last events with their names"

# Thousands of greenlets, each waiting on one condition variable, woken by one broadcast:
# every track named, every greenlet's cond wait and its end there.
"$COOPRUN" --trace "$TMP/many.json" -- "$SAMPLES/many_threads" 3000 >/dev/null 2>"$TMP/many.err" ||
    fail "many_threads under --trace: $(cat "$TMP/many.err")"
python3 - "$TMP/many.json" <<'PY' || fail "the timeline of 3,000 threads"
import json, sys
events = json.load(open(sys.argv[1]))["traceEvents"]
named = {(e["pid"], e["tid"]) for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
waits = {(e["pid"], e["tid"]) for e in events if e["ph"] == "X" and e["name"].startswith("cond 0x")}
assert len(waits) >= 3000 and waits <= named, (len(waits), len(waits - named))
PY
note "3,000 threads: each one's wait on the condition variable, each track named"

# A deadlock ends the program with _exit(3): the timeline is written first, with the two
# waits that make it, still under way at the end. Neither the writer thread nor the
# profiler's timers hide the deadlock.
"$COOPRUN" --trace "$TMP/deadlock.json" --profile "$TMP/deadlock.folded" --on-deadlock exit -- "$SAMPLES/diag" deadlock >/dev/null 2>&1
status=$?
[ $status -eq 3 ] || fail "deadlock under --trace: status $status, expected 3"
python3 - "$TMP/deadlock.json" <<'PY' || fail "the timeline of a deadlock"
import json, sys
events = json.load(open(sys.argv[1]))["traceEvents"]
waits = [e for e in events if e["ph"] == "X" and e["name"].startswith("mutex 0x") and e["args"]["end"] == "end of trace"]
assert len(waits) == 2, waits
PY
note "deadlock: detected under --trace and --profile too, its two mutex waits in the timeline"

# Bad settings stop the program before main, naming the variable (status 2), or cooprun (125).
for setting in COOP_TRACE= COOP_TRACE_MAX=12q COOP_TRACE_MAX=1k COOP_PROFILE= COOP_PROFILE_HZ=0; do
    env "$setting" "$COOPRUN" -- true 2>"$TMP/bad.err"
    status=$?
    [ $status -eq 2 ] && grep -q "^coop: ${setting%%=*}=" "$TMP/bad.err" ||
        fail "$setting: status $status: $(cat "$TMP/bad.err")"
done
"$COOPRUN" --trace-max 12q -- true 2>/dev/null
[ $? -eq 125 ] || fail "cooprun --trace-max 12q was accepted"
note "bad settings: refused, each named"

# A file without %p belongs to the process that opened it first: kept across exec (a
# wrapper script that execs the program), not given to a child, which would overwrite it.
# many_threads' 10 threads each wait on a condition variable.
cond_waits() { python3 -c 'import json, sys; print(sum(1 for e in json.load(open(sys.argv[1]))["traceEvents"] if e["ph"] == "X" and e["name"].startswith("cond ")))' "$1"; }
"$COOPRUN" --trace "$TMP/exec.json" -- /bin/sh -c 'exec "$0" 10' "$SAMPLES/many_threads" >/dev/null 2>&1 ||
    fail "sh execing many_threads under --trace"
(($(cond_waits "$TMP/exec.json") >= 10)) || fail "the program a wrapper execs was not traced"
"$COOPRUN" --trace "$TMP/child.json" -- /bin/sh -c '"$0" 10; true' "$SAMPLES/many_threads" >/dev/null 2>&1 ||
    fail "sh running many_threads under --trace"
(($(cond_waits "$TMP/child.json") == 0)) || fail "a child wrote into its parent's timeline"
"$COOPRUN" --trace "$TMP/each.%p.json" -- /bin/sh -c '"$0" 10; true' "$SAMPLES/many_threads" >/dev/null 2>&1 ||
    fail "sh running many_threads under --trace FILE.%p"
(($(cat "$TMP"/each.*.json | grep -c '"name":"cond ') >= 10)) || fail "with %p, the child has no timeline of its own"
note "without %p: kept across exec, not given to children; with %p: a timeline per process"

# The profile: diag spin computes for 500 ms in "spinner" while another thread sleeps; with
# preemption off, the blocking monitor's report of it is an instant event on its track in the
# timeline. One hub and no handoff: on another hub or a spare, diag's ticker ends the
# computation at once (test_diagnostics; on a busy machine the monitor may see the spinner
# asleep in its read of stderr and hand its hub off).
COOP_HUBS=1 "$COOPRUN" --profile "$TMP/spin.folded" --profile-hz 199 --trace "$TMP/spin.json" --max-blocking 200 --preempt 0 --handoff 0 -- \
    "$SAMPLES/diag" spin >/dev/null 2>"$TMP/spin.err" || fail "diag spin under --profile: $(cat "$TMP/spin.err")"
python3 - "$TMP/spin.json" <<'PY' || fail "the blocking monitor's report in the timeline"
import json, sys
events = json.load(open(sys.argv[1]))["traceEvents"]
names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
reports = [e for e in events if e["ph"] == "i" and names.get((e["pid"], e["tid"])) == "spinner"]
assert len(reports) == 1 and reports[0]["name"].startswith("kept its hub") and reports[0]["args"]["held_ms"] >= 200, reports
PY
# With preemption on (the default), each preemption of the spinner is an instant event on its
# track, and the time it waited behind the others a slice named preempted (one hub and no
# handoff, as above).
COOP_HUBS=1 "$COOPRUN" --trace "$TMP/preempted.json" --handoff 0 -- "$SAMPLES/diag" spin >/dev/null 2>"$TMP/preempted.err" ||
    fail "diag spin, preempted: $(cat "$TMP/preempted.err")"
python3 - "$TMP/preempted.json" <<'PY' || fail "preemptions in the timeline"
import json, sys
events = json.load(open(sys.argv[1]))["traceEvents"]
names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
mine = [e for e in events if names.get((e["pid"], e["tid"])) == "spinner"]
instants = [e for e in mine if e["ph"] == "i" and e["name"] == "preempted"]
slices = [e for e in mine if e["ph"] == "X" and e["name"] == "preempted"]
assert instants and slices, (len(instants), len(slices))
print("preempted: %d instants, %d slices on the spinner's track" % (len(instants), len(slices)))
PY
python3 - "$TMP/spin.folded" <<'PY' || fail "the profile"
import sys
counts = {}
for line in open(sys.argv[1]):
    stack, _, count = line.rstrip("\n").rpartition(" ")
    frames = stack.split(";")
    assert stack and int(count) > 0 and all(frames), "malformed line: %r" % line
    counts[frames[0]] = counts.get(frames[0], 0) + int(count)
spinner = sum(int(l.rpartition(" ")[2]) for l in open(sys.argv[1])
              if l.startswith("spinner;spinner;") or l.startswith("spinner;spinner "))
# How many samples depends on the CPU the machine gives the spinner; where they are does
# not: the spinner, in its own function, is most of them.
assert spinner >= 1 and 2 * spinner > sum(counts.values()), "spinner in its own function: %d of %s" % (spinner, counts)
print("  profile roots:", counts)
PY
note "profile: collapsed stacks, the greenlet's name at the root, its function inside; the monitor's report in the timeline"
