/*
 * create_join [-n OPS] [-t SECONDS]: pthread_create of a thread that does nothing, then
 * pthread_join of it, over and over (default attributes, one thread alive at a time).
 * Prints: bench=create_join ns_per_op=X ops=N
 */
#define _GNU_SOURCE
#include "bench.h"

#include <pthread.h>

static void *trivial(void *arg)
{
    return arg;
}

static void create_join_batch(void *arg, long n)
{
    (void)arg;
    for (long i = 0; i < n; i++) {
        pthread_t thread;
        void *result;
        int err = pthread_create(&thread, NULL, trivial, (void *)(intptr_t)i);

        if (err != 0)
            die("pthread_create: %s", strerror(err));
        if ((err = pthread_join(thread, &result)) != 0)
            die("pthread_join: %s", strerror(err));
        if (result != (void *)(intptr_t)i)
            die("pthread_join: thread %ld returned %p", i, result);
    }
}

int main(int argc, char **argv)
{
    struct bench_options o = bench_parse(argc, argv, 10000000, "create_join [-n OPS] [-t SECONDS]");
    uint64_t ns;
    long ops;

    create_join_batch(NULL, 16); /* warm up: stack caches, lazy binding */
    ops = bench_loop(&o, create_join_batch, NULL, &ns);
    bench_report("create_join", ops, ns, NULL);
    return 0;
}
