/*
 * sleepers N SECONDS: starts N threads that each count themselves in, then sleep(SECONDS)
 * until all N have, joins them all, and prints
 *
 *   N threads slept, all at the same time
 *   os_threads: K of N sleepers
 *   elapsed_ms=MS
 *
 * The rendezvous is the proof that the sleeps overlap: a runtime that blocked the whole
 * process in sleep(), or ran the threads one after another, would never let the last one
 * count in, and the program would not end. K is how many OS threads (distinct gettid) the
 * sleepers ran on, all alive at once. MS, at least SECONDS * 1000, is for the record. sleep()
 * is used on purpose: glibc implements it on its internal nanosleep, which a wrapper of
 * nanosleep alone never sees.
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

enum { THREAD_STACK_SIZE = 64 * 1024 };

static atomic_long counted_in;
static long expected;
static unsigned seconds;
static pid_t *tids;

static void *sleeper(void *arg)
{
    tids[(uintptr_t)arg] = gettid();
    atomic_fetch_add(&counted_in, 1);
    do {
        /* sleep() returns the seconds left when a signal cut it short. */
        unsigned left = seconds;
        while (left > 0)
            left = sleep(left);
    } while (atomic_load(&counted_in) < expected);
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_attr_t attr;
    pthread_t *threads;
    uint64_t start;
    int err;

    if (argc != 3)
        die("usage: sleepers N SECONDS");
    expected = parse_long(argv[1], 1, 1000000, "N");
    seconds = (unsigned)parse_long(argv[2], 1, 3600, "SECONDS");
    threads = calloc((size_t)expected, sizeof *threads);
    tids = calloc((size_t)expected, sizeof *tids);
    if (threads == NULL || tids == NULL)
        die("out of memory for %ld threads", expected);
    if ((err = pthread_attr_init(&attr)) != 0 ||
        (err = pthread_attr_setstacksize(&attr, THREAD_STACK_SIZE)) != 0)
        die("pthread_attr: %s", strerror(err));

    start = now_ns();
    for (long i = 0; i < expected; i++)
        if ((err = pthread_create(&threads[i], &attr, sleeper, (void *)(uintptr_t)i)) != 0)
            die("pthread_create of thread %ld: %s", i + 1, strerror(err));
    for (long i = 0; i < expected; i++)
        if ((err = pthread_join(threads[i], NULL)) != 0)
            die("pthread_join: %s", strerror(err));

    long distinct = distinct_tids(tids, expected);
    printf("%ld threads slept, all at the same time\nos_threads: %ld of %ld sleepers\nelapsed_ms=%llu\n",
           expected, distinct, expected, (unsigned long long)((now_ns() - start) / 1000000));
    return 0;
}
