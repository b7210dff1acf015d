/*
 * stdio_locks: threads share stdout. LOCKERS threads each take it ROUNDS times with
 * flockfile(), print two lines, sleep a millisecond (a blocking call inside the region),
 * print a third line and let go; WRITERS threads print single lines between short sleeps.
 * Prints "done" last. Every line is printed once; a locker's first two lines of a round stand
 * together, since nothing blocks between them. The program has TLS of its own, so that
 * under coop each thread has its own thread control block, as glibc's locks see owners.
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>

enum { LOCKERS = 4, WRITERS = 4, ROUNDS = 20, WRITES = 50 };

static __thread int rounds_done;

static void *locker(void *arg)
{
    int me = (int)(intptr_t)arg;
    for (int r = 0; r < ROUNDS; r++) {
        flockfile(stdout);
        printf("L%d-%d a\n", me, r);
        printf("L%d-%d b\n", me, r);
        usleep(1000);
        printf("L%d-%d c\n", me, r);
        funlockfile(stdout);
        rounds_done++;
    }
    return (void *)(intptr_t)rounds_done;
}

static void *writer(void *arg)
{
    int me = (int)(intptr_t)arg;
    for (int w = 0; w < WRITES; w++) {
        printf("W%d-%d\n", me, w);
        usleep(200);
    }
    return NULL;
}

int main(void)
{
    pthread_t threads[LOCKERS + WRITERS];
    for (intptr_t i = 0; i < LOCKERS + WRITERS; i++)
        if (pthread_create(&threads[i], NULL, i < LOCKERS ? locker : writer,
                           (void *)(i < LOCKERS ? i : i - LOCKERS)) != 0)
            die("pthread_create failed");
    for (int i = 0; i < LOCKERS + WRITERS; i++) {
        void *rounds;
        pthread_join(threads[i], &rounds);
        if (i < LOCKERS && (intptr_t)rounds != ROUNDS)
            die("locker %d did %d rounds", i, (int)(intptr_t)rounds);
    }
    printf("done\n");
    return 0;
}
