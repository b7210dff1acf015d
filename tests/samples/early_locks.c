/*
 * early_locks: a read-write lock, a semaphore, a condition variable and a barrier that a
 * library's constructor used before main (libs/early_locks.c; under coop possibly before
 * coop's own constructor) work as usual afterwards, between main and a second thread, and a
 * process-shared recursive mutex it left locked is main's, and so is the CPU it pinned the
 * initial thread to (a thread main creates inherits it). Prints one line per object; a lock
 * misread as held hangs instead (test_threads_posix bounds the run).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

extern pthread_rwlock_t early_rwlock;
extern pthread_mutex_t early_mutex;
extern pthread_cond_t early_cond;
extern pthread_barrier_t early_barrier;
extern sem_t early_sem;
extern pthread_mutex_t early_shared_recursive;
extern cpu_set_t early_cpus;

static int other_read, other_write;
static bool signalled;

/* While main holds the lock for reading: another reader gets in, a writer does not. */
static void *beside_a_reader(void *unused)
{
    (void)unused;
    other_read = pthread_rwlock_tryrdlock(&early_rwlock);
    if (other_read == 0)
        pthread_rwlock_unlock(&early_rwlock);
    other_write = pthread_rwlock_trywrlock(&early_rwlock);
    return NULL;
}

static void *signaller(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&early_mutex);
    signalled = true;
    pthread_cond_signal(&early_cond);
    pthread_mutex_unlock(&early_mutex);
    return NULL;
}

static int other_trylock;

static void *try_the_shared_recursive(void *unused)
{
    (void)unused;
    other_trylock = pthread_mutex_trylock(&early_shared_recursive);
    return NULL;
}

static void run(void *(*fn)(void *))
{
    pthread_t t;
    pthread_create(&t, NULL, fn, NULL);
    pthread_join(t, NULL);
}

static cpu_set_t other_cpus;

static void *read_affinity(void *unused)
{
    sched_getaffinity(0, sizeof other_cpus, &other_cpus);
    return unused;
}

int main(void)
{
    int write = pthread_rwlock_wrlock(&early_rwlock);
    int unlock = pthread_rwlock_unlock(&early_rwlock);
    int read = pthread_rwlock_rdlock(&early_rwlock);
    run(beside_a_reader);
    pthread_rwlock_unlock(&early_rwlock);
    int write_after = pthread_rwlock_trywrlock(&early_rwlock);
    printf("rwlock: wrlock %d unlock %d rdlock %d; another thread: tryrdlock %d trywrlock %s; then trywrlock %d\n",
           write, unlock, read, other_read, other_write == EBUSY ? "EBUSY" : strerror(other_write), write_after);

    int wait = sem_wait(&early_sem);
    int again = sem_trywait(&early_sem) == -1 ? errno : 0;
    printf("sem: wait %d, trywait %s\n", wait, again == EAGAIN ? "EAGAIN" : strerror(again));

    pthread_t t;
    pthread_mutex_lock(&early_mutex);
    pthread_create(&t, NULL, signaller, NULL);
    int waited = 0;
    while (!signalled && waited == 0)
        waited = pthread_cond_wait(&early_cond, &early_mutex);
    pthread_mutex_unlock(&early_mutex);
    pthread_join(t, NULL);
    printf("cond: wait %d, signalled %d\n", waited, signalled);

    int crossed = pthread_barrier_wait(&early_barrier);
    printf("barrier: wait %s\n", crossed == PTHREAD_BARRIER_SERIAL_THREAD ? "PTHREAD_BARRIER_SERIAL_THREAD" : strerror(crossed));

    int relock = pthread_mutex_lock(&early_shared_recursive);
    run(try_the_shared_recursive);
    int unlock1 = pthread_mutex_unlock(&early_shared_recursive);
    int unlock2 = pthread_mutex_unlock(&early_shared_recursive);
    printf("shared recursive mutex: relock %d; another thread: trylock %s; unlocks %d %d\n", relock,
           other_trylock == EBUSY ? "EBUSY" : strerror(other_trylock), unlock1, unlock2);

    cpu_set_t mine;
    sched_getaffinity(0, sizeof mine, &mine);
    run(read_affinity);
    printf("affinity: main has the CPU the constructor gave it: %s; a new thread: %s\n",
           CPU_EQUAL(&mine, &early_cpus) ? "yes" : "no", CPU_EQUAL(&other_cpus, &early_cpus) ? "yes" : "no");
    return 0;
}
