/*
 * cpupool [-n THREADS] [-u UNITS]: a pool of THREADS threads (default: the CPUs this process
 * may use) computing, sysbench cpu's way: each takes units of work from a shared counter
 * (under a mutex) until UNITS are done; a unit is a prime search with no memory traffic.
 * Prints the wall time per unit (bench=cpu_pool ns_per_op=...): natively, and under coop
 * on its default hubs, the ratio says whether the threads ran on every CPU.
 */
#define _GNU_SOURCE
#include "../samples/common.h"

#include <pthread.h>
#include <sched.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long next_unit, units = 2000;
static volatile long sink;

static long primes_below(long n)
{
    long count = 0;
    for (long c = 3; c < n; c += 2) {
        bool prime = true;
        for (long d = 3; d * d <= c; d += 2)
            if (c % d == 0) {
                prime = false;
                break;
            }
        count += prime;
    }
    return count;
}

static void *worker(void *unused)
{
    (void)unused;
    for (;;) {
        pthread_mutex_lock(&lock);
        long unit = next_unit < units ? next_unit++ : -1;
        pthread_mutex_unlock(&lock);
        if (unit < 0)
            return NULL;
        sink += primes_below(20000);
    }
}

int main(int argc, char **argv)
{
    cpu_set_t set;
    int threads = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    int c;
    while ((c = getopt(argc, argv, "n:u:")) != -1) {
        switch (c) {
        case 'n': threads = (int)parse_long(optarg, 1, 1024, "-n"); break;
        case 'u': units = parse_long(optarg, 1, 1L << 40, "-u"); break;
        default: die("usage: cpupool [-n THREADS] [-u UNITS]");
        }
    }
    pthread_t t[1024];
    uint64_t t0 = now_ns();
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, worker, NULL) != 0)
            die("pthread_create failed");
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    uint64_t ns = now_ns() - t0;
    printf("bench=cpu_pool ns_per_op=%.1f ops=%ld threads=%d wall_ms=%.1f\n", (double)ns / (double)units, units,
           threads, (double)ns / 1e6);
    return 0;
}
