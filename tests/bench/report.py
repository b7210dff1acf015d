#!/usr/bin/python3
"""report.py: turns the measurements of tests/bench/run.sh into results.md and PNG plots.

  report.py --raw RAW.tsv --micro MICRO.tsv --out DIR --machine TEXT --command TEXT
            --seconds N --duration S --reps N [--gnuplot 0|1] [--tls-mechanisms syscall,fsgsbase]

RAW.tsv has one line per echo run (size level server rep rps p50_us p99_us errors threads
rss_kib warmup_s starved note monitor_cpu_pct); MICRO.tsv one line per micro-benchmark measurement ("VARIANT bench=NAME k=v...").
A VARIANT coop-tls-MECHANISM ran under COOP_TLS=MECHANISM.
Standard library only.
"""
import argparse
import os
import statistics
import subprocess
import sys

SERVERS = ["epoll", "epoll-mt", "threads", "coop", "coop-ucontext", "coop-trace", "go1", "go", "gevent"]
LABELS = {
    "epoll": "epoll (ref)",
    "epoll-mt": "epoll, a loop per CPU",
    "threads": "threads native",
    "coop": "coop",
    "coop-ucontext": "coop ucontext",
    "coop-trace": "coop --trace",
    "go1": "Go GOMAXPROCS=1",
    "go": "Go default",
    "gevent": "gevent",
}
# The preemption section: echo_threads under coop, preemption on and off, with and without a hog.
PREEMPT_SERVERS = ["coop-preempt-on", "coop-preempt-off", "coop-hog-on", "coop-hog-off"]
LABELS.update({
    "coop-preempt-on": "coop, preemption on",
    "coop-preempt-off": "coop, preemption off",
    "coop-hog-on": "coop + hog, preemption on",
    "coop-hog-off": "coop + hog, preemption off",
})
# Notes of runs whose numbers stand (the others are failures: no server, a crash, a hang).
MEASURED = ("ok", "loadgen-errors", "server-ignored-SIGTERM")
RATIOS = [("coop/epoll", "epoll"), ("coop/epoll-mt", "epoll-mt"), ("coop/threads", "threads"),
          ("coop/traced", "coop-trace"), ("coop/Go1", "go1"), ("coop/Go", "go"), ("coop/gevent", "gevent")]
# How coop's switch can move the thread pointer (COOP_TLS), in the order of the TLS table.
TLS_MECHANISMS = ["syscall", "fsgsbase"]


def number(text):
    try:
        return float(text)
    except ValueError:
        return None


def read_raw(path):
    runs = {}
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(header, line.rstrip("\n").split("\t")))
            key = (int(row["size"]), int(row["level"]), row["server"])
            runs.setdefault(key, []).append(row)
    return runs


def summarize(rows):
    """Median rps and p99 over the runs that produced numbers; the notes of those that did not."""
    ok = [r for r in rows if number(r["rps"]) is not None and r["note"] in MEASURED]
    notes = sorted({r["note"] for r in rows if r["note"] not in ("ok", "skipped-for-time")})
    if not ok:
        return None, notes

    def median(field):
        values = [number(r[field]) for r in ok if number(r[field]) is not None]
        return statistics.median(values) if values else None

    return {"rps": median("rps"), "p50": median("p50_us"), "p99": median("p99_us"), "threads": median("threads"),
            "rss": median("rss_kib"), "warmup": median("warmup_s"), "runs": len(ok),
            "starved": max([int(number(r["starved"]) or 0) for r in ok]), "errors": sum(int(number(r["errors"]) or 0) for r in ok)}, notes


def fmt_rps(v):
    return "%.1fk" % (v / 1000) if v >= 1000 else "%.0f" % v


def fmt_us(v):
    if v >= 1000:
        return "%.1f ms" % (v / 1000) if v < 100000 else "%.0f ms" % (v / 1000)
    return "%.0f µs" % v


def fmt_level(level):
    return "{:,}".format(level)


