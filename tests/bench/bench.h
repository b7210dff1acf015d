/*
 * Helpers of the micro-benchmarks (switch.c, create_join.c, mutex.c, sleep.c, idle.c, and the
 * C++ idle_tls.cc). Like the samples
 * they know nothing of coop: run natively, or under cooprun, they are the same binary.
 *
 * Each benchmark prints one line per measurement, for tests/bench/run.sh to collect:
 *   bench=NAME ns_per_op=X ops=N [key=value]...
 */
#ifndef COOP_BENCH_H
#define COOP_BENCH_H

#include "../samples/common.h"

#include <getopt.h>

/* Command line shared by the micro-benchmarks: -n OPS (upper bound), -t SECONDS (time bound). */
struct bench_options {
    long ops;
    double seconds;
    const char *mode; /* -m MODE, or NULL for every mode of the program */
};

static inline struct bench_options bench_parse(int argc, char **argv, long default_ops,
                                               const char *usage)
{
    struct bench_options o = { .ops = default_ops, .seconds = 0.5, .mode = NULL };
    char *end;
    int c;

    while ((c = getopt(argc, argv, "n:t:m:")) != -1) {
        switch (c) {
        case 'n': o.ops = parse_long(optarg, 1, LONG_MAX / 4, "-n"); break;
        case 't':
            o.seconds = strtod(optarg, &end);
            if (end == optarg || *end != '\0' || !(o.seconds > 0 && o.seconds < 1e5))
                die("-t: '%s' is not a number of seconds", optarg);
            break;
        case 'm': o.mode = optarg; break;
        default: die("usage: %s", usage);
        }
    }
    if (optind != argc)
        die("usage: %s", usage);
    return o;
}

static inline bool bench_wants(const struct bench_options *o, const char *mode)
{
    return o->mode == NULL || strcmp(o->mode, mode) == 0;
}

/*
 * Runs fn(arg, batch) in growing batches until ops operations are done or seconds have
 * passed (at least one batch of 16); returns the operations done and sets *ns to their time.
 * fn must do exactly batch operations.
 */
static inline long bench_loop(const struct bench_options *o, void (*fn)(void *, long), void *arg,
                              uint64_t *ns)
{
    uint64_t start = now_ns(), limit = (uint64_t)(o->seconds * 1e9);
    long done = 0, batch = 16;

    for (;;) {
        if (batch > o->ops - done)
            batch = o->ops - done;
        fn(arg, batch);
        done += batch;
        *ns = now_ns() - start;
        if (done >= o->ops || *ns >= limit)
            return done;
        /* Batches of about a tenth of the time left keep the clock out of the loop. */
        if (batch < (1L << 40) && *ns < limit / 20)
            batch *= 2;
    }
}

static inline void bench_report(const char *name, long ops, uint64_t ns, const char *extra)
{
    printf("bench=%s ns_per_op=%.1f ops=%ld%s%s\n", name, (double)ns / (double)ops, ops,
           extra != NULL && *extra ? " " : "", extra != NULL ? extra : "");
    fflush(stdout);
}

/* The command line of idle.c and idle_tls.cc: [-n THREADS], 10,000 by default. */
static inline long bench_parse_threads(int argc, char **argv)
{
    long n = 10000;
    int c;

    while ((c = getopt(argc, argv, "n:")) != -1) {
        if (c != 'n')
            die("usage: %s [-n THREADS]", program_invocation_short_name);
        n = parse_long(optarg, 1, 10000000, "-n");
    }
    if (optind != argc)
        die("usage: %s [-n THREADS]", program_invocation_short_name);
    return n;
}

/* The line of idle.c and idle_tls.cc: resident memory per parked thread, creation and wake-up
 * costs. */
static inline void bench_report_idle(const char *name, long threads, long rss_before, long rss_parked,
                                     uint64_t created_ns, uint64_t wake_ns)
{
    printf("bench=%s threads=%ld rss_per_thread_kib=%.2f rss_kib=%ld rss_before_kib=%ld "
           "create_ns_per_thread=%.0f wake_join_ns_per_thread=%.0f\n",
           name, threads, (double)(rss_parked - rss_before) / (double)threads, rss_parked, rss_before,
           (double)created_ns / (double)threads, (double)wake_ns / (double)threads);
    fflush(stdout);
}

#endif
