/*
 * sleep [-m pair|beside] [-n OPS] [-t SECONDS]: how long a short sleep lasts.
 *
 *   pair    usleep(100) in a thread while a second thread sleeps the same way (under coop
 *           both are greenlets, and each sleep parks one of them). A sleep lasts at least
 *           what it asks; by how much more says how fine the timers are: natively the
 *           kernel's timer slack, under coop the hub's poll timeout as well.
 *   beside  usleep(1000) in the main thread while a thread per CPU computes without a
 *           system call: natively the kernel preempts a computing thread when the sleep
 *           ends; under coop the computing greenlets hold every hub, and only coop's
 *           preemption (and the sleeper's place ahead of them once its deadline passed)
 *           lets the sleeper run again: with COOP_PREEMPT_MS=0 it never ends.
 *
 * Each line: bench=sleep_100us|sleep_1ms_beside_compute ns_per_op=X ops=N, X the average
 * length of one sleep.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

static void sleeps(void *microseconds, long n)
{
    for (long i = 0; i < n; i++)
        usleep((useconds_t)(uintptr_t)microseconds);
}

struct sleeper {
    const struct bench_options *options;
    long ops;
    uint64_t ns;
};

static void *sleeper(void *arg)
{
    struct sleeper *s = arg;
    s->ops = bench_loop(s->options, sleeps, (void *)(uintptr_t)100, &s->ns);
    return NULL;
}

static void bench_pair(const struct bench_options *o)
{
    struct sleeper s[2] = { { o, 0, 0 }, { o, 0, 0 } };
    pthread_t threads[2];

    for (int i = 0; i < 2; i++)
        if (pthread_create(&threads[i], NULL, sleeper, &s[i]) != 0)
            die("pthread_create failed");
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    bench_report("sleep_100us", s[0].ops, s[0].ns, NULL);
}

static atomic_bool stop_computing;
static volatile unsigned long sink;

static void *compute(void *unused)
{
    (void)unused;
    unsigned long x = 1;
    while (!atomic_load_explicit(&stop_computing, memory_order_relaxed))
        x = x * 6364136223846793005ul + 1442695040888963407ul;
    sink = x;
    return NULL;
}

static void bench_beside(const struct bench_options *o)
{
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    pthread_t threads[CPU_SETSIZE];
    uint64_t ns;

    atomic_store(&stop_computing, false);
    for (int i = 0; i < n; i++)
        if (pthread_create(&threads[i], NULL, compute, NULL) != 0)
            die("pthread_create failed");
    long ops = bench_loop(o, sleeps, (void *)(uintptr_t)1000, &ns);
    atomic_store(&stop_computing, true);
    for (int i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    char extra[32];
    snprintf(extra, sizeof extra, "computing=%d", n);
    bench_report("sleep_1ms_beside_compute", ops, ns, extra);
}

int main(int argc, char **argv)
{
    struct bench_options o = bench_parse(argc, argv, 1000000, "sleep [-m pair|beside] [-n OPS] [-t SECONDS]");

    if (bench_wants(&o, "pair"))
        bench_pair(&o);
    if (bench_wants(&o, "beside"))
        bench_beside(&o);
    return 0;
}