def fmt_size(size):
    return "%d KiB" % (size // 1024) if size >= 1024 and size % 1024 == 0 else "%d B" % size


def echo_tables(runs, reps, duration):
    sizes = sorted({k[0] for k in runs})
    lines, summaries = [], {}
    for size in sizes:
        levels = sorted({k[1] for k in runs if k[0] == size})
        present = [s for s in SERVERS if any((size, l, s) in runs for l in levels)]
        lines.append("### Echo, %s messages: requests/s (p99 latency)\n" % fmt_size(size))
        head = ["connections"] + [LABELS[s] for s in present] + [r[0] for r in RATIOS]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        fewer = []
        for level in levels:
            cells = [fmt_level(level)]
            for server in present:
                s, notes = summarize(runs.get((size, level, server), []))
                summaries[(size, level, server)] = s
                if s is None:
                    cells.append("n/a" if notes == ["n/a"] else "FAIL: " + ",".join(notes))
                else:
                    cell = "%s (%s)" % (fmt_rps(s["rps"]), fmt_us(s["p99"]) if s["p99"] is not None else "?")
                    if s["errors"]:
                        cell += " [%d errors]" % s["errors"]
                    if s["starved"]:
                        cell += " [%d conns starved]" % s["starved"]
                    if notes:
                        cell += " [" + ",".join(notes) + "]"
                    cells.append(cell)
                    if s["runs"] < reps:
                        rows = runs.get((size, level, server), [])
                        why = ("time budget" if any(r["note"] == "skipped-for-time" for r in rows) else
                               "failed runs" if len(rows) > s["runs"] else "by plan")
                        fewer.append((level, s["runs"], why))
            coop = summaries.get((size, level, "coop"))
            for _, other in RATIOS:
                o = summaries.get((size, level, other))
                if coop and o and o["rps"]:
                    cells.append("%.2f" % (coop["rps"] / o["rps"]))
                else:
                    cells.append("n/a")
            lines.append("| " + " | ".join(cells) + " |")
        runs_note = "Median of %d run%s of %s s per cell" % (reps, "s" if reps > 1 else "", duration)
        for level, why in sorted({(l, w) for l, _, w in fewer}):
            least = min(n for l, n, w in fewer if l == level and w == why)
            runs_note += "; at %s connections as few as %d run%s (%s)" % (
                fmt_level(level), least, "s" if least > 1 else "",
                {"by plan": "planned so, to keep the suite within its 10 minutes",
                 "time budget": "the suite ran out of its time budget",
                 "failed runs": "the others failed"}[why])
        lines.append("\n%s. Ratios compare requests/s.\n" % runs_note)

        lines.append("Server OS threads / resident set under load (maximum sampled during the run) / "
                     "warm-up (until every connection had an echo):\n")
        head = ["connections"] + [LABELS[s] for s in present]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for level in levels:
            cells = [fmt_level(level)]
            for server in present:
                s = summaries.get((size, level, server))
                if s is None or s["threads"] is None:
                    cells.append("n/a")
                else:
                    cells.append("%d / %.1f MiB / %s" % (s["threads"], (s["rss"] or 0) / 1024,
                                                         "%.1f s" % s["warmup"] if s["warmup"] is not None else "?"))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines, summaries


def pair_ratios(runs, key_on, key_off):
    """requests/s on / off for each pair (same rep) that measured both: back to back, a pair
    shares the machine's state, where medians over the whole section would not."""
    off = {r["rep"]: number(r["rps"]) for r in runs.get(key_off, []) if r["note"] in MEASURED}
    return [number(r["rps"]) / off[r["rep"]] for r in runs.get(key_on, [])
            if r["note"] in MEASURED and number(r["rps"]) and off.get(r["rep"])]


def preempt_table(runs, preempt_ms, hog_ms):
    """The preemption section (runs of PREEMPT_SERVERS): its table, and the figures its
    targets need, or None when it did not run."""
    keys = sorted({k[:2] for k in runs if k[2] in PREEMPT_SERVERS})
    if not keys:
        return [], None
    size, level = keys[0]
    summaries = {name: summarize(runs.get((size, level, name), [])) for name in PREEMPT_SERVERS}
    shares = [number(r.get("monitor_cpu_pct", "NA")) for r in runs.get((size, level, "coop-preempt-on"), [])]
    shares = [s for s in shares if s is not None]
    lines = ["### Preemption: echo at %s connections, %s messages, with and without a hog\n"
             % (fmt_level(level), fmt_size(size)),
             "| server | requests/s | p50 latency | p99 latency | runs |", "|---|---|---|---|---|"]
    for name in PREEMPT_SERVERS:
        s, notes = summaries[name]
        if s is None:
            failed = "n/a" if notes == ["n/a"] else "FAIL: " + ",".join(notes)
            lines.append("| %s | %s | | | 0 |" % (LABELS[name], failed))
            continue
        latency = [fmt_us(s[p]) if s["rps"] and s[p] is not None else "no echo in the run" if not s["rps"] else "?"
                   for p in ("p50", "p99")]
        lines.append("| %s | %s | %s | %s | %d%s |" % (LABELS[name], fmt_rps(s["rps"]), latency[0], latency[1],
                     s["runs"], " [" + ",".join(notes) + "]" if notes else ""))
    ratios = pair_ratios(runs, (size, level, "coop-preempt-on"), (size, level, "coop-preempt-off"))
    lines.append("\necho_threads under cooprun on one hub (COOP_HUBS=1); preemption on: COOP_PREEMPT_MS=%d (the default), off: 0. The hog: "
                 "ECHO_HOG_MS=%d, one more thread that computes without a blocking call for %d ms at a time, "
                 "1 ms apart. On and off run in back-to-back pairs, alternating which goes first; medians. "
                 "Without a hog, requests/s on / off per pair: %s; the coop-monitor thread used %s of the "
                 "server's CPU (median; per run: %s).\n"
                 % (preempt_ms, hog_ms, hog_ms, ", ".join("%.2f" % r for r in ratios) or "n/a",
                    "%.2f%%" % statistics.median(shares) if shares else "n/a",
                    ", ".join("%.2f%%" % s for s in shares) or "n/a"))
    figures = {name: summaries[name][0] for name in PREEMPT_SERVERS}
    figures["pair_ratio"] = statistics.median(ratios) if ratios else None
    figures["monitor_share"] = statistics.median(shares) if shares else None
    return lines, figures


def read_micro(path):
    """{(variant, bench name or bench+threads): fields}, plus failures. A benchmark that ran
    several times gets the median of each numeric field."""
    runs, failures = {}, []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2:
                continue
            variant, fields = parts[0], dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            name = fields.get("bench", "?")
            if "failed" in fields:
                failures.append("%s %s %s: exit status %s" % (variant, name, fields.get("args", ""), fields["failed"]))
                continue
            if name.startswith("idle"):
                name = "%s:%s" % (name, fields.get("threads"))
            runs.setdefault((variant, name), []).append(fields)
    results = {}
    for key, all_fields in runs.items():
        merged = dict(all_fields[0])
        for field in merged:
            values = [number(f.get(field, "")) for f in all_fields]
            if all(v is not None for v in values):
                merged[field] = "%g" % statistics.median(values)
        merged["runs"] = str(len(all_fields))
        results[key] = merged
    return results, failures


def micro_ns(micro, variant, name):
    f = micro.get((variant, name))
    return number(f["ns_per_op"]) if f and "ns_per_op" in f else None


def fmt_value(v, unit="ns"):
    if v is None:
        return "n/a"
    return ("%.1f %s" % (v, unit)) if v < 100 else ("{:,.0f} %s".format(v) % unit)


def micro_tables(micro, failures):
    def ns(variant, name):
        return micro_ns(micro, variant, name)

    def ratio(a, b, fmt="%.1fx"):
        return fmt % (a / b) if a and b else "n/a"

    def ms_cell(v):
        return "n/a" if v is None else "{:,.0f} ms".format(v / 1e6)

    reps = max((int(f.get("runs", "1")) for f in micro.values()), default=1)
    lines = ["### Micro-benchmarks (ns per operation; lower is better%s)\n"
             % (", median of %d runs" % reps if reps > 1 else ""),
             "| benchmark | native | coop | coop ucontext | reference | ratio |",
             "|---|---|---|---|---|---|"]
    sw_n, sw_c, sw_u = ns("native", "switch_yield"), ns("coop", "switch_yield"), ns("coop-ucontext", "switch_yield")
    asm, uc = ns("native", "switch_asm"), ns("native", "switch_ucontext")
    lines.append("| context switch (sched_yield ping-pong; native: kernel switch, one CPU; coop: one hub) | %s | %s | %s | "
                 "register-only asm %s; swapcontext %s | swapcontext/coop %s; coop/register-only %s; native/coop %s |"
                 % (fmt_value(sw_n), fmt_value(sw_c), fmt_value(sw_u), fmt_value(asm), fmt_value(uc), ratio(sw_u, sw_c),
                    ratio(sw_c, asm), ratio(sw_n, sw_c)))
    sw_t = ns("coop-trace", "switch_yield")
    lines.append("| context switch under `--trace` (a record per switch) | | %s | | coop %s | traced/coop %s |"
                 % (fmt_value(sw_t), fmt_value(sw_c), ratio(sw_t, sw_c, "%.2fx")))
    cj_n, cj_c = ns("native", "create_join"), ns("coop", "create_join")
    lines.append("| pthread_create + pthread_join | %s | %s | | | native/coop %s |"
                 % (fmt_value(cj_n), fmt_value(cj_c), ratio(cj_n, cj_c)))
    mu_n, mu_c = ns("native", "mutex_uncontended"), ns("coop", "mutex_uncontended")
    lines.append("| mutex lock+unlock, uncontended | %s | %s | | | coop/native %s |"
                 % (fmt_value(mu_n), fmt_value(mu_c), ratio(mu_c, mu_n, "%.2fx")))
    mt_n, mt_c = ns("native", "mutex_uncontended_threaded"), ns("coop", "mutex_uncontended_threaded")
    lines.append("| mutex lock+unlock, uncontended, while a second thread exists (glibc's multi-threaded path) | %s | %s | | | coop/native %s |"
                 % (fmt_value(mt_n), fmt_value(mt_c), ratio(mt_c, mt_n, "%.2fx")))
    mh_n, mh_c = ns("native", "mutex_handoff"), ns("coop", "mutex_handoff")
    lines.append("| mutex hand-off between two threads (per waiting lock) | %s | %s | | | native/coop %s |"
                 % (fmt_value(mh_n), fmt_value(mh_c), ratio(mh_n, mh_c)))
    cv_n, cv_c = ns("native", "condvar_pingpong"), ns("coop", "condvar_pingpong")
    lines.append("| condition variable ping-pong (per hand-off) | %s | %s | | | native/coop %s |"
                 % (fmt_value(cv_n), fmt_value(cv_c), ratio(cv_n, cv_c)))
    for mode, what in (("kernel", "a signal from the kernel (a raw tgkill to the own thread) run by its handler"),
                       ("pthread_kill", "pthread_kill(pthread_self()) run by its handler")):
        sg_n, sg_c = ns("native", "signal_" + mode), ns("coop", "signal_" + mode)
        lines.append("| %s | %s | %s | | | coop/native %s |" % (what, fmt_value(sg_n), fmt_value(sg_c), ratio(sg_c, sg_n, "%.2fx")))
    sl_n, sl_c = ns("native", "sleep_100us"), ns("coop", "sleep_100us")
    lines.append("| usleep(100), as long as it lasts (two threads sleeping) | %s | %s | | | coop/native %s |"
                 % (fmt_value(sl_n), fmt_value(sl_c), ratio(sl_c, sl_n, "%.2fx")))
    for variant, where in (("", "a computing thread per CPU"), ("-onecpu", "a computing thread, on one CPU (coop: one hub)")):
        sb_n, sb_c = ns("native" + variant, "sleep_1ms_beside_compute"), ns("coop" + variant, "sleep_1ms_beside_compute")
        lines.append("| usleep(1000) beside %s, as long as it lasts | %s | %s | | | coop/native %s |"
                     % (where, fmt_value(sb_n), fmt_value(sb_c), ratio(sb_c, sb_n, "%.2fx")))
    cp_n, cp_c = ns("native", "cpu_pool"), ns("coop", "cpu_pool")
    lines.append("| CPU pool, a thread per CPU computing (wall time per unit of work; coop on its default hubs) | %s | %s | | | coop/native %s |"
                 % (fmt_value(cp_n), fmt_value(cp_c), ratio(cp_c, cp_n, "%.2fx")))
    compress = {}
    for tool, command in (("pigz", "pigz -p N"), ("xz", "xz -TN"), ("zstd", "zstd -TN"), ("sort", "sort --parallel=N")):
        c_n, c_c = ns("native", "compress_" + tool), ns("coop", "compress_" + tool)
        if c_n or c_c:
            compress[tool] = (c_n, c_c)
            lines.append("| %s over 64 MB, N = the CPUs (wall time) | %s | %s | | | coop/native %s |"
                         % (command, ms_cell(c_n), ms_cell(c_c), ratio(c_c, c_n, "%.2fx")))

    spawn = {}
    for what, command in (("system", 'system("sleep 0.3; exit 3")'), ("popen", 'popen("sleep 0.3; echo ready")')):
        sp_n, sp_c = ns("native", "spawn_" + what), ns("coop", "spawn_" + what)
        spawn[what] = (sp_n, sp_c)
        children = (micro.get(("coop", "spawn_" + what)) or micro.get(("native", "spawn_" + what)) or {}).get("children", "?")
        lines.append("| %s threads each %s at once, wall time (children inherit coop) | %s | %s | | | coop/native %s |"
                     % (children, command, ms_cell(sp_n), ms_cell(sp_c), ratio(sp_c, sp_n, "%.2fx")))

    idle = {}
    for (variant, name), f in micro.items():
        if f.get("bench") == "idle":
            idle.setdefault(int(f["threads"]), {})[variant] = f
    for n in sorted(idle):
        nat = idle[n].get("native", {}).get("rss_per_thread_kib")
        coop = idle[n].get("coop", {}).get("rss_per_thread_kib")
        nat_text = "%.2f KiB" % number(nat) if nat else ("skipped (see below)" if n > 10000 else "not run")
        lines.append("| RSS per idle thread, {:,} blocked on a condvar | %s | %s | | | native/coop %s |".format(n)
                     % (nat_text, "%.2f KiB" % number(coop) if coop else "n/a",
                        ratio(number(nat) if nat else None, number(coop) if coop else None)))
    if max(idle, default=0) > 10000 and not any("native" in idle[n] for n in idle if n > 10000):
        lines.append("\nNative idle threads are measured at 10,000 only: 100,000 native threads cannot "
                     "exist here (kernel.pid_max = %s, kernel.threads-max = %s, and each thread stack "
                     "costs two of vm.max_map_count = %s mappings, so about %d stacks)."
                     % (read_proc("/proc/sys/kernel/pid_max"), read_proc("/proc/sys/kernel/threads-max"),
                        read_proc("/proc/sys/vm/max_map_count"),
                        int(read_proc("/proc/sys/vm/max_map_count") or 0) // 2))
    if failures:
        lines.append("\nMicro-benchmarks that failed: " + "; ".join(failures) + ".")
    lines.append("")
    values = {"sw_c": sw_c, "sw_u": sw_u, "asm": asm, "cj_n": cj_n, "cj_c": cj_c, "mu_n": mu_n, "mu_c": mu_c,
              "mt_n": mt_n, "mt_c": mt_c,
              "cp_n": cp_n, "cp_c": cp_c, "compress": compress,
              "idle100k": number(idle.get(100000, {}).get("coop", {}).get("rss_per_thread_kib", "x")),
              "spawn": spawn}
    return lines, values


def largest_idle(micro, variant, bench):
    """The run of BENCH (idle or idle_tls) with the most threads under VARIANT, or None."""
    runs = [f for (v, _), f in micro.items() if v == variant and f.get("bench") == bench]
    return max(runs, key=lambda f: int(f["threads"]), default=None)


def tls_table(micro, mechanisms_here):
    """The switch and the memory of idle greenlets under each COOP_TLS mechanism; the KiB per idle
    C greenlet at 100,000 of each mechanism measured, for the targets."""
    variants = ["native"] + ["coop-tls-" + m for m in TLS_MECHANISMS]
    lines = ["### Thread-local storage: each COOP_TLS mechanism\n",
             "| benchmark | native | " + " | ".join("COOP_TLS=" + m for m in TLS_MECHANISMS) + " |",
             "|---|---|" + "---|" * len(TLS_MECHANISMS)]
    for name, what in (("switch_yield", "thread switch (sched_yield ping-pong; native: kernel switch, one CPU; coop: one hub)"),
                       ("create_join", "thread create + join")):
        lines.append("| %s | %s |" % (what, " | ".join(fmt_value(micro_ns(micro, v, name)) for v in variants)))
    idle_c = {}
    for bench, what in (("idle", "C (idle.c)"),
                        ("idle_tls", "C++, a 16 KiB thread_local array (idle_tls.cc)")):
        cells = []
        for v in variants:
            f = largest_idle(micro, v, bench)
            kib = number(f["rss_per_thread_kib"]) if f else None
            cells.append("%.2f KiB at {:,}".format(int(f["threads"])) % kib if kib is not None else "n/a")
            if bench == "idle" and kib is not None and int(f["threads"]) == 100000:
                idle_c[v] = kib
        lines.append("| RSS per idle greenlet, %s | %s |" % (what, " | ".join(cells)))
    missing = [m for m in TLS_MECHANISMS if m not in mechanisms_here]
    lines.append("\nEach switch between greenlets moves the thread pointer to the next one's TLS: with "
                 "arch_prctl(ARCH_SET_FS), a system call, under syscall; with the wrfsbase instruction "
                 "under fsgsbase.%s\n" % "".join(
                     " COOP_TLS=%s: not on this machine (the CPU or the kernel keeps FSGSBASE from user "
                     "code), not measured." % m for m in missing))
    return lines, {m: idle_c.get("coop-tls-" + m) for m in mechanisms_here}


def read_proc(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "?"


def targets(summaries, v, preempt, preempt_ms):
    lines = ["### Targets\n", "| target | where it stands | met |", "|---|---|---|"]

    def row(what, stands, met):
        lines.append("| %s | %s | %s |" % (what, stands, "n/a" if met is None else ("yes" if met else "**no**")))

    if preempt is not None:
        on, off = preempt["coop-hog-on"], preempt["coop-hog-off"]
        what = "echo p99 beside a hog, preemption on, ≤ 3 x COOP_PREEMPT_MS (%d ms)" % (3 * preempt_ms)
        if on and on["rps"] and on["p99"] is not None:
            off_p99 = "n/a"
            if off and off["p99"] is not None:
                off_p99 = fmt_us(off["p99"]) if off["rps"] else "no echo in the run"
            row(what, "%s (off: %s)" % (fmt_us(on["p99"]), off_p99), on["p99"] <= 3 * preempt_ms * 1000)
        else:
            row(what, "not measured", None)
        on, off, ratio = preempt["coop-preempt-on"], preempt["coop-preempt-off"], preempt["pair_ratio"]
        what = "echo throughput without a hog, preemption on within 3% of off"
        if on and off and ratio is not None:
            share = preempt["monitor_share"]
            row(what, "on/off %.3f, median of the pairs' ratios (%s vs %s req/s); the monitor's CPU share %s"
                % (ratio, fmt_rps(on["rps"]), fmt_rps(off["rps"]), "%.2f%%" % share if share is not None else "n/a"),
                abs(ratio - 1) <= 0.03)
        else:
            row(what, "not measured", None)

    for size in sorted({k[0] for k in summaries}):
        levels = sorted({k[1] for k in summaries if k[0] == size})

        def ratios(other, min_level=0):
            out = []
            for level in levels:
                c, o = summaries.get((size, level, "coop")), summaries.get((size, level, other))
                if level >= min_level and c and o and o["rps"]:
                    out.append((level, c["rps"] / o["rps"]))
            return out

        for what, other, floor, min_level in (("≥ 0.9x epoll at every level", "epoll", 0.9, 0),
                                              ("≥ 0.9x epoll with a loop per CPU at every level", "epoll-mt", 0.9, 0),
                                              ("≥ native threads from 1,000 connections", "threads", 1.0, 1000),
                                              ("≥ Go GOMAXPROCS=1", "go1", 1.0, 0),
                                              ("≥ Go default at every level", "go", 1.0, 0)):
            r = ratios(other, min_level)
            stands = ", ".join("%s: %.2fx" % (fmt_level(l), x) for l, x in r) or "not measured"
            row("echo %s under coop %s" % (fmt_size(size), what), stands, all(x >= floor for _, x in r) if r else None)
    if v["sw_c"] and v["sw_u"]:
        row("switch ≥ 10x faster than swapcontext", "%.1fx (%.1f vs %.1f ns)" % (v["sw_u"] / v["sw_c"], v["sw_c"], v["sw_u"]),
            v["sw_u"] / v["sw_c"] >= 10)
    else:
        row("switch ≥ 10x faster than swapcontext", "not measured", None)
    if v["cj_c"] and v["cj_n"]:
        row("create+join ≥ 20x faster than pthreads", "%.1fx (%.0f vs %.0f ns)" % (v["cj_n"] / v["cj_c"], v["cj_c"], v["cj_n"]),
            v["cj_n"] / v["cj_c"] >= 20)
    else:
        row("create+join ≥ 20x faster than pthreads", "not measured", None)
    if v["mu_c"] and v["mu_n"]:
        row("uncontended mutex within 1.2x of glibc", "%.2fx (%.1f vs %.1f ns)" % (v["mu_c"] / v["mu_n"], v["mu_c"], v["mu_n"]),
            v["mu_c"] / v["mu_n"] <= 1.2)
    else:
        row("uncontended mutex within 1.2x of glibc", "not measured", None)
    if v["mt_c"] and v["mt_n"]:
        row("(for comparison, not a target: the same with a second thread alive)",
            "%.2fx (%.1f vs %.1f ns)" % (v["mt_c"] / v["mt_n"], v["mt_c"], v["mt_n"]), None)
    if v["cp_c"] and v["cp_n"]:
        row("CPU pool wall time ≤ 1.1x native", "%.2fx" % (v["cp_c"] / v["cp_n"]), v["cp_c"] / v["cp_n"] <= 1.1)
    else:
        row("CPU pool wall time ≤ 1.1x native", "not measured", None)
    compress = {tool: c / n for tool, (n, c) in v.get("compress", {}).items() if n and c}
    if compress:
        row("pigz, xz, zstd and sort with a thread per CPU ≤ 1.1x native wall time",
            ", ".join("%s %.2fx" % (tool, r) for tool, r in compress.items()), max(compress.values()) <= 1.1)
    else:
        row("pigz, xz, zstd and sort with a thread per CPU ≤ 1.1x native wall time", "not measured", None)
    hand, plain = v.get("handoff"), v.get("handoff_plain")
    if hand:
        row("echo p99 bounded while a thread sleeps 50 ms at a time in raw nanosleeps (100 connections, 64 B)",
            "p99 %s (%s without the sleeper), %s req/s" % (fmt_us(hand["p99"]), fmt_us(plain["p99"]) if plain else "n/a",
                                                        fmt_rps(hand["rps"])),
            hand["p99"] < 50000)
    else:
        row("echo p99 bounded while a thread sleeps in raw nanosleeps", "not measured", None)
    ratios = [(what, c / n) for what, (n, c) in v["spawn"].items() if n and c]
    row("concurrent system() and popen() under coop ≤ 1.0x native wall time",
        ", ".join("%s: %.2fx" % r for r in ratios) or "not measured",
        all(x <= 1.0 for _, x in ratios) if len(ratios) == 2 else None)
    for what, kib in [("", v["idle100k"])] + [(" (C, COOP_TLS=%s)" % m, k) for m, k in v["tls_idle100k"].items()]:
        if kib is not None:
            row("≤ 6 KiB RSS per idle greenlet at 100,000" + what, "%.2f KiB" % kib, kib <= 6)
        else:
            row("≤ 6 KiB RSS per idle greenlet at 100,000" + what, "not measured", None)
    lines.append("")
    return lines


def plots(summaries, out, use_gnuplot):
    made = []
    for size in sorted({k[0] for k in summaries}):
        levels = sorted({k[1] for k in summaries if k[0] == size})
        servers = [s for s in SERVERS if any(summaries.get((size, l, s)) for l in levels)]
        if not servers:
            continue
        suffix = "" if size == 64 else "_%dk" % (size // 1024) if size % 1024 == 0 else "_%d" % size
        data = os.path.join(out, "echo%s.dat" % suffix)
        with open(data, "w") as f:
            f.write("connections " + " ".join('"%s rps" "%s p99_ms"' % (s, s) for s in servers) + "\n")
            for level in levels:
                cols = [str(level)]
                for s in servers:
                    m = summaries.get((size, level, s))
                    cols.append("%.0f" % m["rps"] if m else "?")
                    cols.append("%.4f" % (m["p99"] / 1000) if m and m["p99"] is not None else "?")
                f.write(" ".join(cols) + "\n")
        if not use_gnuplot:
            continue
        for what, col, ylabel, logy in (("rps", 0, "requests/s", False), ("p99", 1, "p99 latency (ms)", True)):
            png = os.path.join(out, "%s%s.png" % (what, suffix))
            script = "\n".join([
                'set terminal png size 1000,650',
                'set output "%s"' % png,
                'set datafile missing "?"',
                'set key outside right top',
                'set logscale x',
                'set logscale y' if logy else 'set yrange [0:*]',
                'set grid',
                'set xlabel "concurrent connections"',
                'set ylabel "%s"' % ylabel,
                'set title "echo, %s messages: %s (loadgen, same 2 cores)"' % (fmt_size(size), ylabel),
                'set xtics (%s)' % ", ".join('"%s" %d' % (fmt_level(l), l) for l in levels),
                'plot ' + ", ".join('"%s" using 1:%d with linespoints lw 2 title "%s"' % (data, 2 + 2 * i + col, LABELS[s])
                                    for i, s in enumerate(servers)),
            ])
            r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
            if r.returncode == 0 and os.path.exists(png):
                made.append(os.path.basename(png))
            else:
                sys.stderr.write("report.py: gnuplot failed for %s: %s\n" % (png, r.stderr.strip()))
    return made


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--raw", required=True)
    p.add_argument("--micro", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--machine", default="?")
    p.add_argument("--command", default="tests/bench/run.sh")
    p.add_argument("--seconds", default="?")
    p.add_argument("--duration", default="?")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--gnuplot", type=int, default=1)
    p.add_argument("--pinned-level1", type=int, default=0)
    p.add_argument("--library", default="build/libcoop.so")
    p.add_argument("--tls-mechanisms", default="", help="the COOP_TLS mechanisms of this machine, comma separated")
    p.add_argument("--note", action="append", default=[], help="a line for the header list")
    p.add_argument("--preempt-ms", type=int, default=10)
    p.add_argument("--hog-ms", type=int, default=1000)
    a = p.parse_args()

    runs = read_raw(a.raw)
    matrix = {k: rows for k, rows in runs.items() if k[2] in SERVERS}
    echo, summaries = echo_tables(matrix, a.reps, a.duration)
    micro, failures = read_micro(a.micro)
    micro_lines, values = micro_tables(micro, failures)
    tls_lines, values["tls_idle100k"] = tls_table(micro, [m for m in a.tls_mechanisms.split(",") if m])
    if not micro and not failures:          # run.sh --only without micro
        micro_lines = tls_lines = []
    preempt_lines, preempt = preempt_table(runs, a.preempt_ms, a.hog_ms)
    values["handoff"] = summarize(runs.get((64, 100, "coop-rawsleep"), []))[0]
    values["handoff_plain"] = summaries.get((64, 100, "coop"))
    pngs = plots(summaries, a.out, a.gnuplot)

    doc = ["# coop benchmarks\n",
           "- machine: %s" % a.machine,
           "- command: `%s` (%s s in all)" % (a.command.strip(), a.seconds),
           "- library: %s" % a.library,
           "- load: build/bench/loadgen, closed loop, one thread, on the same machine as the server: "
           "compare ratios within one run, not absolute numbers across runs",
           "- placement: %s" % ("at 1 connection the server and loadgen both run on CPU 0 (taskset), since "
                                "a lone request's latency otherwise depends on whether the kernel puts them on one "
                                "CPU or two (about 60k vs 15k req/s here); other levels are not pinned"
                                if a.pinned_level1 else "nothing pinned"),
           "- plots: %s" % (", ".join(pngs) if pngs else "none (no gnuplot)")]
    doc += ["- " + n for n in a.note]
    doc += [
           ""]
    doc += echo + micro_lines + tls_lines + preempt_lines + targets(summaries, values, preempt, a.preempt_ms)
    problems = sorted({(k, r["note"]) for k, rows in runs.items() for r in rows
                       if r["note"] not in ("ok", "n/a", "skipped-for-time")})
    if problems:
        doc.append("### Runs that went wrong\n")
        for (size, level, server), note in problems:
            doc.append("- %s at %s connections, %s: %s" % (LABELS[server], fmt_level(level), fmt_size(size), note))
        doc.append("")
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write("\n".join(doc))


if __name__ == "__main__":
    main()
