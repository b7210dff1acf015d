/*
 * stack_maps: where do stacks live, and are they executable? The main thread and threads
 * with the default stack, a 1 MiB stack and a 16 MiB stack each find, in /proc/self/maps,
 * the mapping that holds one of their local variables and print its permissions. Meanwhile
 * the threads do a little ordinary work (a mutex, a condition variable, a pipe, a socket
 * pair, a sleep), so that a runtime under the program has something to do.
 *
 * Prints one line per stack, "NAME: PERMS" (e.g. "main thread: rw-p"), then "work: ok".
 * Exit status 0 when no stack is executable and the work went right, 1 otherwise.
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_cond = PTHREAD_COND_INITIALIZER;
static int turn;   /* the threads print in turn, so the output has a fixed order */
static int failures;
static int pipefd[2], sockets[2];

/* Permissions of the mapping that holds addr, or "none". */
static void mapping_of(const void *addr, char perms[5])
{
    FILE *f = fopen("/proc/self/maps", "re");
    char line[512];
    uintptr_t a = (uintptr_t)addr;

    strcpy(perms, "none");
    if (f == NULL)
        die_errno("/proc/self/maps");
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long lo, hi;
        char p[5];
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, p) == 3 && a >= lo && a < hi) {
            memcpy(perms, p, 5);
            break;
        }
    }
    fclose(f);
}

static void report(const char *name, int my_turn)
{
    volatile int local = my_turn;
    char perms[5];

    mapping_of((const void *)&local, perms);
    pthread_mutex_lock(&lock);
    while (turn != my_turn)
        pthread_cond_wait(&turn_cond, &lock);
    printf("%s: %s\n", name, perms);
    if (strchr(perms, 'x') != NULL || strcmp(perms, "none") == 0) {
        fprintf(stderr, "stack_maps: the stack of the %s is %s\n", name, perms);
        failures++;
    }
    turn++;
    pthread_cond_broadcast(&turn_cond);
    pthread_mutex_unlock(&lock);
}

struct job { const char *name; int turn; };

static void *thread_main(void *arg)
{
    struct job *j = arg;
    char byte = (char)j->turn;

    report(j->name, j->turn);
    /* A little work through the pipe and the socket pair: each thread passes a byte on. */
    if (write(pipefd[1], &byte, 1) != 1 || read(pipefd[0], &byte, 1) != 1 ||
        write(sockets[0], &byte, 1) != 1 || read(sockets[1], &byte, 1) != 1) {
        perror("stack_maps: pipe or socket");
        return (void *)1;
    }
    sleep_ms(5);
    return NULL;
}

int main(void)
{
    static struct job jobs[] = {
        { "thread with the default stack", 1 },
        { "thread with a 1 MiB stack", 2 },
        { "thread with a 16 MiB stack", 3 },
    };
    size_t sizes[] = { 0, 1 << 20, 16 << 20 };
    pthread_t threads[3];
    bool work_ok = true;

    if (pipe(pipefd) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sockets) != 0)
        die_errno("pipe");
    for (int i = 0; i < 3; i++) {
        pthread_attr_t attr;
        int err = pthread_attr_init(&attr);
        if (err == 0 && sizes[i] != 0)
            err = pthread_attr_setstacksize(&attr, sizes[i]);
        if (err == 0)
            err = pthread_create(&threads[i], &attr, thread_main, &jobs[i]);
        if (err != 0)
            die("pthread_create: %s", strerror(err));
        pthread_attr_destroy(&attr);
    }
    report("main thread", 0);
    for (int i = 0; i < 3; i++) {
        void *result;
        if (pthread_join(threads[i], &result) != 0 || result != NULL)
            work_ok = false;
    }
    printf("work: %s\n", work_ok ? "ok" : "failed");
    return failures || !work_ok ? 1 : 0;
}
