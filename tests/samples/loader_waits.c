/*
 * loader_waits: libraries whose constructors wait, loaded by several threads at once.
 *
 *   loader_waits LIB...
 *
 * glibc runs a library's constructors holding the loader's lock, a recursive mutex that
 * knows its owner by tid. One thread per LIB (copies of libwaiting_constructor.so, so that
 * each is loaded anew) loads it with dlopen; its constructor calls back here
 * (loader_waits_in_constructor, exported with -rdynamic), which asks WAKERS threads in
 * turn, through a pipe each, ROUNDS times, and waits for each answer on a semaphore: every
 * wait is ended by another thread (under coop, often one on another hub). Then each library
 * must say it was initialised, and LATE threads take the loader's lock once more each
 * (dlopen with RTLD_NOLOAD, then dlclose): a lock left held keeps them waiting for ever (the
 * test's hang guard). Prints what it saw, then "loader_waits: ok".
 */
#define _GNU_SOURCE
#include "common.h"

#include <dlfcn.h>
#include <pthread.h>
#include <semaphore.h>

enum { ROUNDS = 20, WAKERS = 4, LATE = 8, MAX_LIBS = 16 };

static int asked[WAKERS][2];     /* a pipe per waker */
static sem_t answered;

static void must(bool ok, const char *what)
{
    if (!ok)
        die("%s failed", what);
}

void loader_waits_in_constructor(int *initialised);

void loader_waits_in_constructor(int *initialised)
{
    for (int i = 0; i < ROUNDS; i++) {
        must(write(asked[i % WAKERS][1], "a", 1) == 1, "write");
        must(sem_wait(&answered) == 0, "sem_wait");
    }
    *initialised = 1;
}

static void *waker(void *arg)
{
    const int *requests = arg;
    char request;
    while (read(requests[0], &request, 1) == 1 && request == 'a')
        must(sem_post(&answered) == 0, "sem_post");
    return NULL;
}

static void *load(void *path)
{
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        die("dlopen %s: %s", (char *)path, dlerror());
    int *initialised = dlsym(lib, "waiting_constructor_initialised");
    return (void *)(intptr_t)(initialised != NULL && *initialised);
}

static void *load_again(void *path)
{
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    return (void *)(intptr_t)(lib != NULL && dlclose(lib) == 0);
}

int main(int argc, char **argv)
{
    int libs = argc - 1;
    if (libs < 1 || libs > MAX_LIBS)
        die("usage: loader_waits LIB... (1 to %d)", MAX_LIBS);
    must(sem_init(&answered, 0, 0) == 0, "sem_init");
    pthread_t wakers[WAKERS], loaders[MAX_LIBS], late[LATE];
    for (int i = 0; i < WAKERS; i++) {
        must(pipe(asked[i]) == 0, "pipe");
        must(pthread_create(&wakers[i], NULL, waker, asked[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < libs; i++)
        must(pthread_create(&loaders[i], NULL, load, argv[i + 1]) == 0, "pthread_create");
    int failed = 0;
    for (int i = 0; i < libs; i++) {
        void *initialised;
        must(pthread_join(loaders[i], &initialised) == 0, "pthread_join");
        printf("library %d: loaded, %s\n", i + 1, initialised ? "initialised" : "FAIL: not initialised");
        failed += initialised == NULL;
    }
    int again = 0;
    for (int i = 0; i < LATE; i++)
        must(pthread_create(&late[i], NULL, load_again, argv[1 + i % libs]) == 0, "pthread_create");
    for (int i = 0; i < LATE; i++) {
        void *ok;
        must(pthread_join(late[i], &ok) == 0, "pthread_join");
        again += ok != NULL;
    }
    printf("loaded again by %d of %d threads\n", again, LATE);
    failed += again != LATE;
    for (int i = 0; i < WAKERS; i++)
        must(write(asked[i][1], "q", 1) == 1, "write");
    for (int i = 0; i < WAKERS; i++)
        must(pthread_join(wakers[i], NULL) == 0, "pthread_join");
    puts(failed ? "loader_waits: FAIL" : "loader_waits: ok");
    return failed ? 1 : 0;
}
