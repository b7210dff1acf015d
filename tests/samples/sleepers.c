/*
 * sleepers N SECONDS: starts N threads that each sleep(SECONDS), joins them all, and prints
 *
 *   N threads slept
 *   elapsed_ms=MS
 *
 * With real threads the sleeps overlap and MS is about SECONDS * 1000; a runtime that blocked
 * the whole process in sleep() would take N times as long. sleep() is used on purpose: glibc
 * implements it on its internal nanosleep, which a wrapper of nanosleep alone never sees.
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <stdint.h>

enum { THREAD_STACK_SIZE = 64 * 1024 };

static void *sleeper(void *arg)
{
    unsigned left = (unsigned)(uintptr_t)arg;

    /* sleep() returns the seconds left when a signal cut it short. */
    while (left > 0)
        left = sleep(left);
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_attr_t attr;
    pthread_t *threads;
    uint64_t start;
    long n;
    unsigned seconds;
    int err;

    if (argc != 3)
        die("usage: sleepers N SECONDS");
    n = parse_long(argv[1], 1, 1000000, "N");
    seconds = (unsigned)parse_long(argv[2], 0, 3600, "SECONDS");
    threads = calloc((size_t)n, sizeof *threads);
    if (threads == NULL)
        die("out of memory for %ld threads", n);
    if ((err = pthread_attr_init(&attr)) != 0 ||
        (err = pthread_attr_setstacksize(&attr, THREAD_STACK_SIZE)) != 0)
        die("pthread_attr: %s", strerror(err));

    start = now_ns();
    for (long i = 0; i < n; i++)
        if ((err = pthread_create(&threads[i], &attr, sleeper, (void *)(uintptr_t)seconds)) != 0)
            die("pthread_create of thread %ld: %s", i + 1, strerror(err));
    for (long i = 0; i < n; i++)
        if ((err = pthread_join(threads[i], NULL)) != 0)
            die("pthread_join: %s", strerror(err));

    printf("%ld threads slept\nelapsed_ms=%llu\n", n,
           (unsigned long long)((now_ns() - start) / 1000000));
    return 0;
}
