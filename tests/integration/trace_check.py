#!/usr/bin/python3
"""trace_check.py: checks a timeline of tests/samples/trace_server written by cooprun --trace.

  trace_check.py FILE MUTEX_ADDRESS MODE

MODE is exit (the server ended by "quit"), sigterm (killed by SIGTERM while waiting for
the next line: the flush must have written that wait, open at the end) or limited (run
under COOP_TRACE_MAX=64k with many lines: the file holds the last events only, each track
still named). Prints what it found; exits 1 with the reason on the first failure.
"""
import json
import sys

SLEEP_US = 200000           # tests/samples/trace_server.c
SLEEP_SLACK_US = 5000000    # one-sided: a sleep never ends early, and may end late on a busy machine


def fail(why):
    print("FAIL:", why)
    sys.exit(1)


def main():
    path, mutex, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    try:
        with open(path) as f:
            doc = json.load(f)
    except ValueError as e:
        fail("%s is not valid JSON: %s" % (path, e))
    events = doc["traceEvents"]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "thread_name"}
    slices = [e for e in events if e["ph"] == "X"]
    for e in slices:
        if (e["pid"], e["tid"]) not in names:
            fail("a slice on an unnamed track: %s" % e)
    track = {}
    for key, name in names.items():
        track.setdefault(name, key)
    print("tracks:", ", ".join(sorted(set(names.values()))))

    def on(track_name, **want):
        key = track.get(track_name)
        return [e for e in slices if (e["pid"], e["tid"]) == key
                and all(e.get(k) == v for k, v in want.items())]

    if mode == "limited":
        limit = doc["otherData"]["coop_trace_max_bytes"]
        if limit != 64 * 1024:
            fail("the limit recorded is %s" % limit)
        if "acceptor" not in track or not on("acceptor", cat="run"):
            fail("the acceptor's track is missing from the last events")
        # Slices that began early may end in the kept part (main's join); none ended early.
        if min(e["ts"] + e["dur"] for e in slices) < 10000:
            fail("events of the first 10 ms are still there: the file was not cut to its limit")
        print("limited: %d events, acceptor named, the oldest gone" % len(events))
        return

    for name in ("main", "holder", "sleeper", "acceptor"):
        if name not in track:
            fail("no track named %s" % name)
        if not on(name, cat="run"):
            fail("no run slice on %s's track" % name)

    waits = on("acceptor", cat="wait", name="mutex " + mutex)
    if not waits or waits[0]["args"]["object"] != mutex or waits[0]["args"]["kind"] != "mutex":
        fail("no wait for mutex %s on the acceptor's track: %s" % (mutex, on("acceptor", cat="wait")))
    handoff = waits[0]
    print("mutex wait: %s, %.1f us" % (handoff["name"], handoff["dur"]))

    # The hand-off: an arrow from the holder (who unlocked) to the acceptor.
    starts = {e["id"]: e for e in events if e["ph"] == "s" and (e["pid"], e["tid"]) == track["holder"]}
    ends = [e for e in events if e["ph"] == "f" and (e["pid"], e["tid"]) == track["acceptor"]
            and e["id"] in starts and e["ts"] >= handoff["ts"] + handoff["dur"]]
    if not ends:
        fail("no wake arrow from holder to acceptor after the mutex wait")
    print("hand-off arrow: holder -> acceptor")

    sleeps = on("sleeper", cat="wait", name="sleep")
    if len(sleeps) != 1:
        fail("the sleeper should sleep once: %s" % sleeps)
    dur = sleeps[0]["dur"]
    # SIGTERM may come before the sleep ends (a fast client): the flush then closes it.
    cut_short = mode == "sigterm" and sleeps[0]["args"].get("end") == "end of trace" and dur < SLEEP_US
    if not cut_short and not SLEEP_US <= dur <= SLEEP_US + SLEEP_SLACK_US:
        fail("the sleep lasted %.1f us, expected %d us to %d us" % (dur, SLEEP_US, SLEEP_US + SLEEP_SLACK_US))
    print("sleep: %.1f us%s" % (dur, ", open at SIGTERM" if cut_short else ""))

    last = on("acceptor", cat="wait")[-1]
    if mode == "sigterm":
        if not last["name"].startswith("read fd") or last["args"]["end"] != "end of trace":
            fail("the wait for the next line, open at SIGTERM, was not flushed: %s" % last)
        print("sigterm: the wait open at the signal was flushed")


if __name__ == "__main__":
    main()
