/*
 * sleep [-n OPS] [-t SECONDS]: how long usleep(100) lasts, measured in a thread while a
 * second thread sleeps the same way (under coop both are greenlets, and each sleep parks one
 * of them). A sleep lasts at least what it asks; by how much more says how fine the timers
 * are: natively the kernel's timer slack, under coop the hub's poll timeout as well.
 * One line: bench=sleep_100us ns_per_op=X ops=N, X the average length of one sleep.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <pthread.h>

enum { SLEEP_US = 100 };

static void sleeps(void *arg, long n)
{
    (void)arg;
    for (long i = 0; i < n; i++)
        usleep(SLEEP_US);
}

struct sleeper {
    const struct bench_options *options;
    long ops;
    uint64_t ns;
};

static void *sleeper(void *arg)
{
    struct sleeper *s = arg;
    s->ops = bench_loop(s->options, sleeps, NULL, &s->ns);
    return NULL;
}

int main(int argc, char **argv)
{
    struct bench_options o = bench_parse(argc, argv, 1000000, "sleep [-n OPS] [-t SECONDS]");
    struct sleeper s[2] = { { &o, 0, 0 }, { &o, 0, 0 } };
    pthread_t threads[2];

    for (int i = 0; i < 2; i++)
        if (pthread_create(&threads[i], NULL, sleeper, &s[i]) != 0)
            die("pthread_create failed");
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    bench_report("sleep_100us", s[0].ops, s[0].ns, NULL);
    return 0;
}
