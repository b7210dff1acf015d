/*
 * A library whose constructor uses synchronisation objects that live on: the loader may run
 * it before coop's constructor (it did with BIND's libisc, which sets OpenSSL up there), and
 * the program then uses the same objects under coop (early_locks.c). It also pins the
 * initial thread to one CPU.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <time.h>

pthread_rwlock_t early_rwlock = PTHREAD_RWLOCK_INITIALIZER;
pthread_mutex_t early_mutex = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t early_cond = PTHREAD_COND_INITIALIZER;
pthread_barrier_t early_barrier;
sem_t early_sem;
pthread_mutex_t early_shared_recursive;     /* held on by the initial thread */
cpu_set_t early_cpus;                       /* the initial thread's set: its first CPU */

/* coop's, when it is preloaded: whether the calling thread runs as a greenlet yet. */
extern int coop_active(void) __attribute__((weak));

__attribute__((constructor)) static void use_them_once(void)
{
    if (coop_active != NULL)
        fprintf(stderr, "early_locks: this constructor ran %s coop's\n", coop_active() ? "after" : "before");
    /* Readers, then a writer last: glibc leaves the lock in its write phase. */
    pthread_rwlock_rdlock(&early_rwlock);
    pthread_rwlock_unlock(&early_rwlock);
    pthread_rwlock_wrlock(&early_rwlock);
    pthread_rwlock_unlock(&early_rwlock);
    /* A barrier of one, crossed once: glibc counts on where coop starts again. */
    pthread_barrier_init(&early_barrier, NULL, 1);
    pthread_barrier_wait(&early_barrier);
    sem_init(&early_sem, 0, 0);
    sem_post(&early_sem);
    /* A wait that times out at once, and a signal nobody waits for. */
    struct timespec past = { 0, 0 };
    pthread_mutex_lock(&early_mutex);
    pthread_cond_timedwait(&early_cond, &early_mutex, &past);
    pthread_mutex_unlock(&early_mutex);
    pthread_cond_signal(&early_cond);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&early_shared_recursive, &attr);
    pthread_mutex_lock(&early_shared_recursive);
    /* Pinned as libgomp pins it with OMP_PROC_BIND: the main thread's, not every thread's. */
    cpu_set_t all;
    sched_getaffinity(0, sizeof all, &all);
    int first = 0;
    while (!CPU_ISSET(first, &all))
        first++;
    CPU_ZERO(&early_cpus);
    CPU_SET(first, &early_cpus);
    pthread_setaffinity_np(pthread_self(), sizeof early_cpus, &early_cpus);
}
