/*
 * main_exit MODE: the main thread ends with pthread_exit (MODE exit) or is cancelled by a
 * worker while it joins that worker (MODE cancel). Either way its cleanup handlers run,
 * innermost first, and the process lives on until its last thread returns, with status 0:
 *
 *   main: cleanup inner
 *   main: cleanup outer
 *   worker: ran after the main thread ended
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <semaphore.h>

static sem_t main_ended;
static pthread_t main_thread;
static bool cancel_main;

static void say(const char *line)
{
    printf("%s\n", line);
    fflush(stdout);
}

static void inner_cleanup(void *arg)
{
    (void)arg;
    say("main: cleanup inner");
}

static void outer_cleanup(void *arg)
{
    (void)arg;
    say("main: cleanup outer");
    sem_post(&main_ended);
}

static void *worker(void *arg)
{
    (void)arg;
    if (cancel_main && pthread_cancel(main_thread) != 0)
        die("pthread_cancel");
    while (sem_wait(&main_ended) != 0)
        ;
    say("worker: ran after the main thread ended");
    return NULL;
}

static __attribute__((noinline)) void end_main(pthread_t t)
{
    pthread_cleanup_push(inner_cleanup, NULL);
    if (cancel_main)
        pthread_join(t, NULL);
    else
        pthread_exit(NULL);
    say("main: still running");
    pthread_cleanup_pop(0);
}

int main(int argc, char **argv)
{
    pthread_t t;

    if (argc != 2 || (strcmp(argv[1], "exit") != 0 && strcmp(argv[1], "cancel") != 0))
        die("usage: main_exit exit|cancel");
    cancel_main = strcmp(argv[1], "cancel") == 0;
    main_thread = pthread_self();
    sem_init(&main_ended, 0, 0);
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        die("pthread_create");
    pthread_cleanup_push(outer_cleanup, NULL);
    end_main(t);
    pthread_cleanup_pop(0);
    say("main: returned");
    return 3;
}
