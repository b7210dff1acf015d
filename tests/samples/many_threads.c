/*
 * many_threads [N]: starts N threads (default 10,000) that all wait on one condition
 * variable, waits until every one of them is parked, prints what that costs in memory, then
 * wakes them all with one broadcast and joins them:
 *
 *   N threads parked
 *   os_threads: K of N threads
 *   rss_per_thread_kib: X (rss Y KiB, Z KiB before the threads)
 *   time: parked in MS ms, woken and joined in MS ms
 *   N threads done
 *
 * K is how many OS threads the parked threads ran on (distinct gettid, all alive at once).
 * The os_threads:, rss_per_thread_kib: and time: lines change from run to run or runtime to
 * runtime; tests check them apart. Natively each thread has a 64 KiB stack (so that 10,000
 * of them fit in memory and in vm.max_map_count); a runtime that makes threads into
 * greenlets may use its own size.
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>

enum {
    DEFAULT_THREADS = 10000,
    THREAD_STACK_SIZE = 64 * 1024,
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t go_cond = PTHREAD_COND_INITIALIZER;     /* the threads wait here */
static pthread_cond_t parked_cond = PTHREAD_COND_INITIALIZER; /* main waits here */
static long parked, woken, expected;
static bool go;
static pid_t *tids;

static void *waiter(void *arg)
{
    tids[(intptr_t)arg] = gettid();
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
    pthread_attr_t attr;
    pthread_t *threads;
    uint64_t start, parked_ms, wake_start;
    long n, rss_before, rss_parked;
    int err;

    if (argc > 2)
        die("usage: many_threads [N]");
    n = argc == 2 ? parse_long(argv[1], 1, 1000000, "N") : DEFAULT_THREADS;
    expected = n;
    raise_limit(RLIMIT_NPROC);
    threads = calloc((size_t)n, sizeof *threads);
    tids = calloc((size_t)n, sizeof *tids);
    if (threads == NULL || tids == NULL)
        die("out of memory for %ld threads", n);
    if ((err = pthread_attr_init(&attr)) != 0 ||
        (err = pthread_attr_setstacksize(&attr, THREAD_STACK_SIZE)) != 0)
        die("pthread_attr: %s", strerror(err));

    rss_before = rss_kib();
    start = now_ns();
    for (long i = 0; i < n; i++)
        if ((err = pthread_create(&threads[i], &attr, waiter, (void *)(intptr_t)i)) != 0)
            die("pthread_create of thread %ld of %ld: %s", i + 1, n, strerror(err));
    pthread_attr_destroy(&attr);

    pthread_mutex_lock(&lock);
    while (parked < n)
        pthread_cond_wait(&parked_cond, &lock);
    pthread_mutex_unlock(&lock);
    parked_ms = (now_ns() - start) / 1000000;
    rss_parked = rss_kib();
    printf("%ld threads parked\n", n);
    printf("os_threads: %ld of %ld threads\n", distinct_tids(tids, n), n);
    printf("rss_per_thread_kib: %.1f (rss %ld KiB, %ld KiB before the threads)\n",
           (double)(rss_parked - rss_before) / (double)n, rss_parked, rss_before);

    wake_start = now_ns();
    pthread_mutex_lock(&lock);
    go = true;
    pthread_cond_broadcast(&go_cond);
    pthread_mutex_unlock(&lock);
    for (long i = 0; i < n; i++)
        if ((err = pthread_join(threads[i], NULL)) != 0)
            die("pthread_join: %s", strerror(err));
    printf("time: parked in %llu ms, woken and joined in %llu ms\n",
           (unsigned long long)parked_ms, (unsigned long long)((now_ns() - wake_start) / 1000000));
    if (woken != n)
        die("%ld of %ld threads woke up", woken, n);
    printf("%ld threads done\n", n);
    free(threads);
    return 0;
}
