/*
 * idle [-n THREADS]: the memory of idle threads. Starts THREADS threads (default attributes,
 * as an unmodified program would) that each wait on one condition variable, waits until every
 * one is parked, and measures the resident set; then wakes them all with one broadcast and
 * joins them. Prints:
 *   bench=idle threads=N rss_per_thread_kib=X rss_kib=Y rss_before_kib=Z create_ns_per_thread=C
 *         wake_join_ns_per_thread=W
 */
#define _GNU_SOURCE
#include "bench.h"

#include <pthread.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t go_cond = PTHREAD_COND_INITIALIZER;
static pthread_cond_t parked_cond = PTHREAD_COND_INITIALIZER;
static long parked, woken, expected;
static bool go;

static void *waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    if (++parked == expected)
        pthread_cond_signal(&parked_cond);
    while (!go)
        pthread_cond_wait(&go_cond, &lock);
    woken++;
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv)
{
    long n = bench_parse_threads(argc, argv), rss_before, rss_parked;
    uint64_t start, created_ns, wake_start, wake_ns;
    pthread_t *threads;
    int err;

    expected = n;
    raise_limit(RLIMIT_NPROC);
    threads = calloc((size_t)n, sizeof *threads);
    if (threads == NULL)
        die("out of memory for %ld threads", n);
    /* Touch the array now so that it counts in the baseline, not per thread. */
    memset(threads, 0, (size_t)n * sizeof *threads);

    rss_before = rss_kib();
    start = now_ns();
    for (long i = 0; i < n; i++)
        if ((err = pthread_create(&threads[i], NULL, waiter, NULL)) != 0)
            die("pthread_create of thread %ld of %ld: %s", i + 1, n, strerror(err));
    pthread_mutex_lock(&lock);
    while (parked < n)
        pthread_cond_wait(&parked_cond, &lock);
    pthread_mutex_unlock(&lock);
    created_ns = now_ns() - start;
    rss_parked = rss_kib();

    wake_start = now_ns();
    pthread_mutex_lock(&lock);
    go = true;
    pthread_cond_broadcast(&go_cond);
    pthread_mutex_unlock(&lock);
    for (long i = 0; i < n; i++)
        if ((err = pthread_join(threads[i], NULL)) != 0)
            die("pthread_join: %s", strerror(err));
    wake_ns = now_ns() - wake_start;
    if (woken != n)
        die("%ld of %ld threads woke up", woken, n);
    bench_report_idle("idle", n, rss_before, rss_parked, created_ns, wake_ns);
    free(threads);
    return 0;
}
