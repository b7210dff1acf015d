/*
 * mutex [-m uncontended|threaded|handoff|condvar] [-n OPS] [-t SECONDS]: the costs of pthread
 * mutexes and condition variables.
 *
 *   uncontended  lock + unlock of a mutex no other thread touches (ns per pair), first thing
 *                in the process: natively glibc then takes its single-threaded path, plain
 *                stores where a process with threads needs atomic instructions.
 *   threaded     the same, while a second thread exists (it waits in read()): the path every
 *                multi-threaded program takes, natively as under coop, whose hubs are threads.
 *   handoff      two threads pass three mutexes around so that every lock must wait for the
 *                other thread's unlock: each holds some, unlocks one and locks the next, which
 *                the other thread holds (the three-mutex rotation; every thread unlocks only
 *                what it locked). ns per hand-off, i.e. per lock that had to wait.
 *   condvar      two threads take turns through a turn variable, a mutex and two condition
 *                variables (wait while it is not my turn, flip it, signal). ns per hand-off.
 *
 * Natively the two threads run on whatever CPUs the kernel gives them, as an ordinary
 * program's would. Without -m, every mode runs. Each line: bench=mutex_MODE ns_per_op=X ops=N
 */
#define _GNU_SOURCE
#include "bench.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

enum { CALIBRATION_STEPS = 500 };

static pthread_mutex_t lone = PTHREAD_MUTEX_INITIALIZER;

static void uncontended_batch(void *arg, long n)
{
    (void)arg;
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&lone);
        __asm__ volatile("" ::: "memory");
        pthread_mutex_unlock(&lone);
    }
}

static void *wait_for_the_end(void *fd)
{
    char c;
    return (void *)read((int)(intptr_t)fd, &c, 1);
}

static void bench_threaded(const struct bench_options *o)
{
    int end[2];
    pthread_t waiter;
    uint64_t ns;
    int err;

    if (pipe(end) != 0)
        die("pipe: %s", strerror(errno));
    if ((err = pthread_create(&waiter, NULL, wait_for_the_end, (void *)(intptr_t)end[0])) != 0)
        die("pthread_create: %s", strerror(err));
    long ops = bench_loop(o, uncontended_batch, NULL, &ns);
    if (write(end[1], "x", 1) != 1)
        die("write: %s", strerror(errno));
    pthread_join(waiter, NULL);
    close(end[0]);
    close(end[1]);
    bench_report("mutex_uncontended_threaded", ops, ns, NULL);
}

/* --- two threads, a fixed number of steps each --- */

static long steps;
static _Atomic int ready;

/* Both threads start their steps only when both have set up what they hold. */
static void rendezvous(void)
{
    atomic_fetch_add(&ready, 1);
    while (atomic_load(&ready) < 2)
        sched_yield();
}

static pthread_mutex_t ring[3] = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
                                   PTHREAD_MUTEX_INITIALIZER };

static void *ring_a(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&ring[0]);
    pthread_mutex_lock(&ring[1]);
    rendezvous();
    for (long k = 0; k < steps; k++) {
        pthread_mutex_unlock(&ring[k % 3]);
        pthread_mutex_lock(&ring[(k + 2) % 3]);
    }
    pthread_mutex_unlock(&ring[steps % 3]);
    pthread_mutex_unlock(&ring[(steps + 1) % 3]);
    return NULL;
}

static void *ring_b(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&ring[2]);
    rendezvous();
    for (long k = 0; k < steps; k++) {
        pthread_mutex_lock(&ring[k % 3]);
        pthread_mutex_unlock(&ring[(k + 2) % 3]);
    }
    pthread_mutex_unlock(&ring[(steps + 2) % 3]);
    return NULL;
}

static pthread_mutex_t turn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_cond[2] = { PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER };
static int turn;

static void *ping(void *arg)
{
    int me = (int)(intptr_t)arg;

    rendezvous();
    for (long k = 0; k < steps; k++) {
        pthread_mutex_lock(&turn_lock);
        while (turn != me)
            pthread_cond_wait(&turn_cond[me], &turn_lock);
        turn = 1 - me;
        pthread_cond_signal(&turn_cond[1 - me]);
        pthread_mutex_unlock(&turn_lock);
    }
    return NULL;
}

/* Runs a and b for n steps each; returns the nanoseconds from their creation to both joined. */
static uint64_t pair_run(void *(*a)(void *), void *(*b)(void *), long n)
{
    pthread_t ta, tb;
    uint64_t start = now_ns();
    int err;

    steps = n;
    atomic_store(&ready, 0);
    turn = 0;
    if ((err = pthread_create(&ta, NULL, a, (void *)0)) != 0 ||
        (err = pthread_create(&tb, NULL, b, (void *)1)) != 0)
        die("pthread_create: %s", strerror(err));
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    return now_ns() - start;
}

/* A short run tells how many steps fill the time asked for; the long run is reported. */
static void bench_pair(const struct bench_options *o, const char *name, void *(*a)(void *),
                       void *(*b)(void *))
{
    uint64_t ns = pair_run(a, b, CALIBRATION_STEPS);
    double per_step = (double)ns / CALIBRATION_STEPS;
    long n = (long)(o->seconds * 1e9 / per_step);

    if (n > o->ops / 2)
        n = o->ops / 2;
    if (n < CALIBRATION_STEPS)
        n = CALIBRATION_STEPS;
    ns = pair_run(a, b, n);
    bench_report(name, 2 * n, ns, NULL); /* each step of each thread is one hand-off */
}

int main(int argc, char **argv)
{
    struct bench_options o = bench_parse(argc, argv, 100000000,
                                         "mutex [-m uncontended|threaded|handoff|condvar] [-n OPS] [-t SECONDS]");

    if (bench_wants(&o, "uncontended")) {
        uint64_t ns;
        long ops = bench_loop(&o, uncontended_batch, NULL, &ns);

        bench_report("mutex_uncontended", ops, ns, NULL);
    }
    if (bench_wants(&o, "threaded"))
        bench_threaded(&o);
    if (bench_wants(&o, "handoff"))
        bench_pair(&o, "mutex_handoff", ring_a, ring_b);
    if (bench_wants(&o, "condvar"))
        bench_pair(&o, "condvar_pingpong", ping, ping);
    return 0;
}
